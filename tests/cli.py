"""Running the command as operators do: configured by a `.dlt` folder and env vars, from a folder.

Two ways, one result type (`subprocess.CompletedProcess`):

- `run_cli`/`start_cli` run `pipelines/nps_to_gainsight.py` (`run_cli(script=)`: another Python
  script) in a child process, forked from a zygote
  that imported dlt and the connector once (tests/zygote.py). Kept for what only a process
  boundary shows: signals, kill -9, exit codes of the interpreter, two processes on one file.
- `run_main` calls the same entry function, `nps_to_gainsight.main(argv)`, in this process with the
  same environment, working folder and captured streams. It checks everything else the child
  process would (exit code, what is printed, what is written) without a process at all.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipelines import nps_to_gainsight

from .conftest import ACCESS_KEY, AUTHOR, BULK_JOB, CLIENT_ID, CLIENT_SECRET, NO_CLIENT_QUOTAS, REPO, RESPONSE_OBJECT
from .zygote import ForkedCommand, start_forked

COMMAND = str(REPO / "pipelines" / "nps_to_gainsight.py")
RESPONSES = "/v7/rest/sync/responses"
OWN_PREFIXES = ("SOURCES__", "DESTINATION__", "NPS_TO_GAINSIGHT__")


def cli_env(sandbox=None, project: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a scheduled run: this one without connector settings, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    if sandbox is not None:
        env.update(
            SOURCES__CUSTOMERGAUGE__API_BASE_URL=sandbox.base_url,
            SOURCES__CUSTOMERGAUGE__TOKEN_URL=sandbox.token_url,
            SOURCES__CUSTOMERGAUGE__CLIENT_ID=CLIENT_ID,
            SOURCES__CUSTOMERGAUGE__CLIENT_SECRET=CLIENT_SECRET,
            SOURCES__CUSTOMERGAUGE__INITIAL_RESPONSE_DATE="2025-06-01",
            SOURCES__CUSTOMERGAUGE__LOOKBACK_DAYS="3",
            SOURCES__CUSTOMERGAUGE__RETRY_BACKOFF_SECONDS="0.05",
        )
    if project is not None:
        env["DESTINATION__DUCKDB__CREDENTIALS"] = str(project / "staging.duckdb")
        env["NPS_TO_GAINSIGHT__PIPELINES_DIR"] = str(project / "pipelines")
    env.update(extra)
    return env


def push_env(cg, gs, project: Path, **extra: str) -> dict[str, str]:
    """`cli_env` plus every Gainsight setting a stage-and-push run needs against the sandbox."""
    settings = {f"DESTINATION__GAINSIGHT__QUOTAS__{k.upper()}": str(v) for k, v in NO_CLIENT_QUOTAS.items()}
    settings.update(
        DESTINATION__GAINSIGHT__BASE_URL=gs.base_url,
        DESTINATION__GAINSIGHT__ACCESS_KEY=ACCESS_KEY,
        DESTINATION__GAINSIGHT__RESPONSE_OBJECT=RESPONSE_OBJECT,
        DESTINATION__GAINSIGHT__RESPONSE_BULK_JOB_ID=BULK_JOB,
        DESTINATION__GAINSIGHT__COMPANY_KEY_FIELD="CG_Account_Id__gc",
        DESTINATION__GAINSIGHT__CREATE_MISSING_COMPANIES="true",  # the sandbox tenant starts empty
        DESTINATION__GAINSIGHT__TIMELINE_AUTHOR_EMAIL=AUTHOR,
        DESTINATION__GAINSIGHT__TIMELINE_ACTIVITY_TYPE="Survey Response",
        DESTINATION__GAINSIGHT__TIMELINE_MAX_AGE_DAYS="20",
        DESTINATION__GAINSIGHT__BULK_MIN_ROWS="100",
        DESTINATION__GAINSIGHT__BULK_POLL_INTERVAL_SECONDS="0.05",
        DESTINATION__GAINSIGHT__RETRY_BACKOFF_SECONDS="0.01",
    )
    return cli_env(cg, project, **{**settings, **extra})


def run_cli(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 120, script: str = COMMAND
) -> subprocess.CompletedProcess[str]:
    """The command (or another Python script, as `python <script> <args>`) in a child process."""
    child = start_forked(*args, cwd=cwd, env=env, script=script)
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    finally:
        child.kill()
    return subprocess.CompletedProcess(child.args, child.wait(), stdout, stderr)


def start_cli(*args: str, cwd: Path, env: dict[str, str]) -> ForkedCommand:
    """The command in a child process that the test signals or kills (forked from a zygote that has
    imported dlt and the connector already: tests/zygote.py)."""
    return start_forked(*args, cwd=cwd, env=env)


def run_main(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command's entry function in this process, seeing exactly `env` and `cwd` as a child would.

    dlt reads `.dlt/*.toml` from the working folder when its run context is first asked for, so the
    context is dropped before and after: the command builds its own from `cwd`, and the tests after
    it get theirs back. Logging is restored too, since the command configures the root logger.
    """
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, _logging_restored():
        for name in list(os.environ):
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        patch.chdir(cwd)
        patch.setattr(sys, "stdout", out)
        patch.setattr(sys, "stderr", err)
        _drop_dlt_run_context()
        try:
            code = nps_to_gainsight.main(list(args))
        except SystemExit as stopped:  # argparse's usage errors, as the interpreter would exit
            code = stopped.code if isinstance(stopped.code, int) else 2
        finally:
            _drop_dlt_run_context()
    return subprocess.CompletedProcess([COMMAND, *args], code, out.getvalue(), err.getvalue())


def _drop_dlt_run_context() -> None:
    """The next dlt lookup builds a fresh run context from the current folder and environment."""
    from dlt.common.configuration.container import Container  # dlt only where a command runs
    from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

    container = Container()
    if PluggableRunContext in container:
        del container[PluggableRunContext]


@contextmanager
def _logging_restored() -> Iterator[None]:
    """Put back the root and `dlt` loggers' handlers, levels and propagation as they were."""
    loggers = [logging.getLogger(name) for name in ("", "dlt")]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    try:
        yield
    finally:
        for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll until `condition` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def stop_and_collect(
    victim: ForkedCommand, condition, stop_signal: signal.Signals, delivered: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """Signal the run once `condition` holds (SIGINT twice, as an impatient operator would); its outcome.

    `delivered` runs once the process has taken the signal (e.g. a sandbox releasing the answer the
    run was waiting for, so the stop is known to have come while that answer was in flight)."""
    try:
        wait_for(condition, timeout=60)
    finally:
        victim.send_signal(stop_signal)
        if stop_signal == signal.SIGINT:
            wait_for_delivery(victim, stop_signal)  # a separate second press, not one the handler sees once
            victim.send_signal(stop_signal)
        if stop_signal != signal.SIGKILL:
            wait_for_delivery(victim, stop_signal)
        if delivered is not None:
            delivered()
        stdout, stderr = victim.communicate(timeout=120)
    return subprocess.CompletedProcess(victim.args, victim.returncode, stdout, stderr)


def wait_for_delivery(victim: ForkedCommand, number: signal.Signals) -> None:
    """Until the kernel has handed a signal sent to the process to one of its threads (its handler
    has been entered), read from the process-wide pending set in /proc (Linux); at once if it ended."""
    bit = 1 << (number - 1)

    def taken() -> bool:
        try:
            status = Path(f"/proc/{victim.pid}/status").read_text()
        except OSError:  # gone
            return True
        pending = next(line.split()[1] for line in status.splitlines() if line.startswith("ShdPnd:"))
        return not int(pending, 16) & bit

    wait_for(lambda: victim.poll() is not None or taken(), timeout=30)


def assert_stopped_cleanly(stopped: subprocess.CompletedProcess[str], stop_signal: signal.Signals) -> None:
    """The documented exit code, one log line naming the signal, the summary, and no traceback."""
    if stop_signal == signal.SIGKILL:
        return  # nothing runs after kill -9: the next run proves the rest
    assert stopped.returncode == 128 + stop_signal, stopped.stderr
    assert "Traceback" not in stopped.stderr
    about_it = [line for line in stopped.stderr.splitlines() if stop_signal.name in line or "signal" in line.lower()]
    assert len(about_it) == 1, about_it
    assert f"stopped by {stop_signal.name} during " in about_it[0] and "the next run resumes" in about_it[0]
    assert "stopped by a signal at a safe point" in stopped.stdout
    assert f"exit code {128 + stop_signal}" in stopped.stdout
