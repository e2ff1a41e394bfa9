"""Push benchmark: the connector's push against a naive per-response integration, same client.

    python bench/push.py                                          # 100k responses, 2k accounts, 20k people
    python bench/push.py --responses 2000 --accounts 50 --people 400 --naive-responses 500   # smoke

Setup (not measured): the CustomerGauge sandbox seeds the responses and the real command stages
them into a DuckDB file. Each contender then runs in its own child process against its own fresh
Gainsight sandbox process (quotas off, a Bulk Upsert job seeded), and reports wall time, peak RSS
and API calls per endpoint family.

Contenders:
  connector  `execute(push_only=True)`: companies by key, changed people, responses through the
             Bulk job with reconciliation, Timeline entries in batches; then the same push again
             with nothing new (its write calls must be 0)
  naive      the integration guide's flow, per response, through the same GainsightClient:
             company upsert (update by key, insert on GSOBJ_1011) -> person upsert -> response
             insert -> Timeline create. 400k calls take a while, so by default it runs on
             --naive-responses staged responses spread evenly over the year, and its calls and time
             are scaled to the full count (marked "x N"); --naive-responses 100000 measures it whole.

"Under quota" is the least time Gainsight's documented limits allow for the calls made (sync 100
a minute and 50,000 a day, Bulk 10 an hour and 100 a day, Timeline 200 a minute), per family.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ACCESS_KEY = "bench-access-key"
CG_CLIENT = ("bench-client", "bench-secret")
JOB_ID = "bench-nps-upsert"
OBJECT = "CG_NPS_Response__gc"
KEY_FIELD = "ResponseId__gc"
AUTHOR = "nps.connector@example.com"
TIMELINE_DAYS = 30
NO_QUOTAS = {"sync_per_minute": 10**9, "sync_per_day": 10**9, "bulk_per_hour": 10**6, "bulk_per_day": 10**6, "timeline_per_minute": 10**9}
# Endpoint family -> Gainsight quota family, as the client counts them.
QUOTA_FAMILY = {"query": "sync", "company": "sync", "response": "sync", "people": "sync", "bulk_status": "sync", "timeline": "timeline", "bulk": "bulk"}
LIMITS = {"sync": [(100, 60), (50_000, 86_400)], "bulk": [(10, 3_600), (100, 86_400)], "timeline": [(200, 60)]}
WRITE_FAMILIES = ("company", "response", "people", "timeline", "bulk")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responses", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--naive-responses", type=int, default=10_000, help="responses the naive flow runs on (then scaled)")
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        _child(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        workdir = Path(tmp)
        staged = _stage(workdir, args)
        results = []
        shutil.copytree(workdir / "staged", workdir / "connector")
        with _GainsightProcess() as base_url:
            results.append(_run_child("connector", base_url, workdir / "connector", args))
            results.append(_run_child("connector-rerun", base_url, workdir / "connector", args))
        with _GainsightProcess() as base_url:
            naive = _run_child("naive", base_url, workdir / "staged", args)
        results.append(_scaled(naive, staged))
    _print(results, staged, args)


def _stage(workdir: Path, args: argparse.Namespace) -> int:
    """Seed CustomerGauge and stage it with the real command path (setup, not measured)."""
    from pipelines.runner import execute
    from pipelines.settings import RunSettings
    from sandbox.customergauge import CustomerGaugeSandbox, SeedSpec

    seed = SeedSpec(responses=args.responses, days=args.days, accounts=args.accounts, people=args.people, seed=42)
    target = workdir / "staged"
    settings = RunSettings(target / "bench.duckdb", "bench_push", "nps", str(target / "pipelines"), stage_only=True)
    started = time.perf_counter()
    with CustomerGaugeSandbox(*CG_CLIENT, seed=seed) as cg:
        code, result = execute(settings, {
            "api_base_url": cg.base_url, "token_url": cg.token_url, "client_id": CG_CLIENT[0], "client_secret": CG_CLIENT[1],
            "initial_response_date": (date.today() - timedelta(days=args.days + 1)).isoformat(),
        })
    if result is None:
        raise SystemExit(f"staging failed with exit code {int(code)}")
    print(f"staged {result.staged_rows:,} responses in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return result.staged_rows


class _GainsightProcess:
    """`python -m sandbox gainsight` in its own process, quotas off, the Bulk job seeded."""

    def __enter__(self) -> str:
        cmd = [sys.executable, "-m", "sandbox", "gainsight", "--access-key", ACCESS_KEY,
               "--bulk-job", f"{JOB_ID}:{OBJECT}:UPSERT:{KEY_FIELD}", "--no-quotas"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.proc.kill()
            raise SystemExit(f"Gainsight sandbox did not start: {line!r}")
        return "http://" + line.split("http://", 1)[1].split()[0]

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _run_child(contender: str, base_url: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--contender", contender, "--base-url", base_url, "--workdir", str(workdir),
         "--naive-responses", str(args.naive_responses)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"},
    )
    if out.returncode != 0:
        raise SystemExit(f"{contender} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["contender"] = contender
    print(f"  {contender:16} {result['responses']:>8,} responses in {result['seconds']:.1f} s, "
          f"{sum(result['calls'].values()):,} calls, peak RSS {result['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    return result


def _child(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    started = time.perf_counter()
    if args.contender == "naive":
        responses, calls = _naive(args.base_url, workdir, args.naive_responses)
    else:
        responses, calls = _connector(args.base_url, workdir)
    seconds = time.perf_counter() - started
    print(json.dumps({"responses": responses, "calls": calls, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}))


def _peak_rss_mb() -> float:
    """This process's own high-water mark. Not `ru_maxrss`: Linux carries that over `exec` from the
    forked parent, and the parent here holds the 100k-response CustomerGauge sandbox."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _connector(base_url: str, workdir: Path) -> tuple[int, dict[str, int]]:
    from pipelines.runner import execute
    from pipelines.settings import RunSettings

    settings = RunSettings(workdir / "bench.duckdb", "bench_push", "nps", str(workdir / "pipelines"), push_only=True)
    code, result = execute(settings, gainsight_options={
        "base_url": base_url, "access_key": ACCESS_KEY, "response_bulk_job_id": JOB_ID,
        "timeline_author_email": AUTHOR, "timeline_max_age_days": TIMELINE_DAYS, "bulk_poll_interval_seconds": 0.5,
        "quotas": NO_QUOTAS,
    })
    if result is None or result.push is None:
        raise SystemExit(f"connector push failed with exit code {int(code)}")
    push = result.push
    return push["responses"].created + push["responses"].updated + push["responses"].unchanged, dict(push.calls)


def _naive(base_url: str, workdir: Path, limit: int) -> tuple[int, dict[str, int]]:
    """The guide's flow, one response at a time, through the connector's own client."""
    import duckdb
    import pyarrow as pa

    from destinations.gainsight.client import GainsightClient
    from destinations.gainsight.errors import GainsightRejected
    from destinations.gainsight.quota import QuotaLimiter
    from destinations.gainsight.records import (
        AUTHOR_LOOKUP,
        activity_record,
        company_record,
        person_record,
        response_table,
    )
    from destinations.gainsight.settings import GainsightSettings, QuotaLimits

    settings = GainsightSettings(base_url=base_url, access_key=ACCESS_KEY, timeline_author_email=AUTHOR)
    client = GainsightClient(settings, QuotaLimiter(QuotaLimits(**NO_QUOTAS), None))
    with duckdb.connect(str(workdir / "bench.duckdb"), read_only=True) as conn:
        # Every k-th response by date, so the sample spans the year like the whole (Timeline share included).
        rows = conn.sql(
            """SELECT * EXCLUDE (properties, drivers, n) FROM (
                   SELECT *, row_number() OVER (ORDER BY responded_at, response_id) AS n FROM nps.nps_responses)
               WHERE n % greatest(1, (SELECT count(*) FROM nps.nps_responses) // ?) = 0
               ORDER BY n LIMIT ?""",
            params=[limit, limit],
        ).to_arrow_table()
    lengths = client.field_lengths(OBJECT)
    since = datetime.now(timezone.utc) - timedelta(days=TIMELINE_DAYS)
    for position, row in enumerate(rows.to_pylist()):
        company = None
        if row["account_id"]:
            record = company_record(row["account_id"], row["account_name"], "CG_Account_Id__gc")
            try:
                company = client.update("company", "Company", [record], ["CG_Account_Id__gc"])[0]["Gsid"]
            except GainsightRejected as exc:
                if exc.code != "GSOBJ_1011":
                    raise
                company = client.insert("company", "Company", [record])[0]["Gsid"]
        if row["email"]:
            try:
                client.upsert_person(person_record(row["email"], row["first_name"], row["last_name"], company))
            except GainsightRejected:
                pass  # counted by the client; the naive flow moves on
        table = response_table(rows.slice(position, 1), pa.array([company], pa.string()), settings.response_fields, lengths)
        try:
            client.insert("response", OBJECT, table.to_pylist())
        except GainsightRejected:
            pass
        if company and row["responded_at"] >= since:
            client.insert_activities([activity_record(row, company, AUTHOR, settings.timeline_activity_type)], AUTHOR_LOOKUP)
    return rows.num_rows, dict(client.stats.calls)


def _scaled(result: dict[str, Any], staged: int) -> dict[str, Any]:
    """Scale a naive run on a sample to the full count (calls and time grow per response)."""
    factor = staged / result["responses"]
    if factor <= 1.0:
        return result
    return {
        **result,
        "contender": f"naive (x{factor:.0f})",
        "scaled_from": result["responses"],
        "responses": staged,
        "calls": {family: round(n * factor) for family, n in result["calls"].items()},
        "seconds": result["seconds"] * factor,
    }


def quota_seconds(calls: dict[str, int]) -> float:
    """Least time the documented windows allow for these calls; families are separate windows."""
    per_family: dict[str, int] = {}
    for endpoint, n in calls.items():
        family = QUOTA_FAMILY.get(endpoint)
        if family:
            per_family[family] = per_family.get(family, 0) + n
    return max(
        (max((math.ceil(n / limit) - 1) * window for limit, window in LIMITS[family]) for family, n in per_family.items()),
        default=0.0,
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def _print(results: list[dict[str, Any]], staged: int, args: argparse.Namespace) -> None:
    families = ["query", "company", "people", "response", "timeline", "bulk", "bulk_status"]
    print(f"\npush benchmark: {staged:,} responses, {args.accounts:,} accounts, {args.people:,} people "
          f"({os.cpu_count()} cores, Python {sys.version.split()[0]}; quotas off in the sandboxes)")
    header = "".join(f"{f:>12}" for f in families)
    print(f"{'contender':<18}{header}{'total':>10}{'seconds':>10}{'RSS MB':>8}{'under quota':>13}")
    for r in results:
        cells = "".join(f"{r['calls'].get(f, 0):>12,}" for f in families)
        print(f"{r['contender']:<18}{cells}{sum(r['calls'].values()):>10,}{r['seconds']:>10.1f}"
              f"{r['peak_rss_mb']:>8.0f}{_duration(quota_seconds(r['calls'])):>13}")
    by = {r["contender"].split(" ")[0]: r for r in results}
    connector, rerun, naive = by["connector"], by["connector-rerun"], by["naive"]
    ours, theirs = sum(connector["calls"].values()), sum(naive["calls"].values())
    rerun_writes = sum(rerun["calls"].get(f, 0) for f in WRITE_FAMILIES)
    if "scaled_from" in naive:
        print(f"naive measured on {naive['scaled_from']:,} responses spread over the data; calls and seconds scaled x"
              f"{staged / naive['scaled_from']:.1f} (peak RSS as measured)")
    checks = [
        (f"naive / connector API calls: {theirs / ours:.1f}x", theirs / ours >= 3, "target >= 3x"),
        (f"Bulk uploads carrying the responses: {connector['calls'].get('bulk', 0)}", connector["calls"].get("bulk", 0) <= 2, "target <= 2"),
        (f"connector peak RSS: {connector['peak_rss_mb']:.0f} MB", connector["peak_rss_mb"] <= 400, "target <= 400 MB"),
        (f"re-run with nothing new: {rerun_writes} write calls, {sum(rerun['calls'].values())} calls in all", rerun_writes == 0, "target 0 writes"),
        (f"under quota: connector {_duration(quota_seconds(connector['calls']))}, naive {_duration(quota_seconds(naive['calls']))}", True, "from the call counts"),
    ]
    for text, met, target in checks:
        print(f"  {text:<72} {target:<20} {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
