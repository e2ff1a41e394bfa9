"""`--demo`: the real command path against the bundled CustomerGauge and Gainsight sandboxes.

Starts both sandboxes in-process with seeded data, stages into a throw-away DuckDB file and pushes
into the Gainsight sandbox (companies, people, the NPS object through a Bulk job, Timeline) - a
tenant seeded as a CRM leaves it, so the company settings show what they do (`demo_tenant.py`) - then
changes CustomerGauge the way a real day does (new responses, edited comments, late arrivals, one
response with an e-mail Gainsight refuses) and runs again to show the incremental pass. The demo
never reads `.dlt/secrets.toml` and never talks to a real vendor host. Quotas are off in the demo
(at Gainsight's 100 calls a minute, upserting its 2,000 people alone takes 20 minutes); the
benchmark (`bench/push.py`) shows what they cost.
"""

from __future__ import annotations

import logging
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb

from sandbox.customergauge import CustomerGaugeSandbox, SeedSpec
from sandbox.gainsight import BulkJob, GainsightSandbox

from .demo_tenant import COMPANY_SETTINGS, describe_seed, seed_crm_tenant, show_companies
from .errors import ExitCode
from .runner import execute
from .settings import RunSettings

log = logging.getLogger("nps.demo")

DEMO_DIR = Path(".demo")
DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret-not-for-production"
# A quarter of a programme: 1,000 responses from 300 respondents who answer again, as real ones do.
# Every step still shows (the responses go by Bulk job above bulk_min_rows, Timeline entries for the
# last 30 days); a larger seed only adds single person and Timeline calls (3,000 responses with a
# respondent each took 20 CPU-s, this 6).
SEED = SeedSpec(responses=1000, days=90, accounts=40, invalid=4, seed=20261128, people=300)
DEMO_ACCESS_KEY = "demo-gainsight-access-key"
DEMO_BULK_JOB = "demo-nps-responses-upsert"
DEMO_AUTHOR = "nps.connector@example.com"
RESPONSE_OBJECT = "CG_NPS_Response__gc"
DUCKDB_CLI = 'pip install "duckdb-cli>=1.5,<1.6"'  # the CLI that opens the file (README "Files, modes and tools")
NO_QUOTAS = {"sync_per_minute": 10**6, "sync_per_day": 10**7, "bulk_per_hour": 10**3, "timeline_per_minute": 10**6}
# Exit 12 here means an account started waiting for a Company (the demo seeds an ambiguous name).
COMPLETED = (ExitCode.OK, ExitCode.QUARANTINED, ExitCode.DEAD_LETTERED, ExitCode.DEFERRED)


def run_demo(workdir: Path = DEMO_DIR) -> ExitCode:
    if workdir.exists():
        shutil.rmtree(workdir)
    settings = RunSettings(
        duckdb_path=(workdir / "nps_demo.duckdb").resolve(),
        pipeline_name="nps_to_gainsight_demo",
        dataset_name="nps",
        pipelines_dir=str((workdir / "pipelines").resolve()),
    )
    job = BulkJob(DEMO_BULK_JOB, RESPONSE_OBJECT, "UPSERT", keys=("ResponseId__gc",))
    with (
        CustomerGaugeSandbox(client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET, seed=SEED) as sandbox,
        GainsightSandbox(DEMO_ACCESS_KEY, bulk_jobs=[job], quotas=False) as gainsight,
    ):
        options = {
            "api_base_url": sandbox.base_url,
            "token_url": sandbox.token_url,
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
            "initial_response_date": (date.today() - timedelta(days=SEED.days + 1)).isoformat(),
            "lookback_days": 3,
            "retry_backoff_seconds": 0.2,
        }
        destination = {
            "base_url": gainsight.base_url,
            "access_key": DEMO_ACCESS_KEY,
            "response_bulk_job_id": DEMO_BULK_JOB,
            "timeline_author_email": DEMO_AUTHOR,
            "bulk_poll_interval_seconds": 0.2,
            "quotas": NO_QUOTAS,
            **COMPANY_SETTINGS,
        }
        tenant = seed_crm_tenant(sandbox, gainsight)
        print(describe_seed(tenant), flush=True)
        log.info("demo: CustomerGauge sandbox at %s with %d seeded responses", sandbox.base_url, SEED.responses)
        log.info("demo: Gainsight sandbox at %s (Bulk job %s)", gainsight.base_url, DEMO_BULK_JOB)
        log.info("demo: run 1 of 2 (first load: stage, then push through the Bulk job)")
        first, _ = execute(settings, options, destination)
        if first not in COMPLETED:
            return first
        _simulate_a_day(sandbox)
        log.info("demo: run 2 of 2 (incremental: lookback window plus what changed)")
        second, _ = execute(settings, options, destination)
        if second not in COMPLETED:
            return second
        _show(settings)
        _show_gainsight(settings, gainsight)
        show_companies(settings.duckdb_path, gainsight, tenant)
    return ExitCode.OK


def _simulate_a_day(sandbox: CustomerGaugeSandbox) -> None:
    """New responses, edits of recent ones (re-emitted by the feed) and late arrivals."""
    new_ids = sandbox.add_responses(25)
    recent = [r for r in sandbox.records if "nps" in r and "number_customergauge" in r][-40:-37]
    for record in recent:
        sandbox.edit_response(record["number_customergauge"], comment="Edited after a follow-up call: resolved.")
    two_days_ago = (datetime.now(timezone.utc) - timedelta(days=2)).replace(tzinfo=None, microsecond=0)
    late_ids = sandbox.add_responses(2, responded_at=two_days_ago)
    # A typo CustomerGauge accepts and Gainsight's Email field does not: it ends up dead-lettered.
    sandbox.edit_response(new_ids[0], email="jane.doe at example")
    log.info(
        "demo: sandbox changed: %d new responses, %d edited, %d late arrivals dated %s",
        len(new_ids),
        len(recent),
        len(late_ids),
        two_days_ago.date(),
    )


def _show_gainsight(settings: RunSettings, gainsight: GainsightSandbox) -> None:
    print("\nIn the Gainsight sandbox:")
    for label, obj in (
        ("companies", "Company"),
        ("people", "Person"),
        ("company-person links", "Company_Person"),
        (f"{RESPONSE_OBJECT} records", RESPONSE_OBJECT),
        ("timeline activities", "activity_timeline"),
    ):
        print(f"  {label:<34}{gainsight.count_records(obj):>7,}")
    activity = max(gainsight.records("activity_timeline"), key=lambda a: a["ActivityDate"], default=None)
    if activity is not None:
        print(f"  latest timeline entry: {activity['Subject']!r}")
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as conn:
        dead = conn.execute(
            "SELECT object, record_key, error_code, error_message FROM gainsight.dead_letter_report"
        ).fetchall()
        detractor = conn.execute(
            "SELECT response_id, email, score, gainsight_status, gainsight_gsid, timeline_status "
            "FROM gainsight.response_status WHERE category = 'detractor' AND email IS NOT NULL "
            "ORDER BY responded_at DESC LIMIT 1"
        ).fetchone()
    print("\nDead-lettered on purpose (Gainsight refused the record; a scheduled run exits 11 for these):")
    for obj, key, code, message in dead:
        print(f"  {obj} {key}: {code} {message[:110]}")
    if detractor:
        rid, email, score, status, gsid, timeline = detractor
        print(
            f"\nDid {email}'s detractor response ({score}) reach Gainsight? gainsight.response_status says: "
            f"{status}, record {gsid}, timeline {timeline or 'none (older than the timeline window)'}\n"
            f"  duckdb -readonly {settings.duckdb_path} \"SELECT * FROM gainsight.response_status "
            f"WHERE email = '{email}'\""
        )


def _show(settings: RunSettings) -> None:
    path = settings.duckdb_path
    with duckdb.connect(str(path), read_only=True) as conn:
        days = conn.execute(
            "SELECT day, responses, promoters, passives, detractors, nps FROM nps.nps_daily ORDER BY day DESC LIMIT 5"
        ).fetchall()
        quarantined = conn.execute("SELECT response_id, reason FROM nps.quarantine_report LIMIT 5").fetchall()
    print("\nLast five days in nps.nps_daily:")
    print(f"  {'day':<12}{'responses':>10}{'promoters':>10}{'passives':>10}{'detractors':>11}{'NPS':>7}")
    for day, responses, promoters, passives, detractors, nps in days:
        print(f"  {day!s:<12}{responses:>10}{promoters:>10}{passives:>10}{detractors:>11}{nps:>7}")
    print("\nQuarantined on purpose (the sandbox seeds invalid records; a scheduled run exits 10 for these):")
    for response_id, reason in quarantined:
        print(f"  response {response_id or '(no id)'}: {reason}")
    print(
        f"\nInspect the file yourself (read-only, while no run is active; the `duckdb` CLI is not installed with "
        f"the connector: {DUCKDB_CLI}, the python line needs nothing more):\n"
        f"  duckdb -readonly {path} \"SELECT * FROM nps.nps_daily ORDER BY day DESC LIMIT 7\"\n"
        f"  python -c \"import duckdb; print(duckdb.connect('{path}', read_only=True)"
        f".sql('SELECT * FROM nps.quarantine_report'))\""
    )
