"""What one small in-process run of the command costs, in CPU seconds and DuckDB statements.

    python bench/run_cost.py                      # 50 responses, 5 runs with nothing new, 3 incremental
    python bench/run_cost.py --idle-runs 10 --test-cache
    python bench/run_cost.py --count-statements   # a second, slower pass counting DuckDB statements

Every stage-and-push run pays a fixed cost whatever its size (dlt's pipelines, DuckDB statements on
the sync state), and the cron schedule and the test suite both make many small runs. This measures
it per kind of run, in this process, as the tests' `connector_for(...).run()` does:

  first        a first stage and push of --responses responses (sync API, below bulk_min_rows)
  nothing new  a run that finds no new response: a CustomerGauge page, no Gainsight write
  incremental  --new new responses staged and pushed

CPU is this process's user + system time (getrusage, every thread: dlt's load pool, DuckDB's
threads); the two sandboxes run in a child process so their CPU is not counted. CPU seconds do not
depend on the machine's load the way wall time does, but a loaded machine still inflates them a
little (caches, frequency): compare figures of one hour. `--test-cache` installs tests/dlt_cache.py
first, as the test process does. `--count-statements` repeats the runs with a profile hook that
counts calls of DuckDB's statement methods (execute, executemany, sql, query, read_parquet,
from_arrow), whoever issues them (the connector or dlt); its CPU figures are not comparable and are not printed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"

ACCESS_KEY = "bench-access-key"
CG_CLIENT = ("bench-client", "bench-secret")
JOB_ID = "bench-nps-upsert"
OBJECT = "CG_NPS_Response__gc"
NO_QUOTAS = {"sync_per_minute": 10**6, "sync_per_day": 10**7, "bulk_per_hour": 1000, "bulk_per_day": 1000, "timeline_per_minute": 10**6}
STATEMENT_METHODS = frozenset({"execute", "executemany", "sql", "query", "read_parquet", "from_arrow"})


def sandboxes(responses: int, pipe: Connection) -> None:
    """Child process: both sandboxes, answering `("add", n)` and `("stop",)` on the pipe."""
    from sandbox.customergauge import CustomerGaugeSandbox, SeedSpec
    from sandbox.gainsight import BulkJob, GainsightSandbox

    spec = SeedSpec(responses=responses, days=10, accounts=8, invalid=0, non_responses=0, seed=11)
    with CustomerGaugeSandbox(client_id=CG_CLIENT[0], client_secret=CG_CLIENT[1], seed=spec) as cg:
        gs = GainsightSandbox(ACCESS_KEY, "bench-gs-client", "bench-gs-secret", quotas=False,
                              bulk_jobs=[BulkJob(JOB_ID, OBJECT, "UPSERT", keys=("ResponseId__gc",))])  # fmt: skip
        gs.start()
        pipe.send((cg.base_url, cg.token_url, gs.base_url))
        while (command := pipe.recv())[0] != "stop":
            pipe.send(cg.add_responses(command[1]))
        pipe.send(gs.count_records(OBJECT))
        gs.close()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class StatementCounter:
    """Counts calls of DuckDB's statement methods in every thread (a profile hook sees C calls)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def hook(self, frame: Any, event: str, arg: Any) -> None:
        # DuckDB's methods are pybind11 functions: the hook sees the name, not the object it is called on
        if event == "c_call" and arg.__name__ in STATEMENT_METHODS and type(arg.__self__).__name__.startswith("pybind11"):
            self.calls[arg.__name__] += 1

    def __enter__(self) -> StatementCounter:
        threading.setprofile(self.hook)
        sys.setprofile(self.hook)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)
        threading.setprofile(None)


def one_series(args: argparse.Namespace, count: bool) -> dict[str, list[tuple[float, Counter[str]]]]:
    """Start the sandboxes, make the runs; (CPU-s, statement counts) per run, by kind."""
    from pipelines.errors import ExitCode
    from pipelines.runner import execute
    from pipelines.settings import RunSettings

    parent, child = multiprocessing.get_context("spawn").Pipe()
    server = multiprocessing.get_context("spawn").Process(target=sandboxes, args=(args.responses, child), daemon=True)
    server.start()
    cg_url, token_url, gs_url = parent.recv()
    folder = Path(tempfile.mkdtemp(prefix="run_cost_", dir=args.tmp))
    settings = RunSettings(duckdb_path=folder / "staging.duckdb", pipeline_name="bench_cost", dataset_name="nps",
                           pipelines_dir=str(folder / "pipelines"))  # fmt: skip
    source = {"api_base_url": cg_url, "token_url": token_url, "client_id": CG_CLIENT[0], "client_secret": CG_CLIENT[1],
              "initial_response_date": (date.today() - timedelta(days=12)).isoformat(), "lookback_days": 3}  # fmt: skip
    gainsight = {"base_url": gs_url, "access_key": ACCESS_KEY, "response_bulk_job_id": JOB_ID, "timeline_author_email":
                 "nps.connector@example.com", "timeline_max_age_days": 14, "quotas": NO_QUOTAS, "create_missing_companies": True,
                 "bulk_min_rows": 1000}  # fmt: skip
    results: dict[str, list[tuple[float, Counter[str]]]] = {"first": [], "nothing new": [], "incremental": []}

    def measured(kind: str, before: Callable[[], None] | None = None) -> None:
        if before:
            before()
        counter = StatementCounter() if count else None
        started = cpu_seconds()
        if counter:
            with counter:
                code, _ = execute(settings, source, gainsight)
        else:
            code, _ = execute(settings, source, gainsight)
        spent = cpu_seconds() - started
        if code != ExitCode.OK:
            raise SystemExit(f"a {kind} run ended with exit {code!r}")
        results[kind].append((spent, counter.calls if counter else Counter()))

    def add_new() -> None:
        parent.send(("add", args.new))
        parent.recv()

    measured("first")
    for _ in range(args.idle_runs):
        measured("nothing new")
    for _ in range(args.incremental_runs):
        measured("incremental", add_new)
    parent.send(("stop",))
    landed = parent.recv()
    server.join(10)
    expected = args.responses + args.new * args.incremental_runs
    if landed != expected:
        raise SystemExit(f"Gainsight holds {landed} responses, expected {expected}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responses", type=int, default=50)
    parser.add_argument("--new", type=int, default=5, help="new responses per incremental run")
    parser.add_argument("--idle-runs", type=int, default=5)
    parser.add_argument("--incremental-runs", type=int, default=3)
    parser.add_argument("--test-cache", action="store_true", help="install tests/dlt_cache.py first, as the test process does")
    parser.add_argument("--count-statements", action="store_true", help="a second pass counting DuckDB calls")
    parser.add_argument("--tmp", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)  # the runs' own lines are not the point here
    if args.test_cache:
        from tests.dlt_cache import install

        install()
    sys.stdout, printed = open(os.devnull, "w"), sys.stdout  # noqa: SIM115  (each run prints its summary)
    try:
        timed = one_series(args, count=False)
        counted = one_series(args, count=True) if args.count_statements else None
    finally:
        sys.stdout.close()
        sys.stdout = printed
    print(f"load average {os.getloadavg()[0]:.1f}; {args.responses} responses, +{args.new} per incremental run"
          f"{'; tests/dlt_cache.py installed' if args.test_cache else ''}")  # fmt: skip
    for kind, runs in timed.items():
        cpu = [spent for spent, _ in runs]
        line = f"{kind:<12} CPU-s per run: median {statistics.median(cpu):.3f}  min {min(cpu):.3f}  ({len(cpu)} runs)"
        if counted:
            calls = counted[kind][-1][1]
            line += f"  DuckDB calls (last run): {sum(calls.values())} " + ", ".join(f"{k} {v}" for k, v in calls.most_common())
        print(line)


if __name__ == "__main__":
    main()
