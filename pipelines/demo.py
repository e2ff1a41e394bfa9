"""`--demo`: the real command path against the bundled CustomerGauge sandbox.

Starts the sandbox in-process with seeded data, stages it into a throw-away DuckDB file, then
changes the sandbox the way a real day does (new responses, edited comments, late arrivals) and
runs again to show the incremental pass. The demo never reads `.dlt/secrets.toml` and never talks
to a real vendor host.
"""

from __future__ import annotations

import logging
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb

from sandbox.customergauge import CustomerGaugeSandbox, SeedSpec

from .errors import ExitCode
from .runner import execute
from .settings import RunSettings

log = logging.getLogger("nps.demo")

DEMO_DIR = Path(".demo")
DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret-not-for-production"
SEED = SeedSpec(responses=3000, days=45, accounts=40, invalid=4, seed=20261128)


def run_demo(workdir: Path = DEMO_DIR) -> ExitCode:
    if workdir.exists():
        shutil.rmtree(workdir)
    settings = RunSettings(
        duckdb_path=(workdir / "nps_demo.duckdb").resolve(),
        pipeline_name="nps_to_gainsight_demo",
        dataset_name="nps",
        pipelines_dir=str((workdir / "pipelines").resolve()),
    )
    with CustomerGaugeSandbox(client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET, seed=SEED) as sandbox:
        options = {
            "api_base_url": sandbox.base_url,
            "token_url": sandbox.token_url,
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
            "initial_response_date": (date.today() - timedelta(days=SEED.days + 1)).isoformat(),
            "lookback_days": 3,
            "retry_backoff_seconds": 0.2,
        }
        log.info("demo: CustomerGauge sandbox at %s with %d seeded responses", sandbox.base_url, SEED.responses)
        log.info("demo: run 1 of 2 (first load)")
        first, _ = execute(settings, options)
        if first not in (ExitCode.OK, ExitCode.QUARANTINED):
            return first
        _simulate_a_day(sandbox)
        log.info("demo: run 2 of 2 (incremental: lookback window plus what changed)")
        second, _ = execute(settings, options)
        if second not in (ExitCode.OK, ExitCode.QUARANTINED):
            return second
    _show(settings)
    return ExitCode.OK


def _simulate_a_day(sandbox: CustomerGaugeSandbox) -> None:
    """New responses, edits of recent ones (re-emitted by the feed) and late arrivals."""
    new_ids = sandbox.add_responses(25)
    recent = [r for r in sandbox.records if "nps" in r and "number_customergauge" in r][-40:-37]
    for record in recent:
        sandbox.edit_response(record["number_customergauge"], comment="Edited after a follow-up call: resolved.")
    two_days_ago = (datetime.now(timezone.utc) - timedelta(days=2)).replace(tzinfo=None, microsecond=0)
    late_ids = sandbox.add_responses(2, responded_at=two_days_ago)
    log.info(
        "demo: sandbox changed: %d new responses, %d edited, %d late arrivals dated %s",
        len(new_ids),
        len(recent),
        len(late_ids),
        two_days_ago.date(),
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
        f"\nInspect the file yourself (read-only, while no run is active):\n"
        f"  duckdb -readonly {path} \"SELECT * FROM nps.nps_daily ORDER BY day DESC LIMIT 7\"\n"
        f"  python -c \"import duckdb; print(duckdb.connect('{path}', read_only=True)"
        f".sql('SELECT * FROM nps.quarantine_report'))\""
    )
