"""Extract benchmark: the CustomerGauge source against a ceiling and a naive dlt baseline.

    python bench/extract.py                       # 200k responses, all three contenders
    python bench/extract.py --responses 1000000   # memory figure: source at 100k and 1M (+ ceiling)

One sandbox process serves the same seeded data to every contender; each contender runs in its own
child process, one after the other (this machine has 2 cores: one serves, one works), and reports
its own row count, wall time after imports, and peak RSS.

Contenders:
  ceiling  plain requests + json parsing over all pages, nothing stored
  source   this connector's staging run end to end into a fresh DuckDB file (pipelines.runner)
  naive    the same records through dlt as plain dicts with default settings (merge on the id)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"
EXPANSIONS = ("drivers", "properties")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responses", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--with-naive", action="store_true", help="run the naive contender above 200k too (slow, GBs)")
    args = parser.parse_args()
    if args.contender:
        _child(args)
        return

    results = []
    sizes = [args.responses] if args.responses <= 200_000 else [100_000, args.responses]
    for size in sizes:
        with _sandbox(size, args.days, args.accounts) as base_url:
            contenders = ["ceiling", "source"]
            if size <= 200_000 or args.with_naive:
                contenders.append("naive")
            if size != args.responses:
                contenders = ["source"]  # the 100k point only feeds the memory ratio
            for contender in contenders:
                results.append(_run_child(contender, base_url, args.days, size))
    _print(results, os.cpu_count())


class _sandbox:
    """`python -m sandbox customergauge` in its own process for the whole benchmark."""

    def __init__(self, responses: int, days: int, accounts: int):
        self.cmd = [
            sys.executable, "-m", "sandbox", "customergauge", "--port", "0",
            "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
            "--responses", str(responses), "--days", str(days), "--accounts", str(accounts),
        ]

    def __enter__(self) -> str:
        print(f"starting sandbox: {' '.join(self.cmd[3:])}", file=sys.stderr, flush=True)
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if "http://" not in line:
            self.proc.kill()
            raise SystemExit(f"sandbox did not start: {line!r}")
        return line.split("serving at ", 1)[1].split()[0]

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _run_child(contender: str, base_url: str, days: int, size: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{contender}-") as workdir:
        out = subprocess.run(
            [sys.executable, __file__, "--contender", contender, "--base-url", base_url, "--days", str(days), "--workdir", workdir],
            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"},
        )
    if out.returncode not in (0, 10):
        raise SystemExit(f"{contender} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(contender=contender, size=size)
    print(f"  {contender:8} {size:>9,} rows in {result['seconds']:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB",
          file=sys.stderr, flush=True)  # fmt: skip
    return result


def _child(args: argparse.Namespace) -> None:
    start_day = (date.today() - timedelta(days=args.days + 1)).isoformat()
    runner = {"ceiling": _ceiling, "source": _source, "naive": _naive}[args.contender]
    started = time.perf_counter()
    rows = runner(args.base_url, start_day, Path(args.workdir))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": peak}))


def _period(start_day: str) -> list[tuple[str, str]]:
    return [
        ("per_page", "1000"), *[("with[]", e) for e in EXPANSIONS], ("period[field]", "date_survey_response"),
        ("period[start]", start_day), ("period[end]", date.today().isoformat()),
    ]


def _raw_pages(base_url: str, start_day: str):
    """Plain requests paging: the same requests the source sends, nothing else."""
    import requests

    session = requests.Session()
    token = session.post(f"{base_url}/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
    }).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    params = _period(start_day)
    cursor = None
    while True:
        query = params if cursor is None else [*params, ("cursor", str(cursor))]
        page = session.get(f"{base_url}/v7/rest/sync/responses", params=query).json()
        if not page["data"]:
            return
        yield page["data"]
        cursor = page["cursor"]["next"]


def _ceiling(base_url: str, start_day: str, workdir: Path) -> int:
    return sum(len(records) for records in _raw_pages(base_url, start_day))


def _source(base_url: str, start_day: str, workdir: Path) -> int:
    from pipelines.runner import execute
    from pipelines.settings import RunSettings

    settings = RunSettings(workdir / "bench.duckdb", "bench_source", "nps", str(workdir / "pipelines"), stage_only=True)
    code, result = execute(settings, {
        "api_base_url": base_url, "token_url": f"{base_url}/oauth2/token", "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "initial_response_date": start_day,
    })
    if result is None:
        raise SystemExit(f"source run failed with exit code {int(code)}")
    return result.staged_rows


def _naive(base_url: str, start_day: str, workdir: Path) -> int:
    import dlt
    import duckdb

    from connector_common.sql import one_row

    @dlt.resource(name="responses", primary_key="number_customergauge", write_disposition="merge")
    def responses():
        yield from _raw_pages(base_url, start_day)

    pipeline = dlt.pipeline("bench_naive", destination=dlt.destinations.duckdb(str(workdir / "bench_naive.duckdb")),
                            dataset_name="naive", pipelines_dir=str(workdir / "pipelines"))
    pipeline.run(responses())
    with duckdb.connect(str(workdir / "bench_naive.duckdb"), read_only=True) as conn:
        return one_row(conn, "SELECT count(*) FROM naive.responses")[0]


def _print(results: list[dict], cores: int | None) -> None:
    print(f"\nextract benchmark ({cores} cores, Python {sys.version.split()[0]})")
    print(f"{'contender':<10}{'responses':>11}{'seconds':>9}{'rows/s':>10}{'peak RSS MB':>13}")
    for r in results:
        print(f"{r['contender']:<10}{r['size']:>11,}{r['seconds']:>9.1f}{r['rows'] / r['seconds']:>10,.0f}{r['peak_rss_mb']:>13.0f}")
    by = {(r["contender"], r["size"]): r for r in results}
    top = max(r["size"] for r in results)
    rate = {name: by[(name, top)]["rows"] / by[(name, top)]["seconds"] for name in ("ceiling", "source", "naive") if (name, top) in by}
    if "ceiling" in rate:
        print(f"source / ceiling throughput: {rate['source'] / rate['ceiling']:.2f}  (target >= 0.5)")
    if "naive" in rate:
        print(f"source / naive throughput:   {rate['source'] / rate['naive']:.1f}  (target >= 10)")
    if ("source", 100_000) in by and top > 100_000:
        small, big = by[("source", 100_000)]["peak_rss_mb"], by[("source", top)]["peak_rss_mb"]
        print(f"source peak RSS at {top:,}: {big:.0f} MB (target <= 400), {big / small:.2f}x its 100k figure (target <= 1.5)")


if __name__ == "__main__":
    main()
