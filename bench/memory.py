"""Peak RSS of the whole command, as cron runs it: `python pipelines/nps_to_gainsight.py`.

    python bench/push.py --whole-command --size 200k           # 200k responses, 4k accounts, 40k people
    python bench/push.py --whole-command --size 1m --people-writer bulk --runs whole   # 1M / 10k / 100k

Both sandboxes run in their own processes (seeded CustomerGauge; Gainsight with quotas off, the Bulk
job seeded, a fresh one per run), so the measured process holds only the connector. Three runs, each
in its own child process from the repository root (so the shipped `.dlt/config.toml` applies),
configured by environment variables like a deployment:

  whole       the scheduled run on an empty DuckDB file: stage, then push, in one process
  stage-only  `--stage-only` on another empty file: the stage side alone
  push-only   `--push-only` on that staged file: the push side alone

The child runs the command's own `__main__` (runpy) and reports its exit code, wall time and
`VmHWM` (the kernel's high-water mark of this process's resident memory) when the command exits,
so the close-time checkpoint of DuckDB is included. Not `ru_maxrss`: Linux carries that over `exec`
from the forked parent.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ROOT / "pipelines" / "nps_to_gainsight.py"
CG_CLIENT = ("bench-client", "bench-secret")
CG_TOKEN_PATH = "/oauth2/token"
ACCESS_KEY = "bench-access-key"
JOB_ID = "bench-nps-upsert"
OBJECT = "CG_NPS_Response__gc"
KEY_FIELD = "ResponseId__gc"
AUTHOR = "nps.connector@example.com"
TIME_SCALE = 600  # sandbox seconds per real second
OK_CODES = (0, 10, 11, 12)  # completed, possibly with warnings (README "Exit codes")
RUNS = (("whole", ()), ("stage-only", ("--stage-only",)), ("push-only", ("--push-only",)))
CLIENT_QUOTAS = {"sync_per_minute": 10**9, "sync_per_day": 10**9, "bulk_per_hour": 10**6, "bulk_per_day": 10**6,
                 "timeline_per_minute": 10**9}  # fmt: skip


def peak_rss_mb() -> float:
    """This process's own high-water mark of resident memory, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def run_command_here(result_file: Path, argv: list[str]) -> None:
    """In the measured child: the command's `__main__` with `argv`, then its figures to `result_file`
    (stdout is the command's own)."""
    sys.argv = [str(COMMAND), *argv]
    started = time.perf_counter()
    code: Any = 0
    try:
        runpy.run_path(str(COMMAND), run_name="__main__")
    except SystemExit as stop:
        code = stop.code
    seconds = time.perf_counter() - started
    result_file.write_text(json.dumps({"exit_code": code if isinstance(code, int) else 1, "seconds": seconds,
                                       "peak_rss_mb": peak_rss_mb()}))  # fmt: skip


@contextmanager
def sandbox_process(*args: str) -> Iterator[str]:
    """`python -m sandbox ...` in its own process; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if "http://" not in line:
            raise SystemExit(f"sandbox did not start: {line!r}")
        yield "http://" + line.split("http://", 1)[1].split()[0]
    finally:  # stopped whatever happened, so a failed benchmark (or test) leaves no process behind
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def gainsight_process() -> Any:
    """Quotas off; the clock x600 so the Bulk and async people jobs' minutes pass in a blink."""
    return sandbox_process("gainsight", "--access-key", ACCESS_KEY, "--bulk-job", f"{JOB_ID}:{OBJECT}:UPSERT:{KEY_FIELD}",
                           "--no-quotas", "--time-scale", str(TIME_SCALE))  # fmt: skip


def command_env(cg_url: str, gs_url: str, workdir: Path, days: int) -> dict[str, str]:
    """A deployment's configuration as environment variables (the secrets too: no secrets.toml here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__", "NPS_TO_GAINSIGHT__"))}
    env.update({f"DESTINATION__GAINSIGHT__QUOTAS__{k.upper()}": str(v) for k, v in CLIENT_QUOTAS.items()})
    env.update(
        RUNTIME__DLTHUB_TELEMETRY="false",
        SOURCES__CUSTOMERGAUGE__API_BASE_URL=cg_url,
        SOURCES__CUSTOMERGAUGE__TOKEN_URL=cg_url + CG_TOKEN_PATH,
        SOURCES__CUSTOMERGAUGE__CLIENT_ID=CG_CLIENT[0],
        SOURCES__CUSTOMERGAUGE__CLIENT_SECRET=CG_CLIENT[1],
        SOURCES__CUSTOMERGAUGE__INITIAL_RESPONSE_DATE=(date.today() - timedelta(days=days + 1)).isoformat(),
        DESTINATION__DUCKDB__CREDENTIALS=str(workdir / "bench.duckdb"),
        NPS_TO_GAINSIGHT__PIPELINES_DIR=str(workdir / "pipelines"),
        DESTINATION__GAINSIGHT__BASE_URL=gs_url,
        DESTINATION__GAINSIGHT__ACCESS_KEY=ACCESS_KEY,
        DESTINATION__GAINSIGHT__RESPONSE_BULK_JOB_ID=JOB_ID,
        DESTINATION__GAINSIGHT__TIMELINE_AUTHOR_EMAIL=AUTHOR,
        DESTINATION__GAINSIGHT__CREATE_MISSING_COMPANIES="true",
        DESTINATION__GAINSIGHT__BULK_POLL_INTERVAL_SECONDS="0.5",
    )
    return env


def run_measured(label: str, env: dict[str, str], argv: tuple[str, ...], workdir: Path) -> dict[str, Any]:
    """One command run in its own child process (see `run_command_here`)."""
    result_file = workdir / f"{label}.json"
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "push.py"), "--measure-command", str(result_file), "--", *argv],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if not result_file.exists():
        raise SystemExit(f"{label}: the child died ({out.returncode}):\n{out.stderr[-3000:]}")
    result = {"run": label, **json.loads(result_file.read_text())}
    if result["exit_code"] not in OK_CODES:
        raise SystemExit(f"{label}: the command exited {result['exit_code']}:\n{out.stderr[-3000:]}")
    print(f"  {label:11} exit {result['exit_code']}, {result['seconds']:.0f} s, peak RSS {result['peak_rss_mb']:.0f} MB",
          file=sys.stderr, flush=True)  # fmt: skip
    return result


def measure_whole_command(
    responses: int, accounts: int, people: int, days: int, runs: list[str], people_writer: str | None = None
) -> list[dict[str, Any]]:
    """The runs of the module docstring named in `runs`; returns their figures. `people_writer`
    ("single", "bulk") sets `destination.gainsight.people.writer`."""
    seed = ["--responses", str(responses), "--accounts", str(accounts), "--people", str(people), "--days", str(days),
            "--seed", "42"]  # fmt: skip
    results = []
    print(f"whole command: seeding CustomerGauge with {responses:,} responses", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-command-") as tmp, sandbox_process(
        "customergauge", "--client-id", CG_CLIENT[0], "--client-secret", CG_CLIENT[1], *seed
    ) as cg_url:
        for label, argv in RUNS:
            if label not in runs:
                continue
            workdir = Path(tmp) / ("whole" if label == "whole" else "split")
            workdir.mkdir(exist_ok=True)
            with gainsight_process() as gs_url:
                env = command_env(cg_url, gs_url, workdir, days)
                if people_writer:
                    env["DESTINATION__GAINSIGHT__PEOPLE__WRITER"] = people_writer
                results.append(run_measured(label, env, argv, Path(tmp)))
    return results


def print_whole_command(results: list[dict[str, Any]], responses: int, accounts: int, people: int, commit: str) -> None:
    print(f"\nwhole command: {responses:,} responses, {accounts:,} accounts, {people:,} people (commit {commit}, "
          f"{os.cpu_count()} cores, Python {sys.version.split()[0]})")  # fmt: skip
    print(f"{'run':<12}{'exit':>6}{'seconds':>10}{'peak RSS MB':>13}")
    for r in results:
        print(f"{r['run']:<12}{r['exit_code']:>6}{r['seconds']:>10.1f}{r['peak_rss_mb']:>13.0f}")
    for r in results:
        met = "met" if r["peak_rss_mb"] <= 400 else "MISSED"
        print(f"  {r['run']} peak RSS: {r['peak_rss_mb']:.0f} MB  target <= 400 MB  {met}")
