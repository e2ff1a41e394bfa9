"""Shared fixtures: real sandboxes of both vendors on loopback and real DuckDB staging files.

How to write a fast test here (the default suite must stay under 2 minutes on 2 cores):

- **Count runs, not rows.** Each stage or push run costs ~1-1.5 CPU-s of dlt whatever its size, a
  child process ~3 CPU-s more just to import dlt, DuckDB and pyarrow. Make as few runs as the point
  needs; seed as few responses as it needs (more than `bulk_min_rows` only for a Bulk upload, more
  than `rows_per_load` only for parts). A test over ~3 CPU-s says why in its docstring.
- **In-process first.** `staging_for(cg).run(...)` / `connector_for(cg, gs).run(...)` call the
  runner directly; `tests/cli.run_main(*argv, cwd=project, env=cli_env(...) or push_env(...))` runs
  the real command entry (argv, `.dlt` files, env vars, exit code, output) in this process. Start a
  child (`run_cli`, `start_cli`) only when the process boundary is the point: kill -9, SIGTERM/SIGINT,
  a second process on a locked file, the README-exact commands of test_defaults.py.
- **Sandbox clocks, never sleeps.** Both sandboxes read `sandbox.clock`: `time_scale=0` freezes it
  (a `delay` fault then holds its answer until `sandbox.advance(s)`), `clock.wait_for_sleepers(n)`
  tells that a request is held, and a large `time_scale` lets quota windows pass at once; a
  Gainsight Bulk upload is processed in 2 x `bulk_phase_seconds` (0.02 s in `gs_sandbox`). Assert
  counts and order, never durations.
- **Read files through `read_only(path)`** (as `Staging.query` does), not `duckdb.connect(path,
  read_only=True)`: each connect builds a DuckDB instance first (~25 ms of CPU), attaching the file
  to the one kept instance does not.
- **Build a shared outcome once.** Several tests reading one outcome use a module-scoped fixture
  plus `pytest.mark.xdist_group` (see test_defaults.py's `shipped`).
- dlt's configuration is resolved once per run in this process (`dlt_cache.py`, installed below):
  nothing to do in a test, but it is why a run in-process is cheap.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pytest

# No test may talk to anything but loopback: dlt's telemetry would try to.
os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
# Bytecode is written and reused, here, in xdist's workers and in the commands the tests start, even
# where PYTHONDONTWRITEBYTECODE is set (as on this project's machines): without it every worker
# rewrote the asserts of every test module it collected (xdist makes each worker collect all) and
# compiled the connector's modules again, and so did every child `python` (the README's commands,
# the benchmarks, the zygote). Measured: one collection of the suite 7.1 -> 3.5 CPU-s, a child's
# imports ~0.25 CPU-s less. Set before the imports below; `__pycache__` is ignored by git, and
# Python and pytest write each file atomically, so workers writing at once are safe.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

from pipelines.errors import ExitCode  # noqa: E402  (compiled after the bytecode switch above)
from sandbox.customergauge import CustomerGaugeSandbox, SeedSpec  # noqa: E402

pytest_plugins = ("tests.staged",)  # staged once, copied per test (staged.py)

if TYPE_CHECKING:  # dlt comes with these: imported where a test process runs, not in xdist's controller
    from pipelines.settings import RunSettings
    from pipelines.stage import StageResult

MEMORY_TMP = Path("/dev/shm")  # tmpfs on Linux


def pytest_configure(config: pytest.Config) -> None:
    """Temp folders in memory, and dlt's configuration kept per run in a process that runs tests.

    Temp folders: where the machine has a tmpfs, since every DuckDB commit syncs its WAL, which on
    this machine's disk takes about twice the wall time it takes in memory, and the suite commits
    thousands of times (nothing here survives a power cut either way). Runs before xdist starts its
    workers, which inherit TMPDIR; `--basetemp` or TMPDIR given by the caller win.

    dlt: each run resolves its configuration once, not ~200 times (dlt_cache.py). xdist's
    controller runs no test, so it imports no dlt at all (~1.5 CPU-s before the workers start)."""
    if not (config.getoption("numprocesses", None) and not hasattr(config, "workerinput")):
        from .dlt_cache import install as keep_dlt_configuration_per_run

        keep_dlt_configuration_per_run()
    if config.option.basetemp or "TMPDIR" in os.environ or not os.access(MEMORY_TMP, os.W_OK):
        return
    if shutil.disk_usage(MEMORY_TMP).free > 2 * 1024**3:
        os.environ["TMPDIR"] = tempfile.tempdir = str(MEMORY_TMP)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Everything imported so far (dlt, DuckDB, pyarrow, the connector, the test modules) is moved
    out of the garbage collector's reach (`gc.freeze`): it lives as long as the process, yet each
    full collection walked all of it again. Measured on test_stage.py with `-n 0`: the collector's
    CPU 1.18 -> 0.52 s; garbage made by the tests is collected as before."""
    gc.collect()
    gc.freeze()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` starts two workers per core, not one: most tests wait on loopback HTTP, a sandbox's
    Bulk processing or a child process, so one worker per core left the cores half idle. Measured
    2026-12-02 on this 2-core machine, idle, 570 tests: `-n 2` 200 s (206 CPU-s), `-n 3` 144 s, `-n 4`
    131-156 s (216-264 CPU-s), `-n 5`/`-n 6` 142/139 s (no better: CPU-bound). xdist's own
    PYTEST_XDIST_AUTO_NUM_WORKERS still wins when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return 2 * len(os.sched_getaffinity(0))


# Modules whose tests cost most CPU per test (stage and push runs, child processes), most first;
# every other module runs after them in the usual order. With two workers the run ends when the
# later of them ends: long tests started last would leave one worker alone for their length, so the
# short unit tests go last and fill the gap. xdist sends a whole `xdist_group` first (test_defaults.py).
SLOW_FIRST = (
    "test_push_command.py", "test_bench.py", "test_command.py", "test_push.py", "test_ops.py", "test_poison.py",
    "test_people.py", "test_people_bulk.py", "test_source.py", "test_serve.py", "test_companies.py", "test_stage.py",
    "test_engine.py", "test_pii.py", "test_scheduler.py", "test_schema.py", "test_export_csv.py",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow modules first (SLOW_FIRST); the same order on every worker, as xdist requires."""
    rank = {name: place for place, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))


REPO = Path(__file__).resolve().parents[1]
CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret-4f9a2c"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder laid out like the repository root: .dlt/config.toml, no secrets.toml."""
    (tmp_path / ".dlt").mkdir()
    shutil.copy(REPO / ".dlt" / "config.toml", tmp_path / ".dlt" / "config.toml")
    return tmp_path


@pytest.fixture
def cg_sandbox() -> Iterator[Any]:
    """Factory: start a sandbox with a given seed; all are stopped at the end of the test."""
    started: list[CustomerGaugeSandbox] = []

    def start(
        responses: int = 300, days: int = 20, accounts: int = 12, invalid: int = 0, non_responses: int = 0, **kwargs: Any
    ) -> CustomerGaugeSandbox:
        spec = SeedSpec(
            responses=responses,
            days=days,
            accounts=accounts,
            invalid=invalid,
            non_responses=non_responses,
            seed=kwargs.pop("seed", 11),
        )
        sandbox = CustomerGaugeSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, seed=spec, **kwargs)
        sandbox.__enter__()
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.__exit__(None, None, None)


_reader: list[duckdb.DuckDBPyConnection] = []  # one in-memory DuckDB per test process, made on first use
_reader_lock = threading.Lock()


@contextmanager
def read_only(path: Path | str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only look at a DuckDB file, with its catalog as the default (`nps.x`, `gainsight.x`).

    `duckdb.connect(path, read_only=True)` builds a whole DuckDB instance before it opens the file
    (~25 ms of CPU here, and the tests read files hundreds of times); attaching the file to one kept
    in-memory instance opens only the file. Detaching closes it, as closing a connection did, so
    the next run opens it for writing as before."""
    with _reader_lock:
        if not _reader:
            _reader.append(duckdb.connect())
        conn = _reader[0]
        quoted = str(path).replace("'", "''")
        conn.execute(f"ATTACH '{quoted}' AS read_only_file (READ_ONLY)")
        try:
            conn.execute("USE read_only_file")
            yield conn
        finally:
            conn.execute("USE memory")
            conn.execute("DETACH read_only_file")


@dataclass
class Staging:
    """A staging setup in a temp folder: the DuckDB file and dlt's working folder."""

    settings: RunSettings
    sandbox: CustomerGaugeSandbox
    initial_days: int

    def options(self, **overrides: Any) -> dict[str, Any]:
        return {
            "api_base_url": self.sandbox.base_url,
            "token_url": self.sandbox.token_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "initial_response_date": (date.today() - timedelta(days=self.initial_days)).isoformat(),
            "lookback_days": 3,
            "retry_backoff_seconds": 0.05,
            **overrides,
        }

    def run(self, **overrides: Any) -> tuple[ExitCode, StageResult | None]:
        from pipelines.runner import execute

        return execute(self.settings, self.options(**overrides))

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        with read_only(self.settings.duckdb_path) as conn:
            return conn.execute(sql, params or []).fetchall()

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        return self.query(sql, params)[0][0]

    def response_requests(self) -> list[dict[str, list[str]]]:
        """Query strings of every page request the sandbox saw, in order."""
        return [entry.query for entry in self.sandbox.requests(path="/v7/rest/sync/responses")]


@pytest.fixture
def staging_for(tmp_path: Path):
    """Factory: a Staging bound to a sandbox, with files under this test's temp folder."""

    def make(sandbox: CustomerGaugeSandbox, initial_days: int = 40, name: str = "nps", **settings_overrides: Any) -> Staging:
        from pipelines.settings import RunSettings

        settings = RunSettings(
            duckdb_path=tmp_path / f"staging_{name}.duckdb",
            pipeline_name=f"test_{name}",
            dataset_name="nps",
            pipelines_dir=str(tmp_path / f"{name}_pipelines"),
            **{"stage_only": True, **settings_overrides},
        )
        return Staging(settings, sandbox, initial_days)

    return make


# --- Gainsight -------------------------------------------------------------------------------------

ACCESS_KEY = "test-gainsight-access-key-7d3e"
GS_CLIENT_ID = "test-gainsight-client"
GS_CLIENT_SECRET = "test-gainsight-secret-91af"
BULK_JOB = "job-nps-responses-upsert"
AUTHOR = "nps.connector@example.com"
RESPONSE_OBJECT = "CG_NPS_Response__gc"

TEST_BULK_PHASE_SECONDS = 0.02  # sandbox seconds a test's Bulk upload stays INIT, and IN_PROGRESS (gs_sandbox)

# Tests of behaviour other than quotas run without them; quota tests switch them on.
NO_CLIENT_QUOTAS = {
    "sync_per_minute": 10**6, "sync_per_day": 10**7, "bulk_per_hour": 1000, "bulk_per_day": 1000, "timeline_per_minute": 10**6
}


@pytest.fixture
def gs_sandbox() -> Iterator[Any]:
    """Factory: a Gainsight sandbox with the NPS Upsert Bulk job seeded; stopped after the test.

    Its Bulk uploads stay INIT and IN_PROGRESS for TEST_BULK_PHASE_SECONDS each, not the sandbox's
    1 s: a push still polls (it finds INIT first), but does not wait ~2.5 s of real time per upload
    (the polls back off from 0.05 s by 1.5x). A test whose point is a job still processing freezes
    the clock (`time_scale=0`) or passes its own `bulk_phase_seconds`."""
    from sandbox.gainsight import BulkJob, GainsightSandbox

    started: list[Any] = []

    def start(**kwargs: Any) -> Any:
        kwargs.setdefault("bulk_jobs", [BulkJob(BULK_JOB, RESPONSE_OBJECT, "UPSERT", keys=("ResponseId__gc",))])
        kwargs.setdefault("quotas", False)
        kwargs.setdefault("bulk_phase_seconds", TEST_BULK_PHASE_SECONDS)
        sandbox = GainsightSandbox(ACCESS_KEY, GS_CLIENT_ID, GS_CLIENT_SECRET, **kwargs)
        sandbox.start()
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.close()


@dataclass
class Connector:
    """Stage and push end to end against both sandboxes, in-process."""

    staging: Staging
    gainsight: Any

    def gs_options(self, **overrides: Any) -> dict[str, Any]:
        return {
            "base_url": self.gainsight.base_url,
            "access_key": ACCESS_KEY,
            "response_bulk_job_id": BULK_JOB,
            "timeline_author_email": AUTHOR,
            "timeline_max_age_days": 14,
            "retry_backoff_seconds": 0.01,
            "bulk_poll_interval_seconds": 0.05,
            "bulk_poll_timeout_seconds": 60,
            "max_rate_limit_wait_seconds": 2,
            "quotas": NO_CLIENT_QUOTAS,
            # The sandbox tenant starts empty: these tests let the connector create its Companies.
            "create_missing_companies": True,
            **overrides,
        }

    def run(self, dry_run: bool = False, cg: dict[str, Any] | None = None, **gs: Any) -> tuple[ExitCode, StageResult | None]:
        from pipelines.runner import execute

        return execute(self.staging.settings, self.staging.options(**(cg or {})), self.gs_options(**gs), dry_run)

    def records(self, obj: str = RESPONSE_OBJECT) -> list[dict[str, Any]]:
        return self.gainsight.records(obj)

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        return self.staging.scalar(sql, params)

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        return self.staging.query(sql, params)


@pytest.fixture
def connector_for(staging_for):
    def make(cg: CustomerGaugeSandbox, gs: Any, name: str = "push", **settings: Any) -> Connector:
        return Connector(staging_for(cg, name=name, stage_only=False, **settings), gs)

    return make
