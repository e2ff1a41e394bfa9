"""The command as operators run it, configured through .dlt files and env vars.

Runs whose outcome a process boundary decides (signals, kill -9, a second process on a locked
file) start a real child process; the rest call the same entry function in-process (tests/cli.py).
"""

from __future__ import annotations

import re
import signal
import stat

import duckdb
import pytest

from .cli import RESPONSES, assert_stopped_cleanly, cli_env, run_main, start_cli, stop_and_collect
from .conftest import CLIENT_SECRET, REPO


def test_scheduled_run_configured_by_environment(cg_sandbox, project):
    sandbox = cg_sandbox(responses=1200, days=30)
    result = run_main("--stage-only", cwd=project, env=cli_env(sandbox, project))

    assert result.returncode == 0, result.stderr
    assert "nps_responses: window 2025-06-01.." in result.stdout
    assert "fetched 1,200" in result.stdout and "new 1,200" in result.stdout
    assert "finished: exit 0" in result.stderr
    for stream in (result.stdout, result.stderr):
        assert CLIENT_SECRET not in stream
    with duckdb.connect(str(project / "staging.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM nps.nps_responses").fetchone()[0] == 1200
        assert conn.execute("SELECT sum(responses) FROM nps.nps_daily").fetchone()[0] == 1200
    # the secret was written nowhere: not into the DuckDB file, not into dlt's working folder
    for path in project.rglob("*"):
        if path.is_file():
            assert CLIENT_SECRET.encode() not in path.read_bytes(), path


def test_without_config_file_the_command_refuses_to_run(tmp_path):
    result = run_main(cwd=tmp_path, env=cli_env())
    assert result.returncode == 2
    assert "no configuration found at" in result.stderr and "repository root" in result.stderr


def test_missing_secrets_are_named_with_their_env_vars(project):
    result = run_main("--stage-only", cwd=project, env=cli_env(project=project))
    assert result.returncode == 2
    assert "sources.customergauge.client_id" in result.stderr
    assert "SOURCES__CUSTOMERGAUGE__CLIENT_ID" in result.stderr
    assert "SOURCES__CUSTOMERGAUGE__CLIENT_SECRET" in result.stderr


def test_rejected_credentials_exit_3(cg_sandbox, project):
    sandbox = cg_sandbox(responses=10)
    env = cli_env(sandbox, project, SOURCES__CUSTOMERGAUGE__CLIENT_SECRET="not-the-secret-8841")
    result = run_main("--stage-only", cwd=project, env=env)
    assert result.returncode == 3
    assert "rejected the client credentials" in result.stderr
    assert "not-the-secret-8841" not in result.stderr + result.stdout
    # A scheduler keeping stdout as "the last run's outcome" never finds it empty after a failure.
    [outcome] = result.stdout.strip().splitlines()
    assert ": failed, exit 3 (credentials_rejected): " in outcome and "rejected the client credentials" in outcome


def test_a_config_file_that_is_not_valid_toml_is_a_config_error(project):
    # What happens when the README's config snippet is pasted below the shipped sections.
    with (project / ".dlt" / "config.toml").open("a") as config:
        config.write('\n[sources.customergauge]\nregion = "eu"\n')
    result = run_main("--stage-only", cwd=project, env=cli_env())
    assert result.returncode == 2
    assert "not valid TOML" in result.stderr and "already exists" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_backfill_arguments_are_usage_errors(project):
    result = run_main("--start", "2025-01-01", cwd=project, env=cli_env())
    assert result.returncode == 2 and "--start and --end go together" in result.stderr
    result = run_main("--start", "2025-02-01", "--end", "2025-01-01", cwd=project, env=cli_env())
    assert result.returncode == 2


def test_second_concurrent_run_fails_fast_on_the_lock(cg_sandbox, project):
    sandbox = cg_sandbox(responses=300, time_scale=0)
    # The first run's first page is held until the test moves the (frozen) sandbox clock; the
    # second run must give up while the first still holds the file, not wait for it.
    sandbox.add_fault(kind="delay", delay=25.0, path=RESPONSES, times=1)
    env = cli_env(sandbox, project)
    first = start_cli("--stage-only", cwd=project, env=env)
    try:
        sandbox.clock.wait_for_sleepers(1, timeout=60)  # pages are requested after the file is locked
        second = run_main("--stage-only", cwd=project, env=env)  # another process than the first's
        assert second.returncode == 4
        assert f"held by `run` (PID {first.pid}, started " in second.stderr
        assert first.poll() is None, "the second run waited for the first instead of failing fast"
        sandbox.advance(25)
        assert first.wait(timeout=90) == 0
    finally:
        first.kill()
        first.wait()
    with duckdb.connect(str(project / "staging.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT response_id) FROM nps.nps_responses").fetchone() == (300, 300)


HOLD = 30.0  # sandbox seconds a page is held; the clock is frozen, so until the test moves it


@pytest.mark.parametrize(
    "kill_after_requests, stop_signal",
    [
        (2, signal.SIGKILL),
        # Opt-in (-m more_kill_points): kill -9 at a later page proves what kill-9-after-2 and
        # test_stage's in-process mid-window resumes prove; SIGTERM takes SIGINT's handler
        # (connector_common.stop.SIGNALS), shown by sigint-twice-after-5 and the push's SIGTERM runs.
        pytest.param(5, signal.SIGKILL, marks=pytest.mark.more_kill_points),
        pytest.param(2, signal.SIGTERM, marks=pytest.mark.more_kill_points),
        (5, signal.SIGINT),
    ],
    ids=["kill-9-after-2", "kill-9-after-5", "sigterm-after-2", "sigint-twice-after-5"],
)
def test_killed_run_is_completed_by_the_next_with_no_duplicates(cg_sandbox, project, kill_after_requests, stop_signal):
    # The page after `kill_after_requests` answered ones is held on the frozen sandbox clock: the
    # signal comes while it is in flight, and the test releases it once the signal is taken.
    sandbox = cg_sandbox(responses=6000, days=30, time_scale=0)
    sandbox.add_fault(kind="delay", delay=HOLD, path=RESPONSES, skip=kill_after_requests, times=1)
    env = cli_env(sandbox, project, SOURCES__CUSTOMERGAUGE__ROWS_PER_LOAD="1000")
    victim = start_cli("--stage-only", cwd=project, env=env)

    def page_held() -> bool:
        sandbox.clock.wait_for_sleepers(1, timeout=60)
        return True

    stopped = stop_and_collect(victim, page_held, stop_signal, delivered=lambda: sandbox.advance(HOLD))
    sandbox.clear_faults()
    assert_stopped_cleanly(stopped, stop_signal)

    result = run_main("--stage-only", cwd=project, env=env)  # the next run: no signal, so in-process

    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(project / "staging.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT response_id) FROM nps.nps_responses").fetchone() == (6000, 6000)


def test_demo_runs_on_a_fresh_folder(tmp_path):
    result = run_main("--demo", cwd=tmp_path, env=cli_env())
    assert result.returncode == 0, result.stderr
    assert "new 27, updated 3" in result.stdout
    # the second pass's Gainsight counts are the ones the README quotes
    # exactly: the sandbox's new responses no longer depend on how long the first pass took
    quoted = re.search(
        r"(\d+) responses created and (\d+) updated, (\d+) Timeline entries created and (\d+) updated",
        (REPO / "README.md").read_text(encoding="utf-8").replace("\n", " "),
    )
    assert quoted is not None
    second_pass = result.stdout.split("new 27, updated 3", 1)[1]
    responses, activities = (re.search(rf"^\s+{name}\s+(\d+)\s+(\d+)\s", second_pass, re.M) for name in ("responses", "activities"))
    assert responses and activities
    assert responses.groups() + activities.groups() == quoted.groups() == ("25", "3", "26", "3")
    assert "Last five days in nps.nps_daily" in result.stdout
    assert stat.S_IMODE((tmp_path / ".demo" / "nps_demo.duckdb").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / ".demo" / "pipelines").stat().st_mode) == 0o700
    # the tenant starts as a CRM left it; the demo says which company settings it runs with
    assert "company settings of this demo: company_match = key_then_name, create_missing_companies = true" in result.stdout
    assert "matched by name, key stamped on them           20" in result.stdout
    assert "persons who kept their CRM names                3 of 3" in result.stdout
    assert ": ambiguous_name," in result.stdout
