"""The full command (stage, then push) as operators run it: killed at the worst moments in a child
process, then finished by the next run (in-process: no signal decides its outcome, tests/cli.py)."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from .cli import assert_stopped_cleanly, cli_env, push_env, run_main, start_cli, stop_and_collect
from .conftest import ACCESS_KEY, CLIENT_SECRET, RESPONSE_OBJECT, read_only

BULK_PATH = "/v1.0/admin/connector/job/bulkimport"
PEOPLE_PATH = "/v1/peoplemgmt/v1.0/people"
TIMELINE_PATH = "/v1/ant/es/activity"
STATUS_PATH = "/v1.0/admin/connector/job/bulkimport/status/"


def assert_exactly_once(project: Path, gs) -> None:
    with read_only(project / "staging.duckdb") as conn:
        staged = {row[0] for row in conn.execute("SELECT response_id FROM nps.nps_responses").fetchall()}
        eligible = {
            row[0]
            for row in conn.execute(
                "SELECT response_id FROM nps.nps_responses WHERE account_id IS NOT NULL "
                "AND responded_at >= now() - INTERVAL 20 DAY"
            ).fetchall()
        }
        emails = {row[0] for row in conn.execute("SELECT DISTINCT email FROM nps.nps_responses WHERE email IS NOT NULL").fetchall()}
    responses = Counter(r["ResponseId__gc"] for r in gs.records(RESPONSE_OBJECT))
    assert set(responses) == staged and set(responses.values()) == {1}
    activities = Counter(a["ExternalId"] for a in gs.records("activity_timeline"))
    assert set(activities) == {f"cg-nps-{rid}" for rid in eligible} and set(activities.values()) == {1}
    people = Counter(p["Email"].lower() for p in gs.records("Person"))
    assert set(people) == emails and set(people.values()) == {1}
    companies = Counter(c["CG_Account_Id__gc"] for c in gs.records("Company"))
    assert set(companies.values()) == {1}


def answer_held(gs) -> bool:
    """The answer to the call the fault holds is read and held on the sandbox clock: Gainsight has
    the request (an upload: the file, processing), the run waits for the answer."""
    gs.clock.wait_for_sleepers(1, timeout=60)
    return True


HOLD = 30.0  # sandbox seconds the answer is held: released by the test once a stop signal is taken
PROCESSING = 3600.0  # sandbox seconds the upload stays INIT where the run must stop while Gainsight processes it


@pytest.mark.parametrize(
    "path, answered, stop_signal, processing",
    [
        # Gainsight answered with a statusId and is processing; the run dies while polling.
        (STATUS_PATH, 0, signal.SIGKILL, True),
        (STATUS_PATH, 0, signal.SIGTERM, True),
        # Gainsight has the file and is processing it; the answer with the statusId never arrives.
        (BULK_PATH, 0, signal.SIGKILL, False),
        # Gainsight has the file; the stop comes while its answer is in flight, and the run waits for it.
        (BULK_PATH, 0, signal.SIGTERM, True),
        # Opt-in (-m more_kill_points): test_poison's redelivered-package test kills this same run.
        pytest.param(PEOPLE_PATH, 8, signal.SIGKILL, False, marks=pytest.mark.more_kill_points),
        (PEOPLE_PATH, 8, signal.SIGTERM, False),
        (TIMELINE_PATH, 4, signal.SIGKILL, False),
        # Ctrl-C twice: the second press while stopping changes nothing.
        (TIMELINE_PATH, 4, signal.SIGINT, False),
    ],
    ids=[
        "kill-9-while-polling-bulk-status",
        "sigterm-while-polling-bulk-status",
        "kill-9-after-bulk-upload",
        "sigterm-during-bulk-upload",
        "kill-9-mid-people",
        "sigterm-mid-people",
        "kill-9-mid-timeline",
        "sigint-twice-mid-timeline",
    ],
)
def test_killed_push_is_finished_by_the_next_run_exactly_once(
    staged_project, gs_sandbox, project, path, answered, stop_signal, processing
):
    # 60 responses staged by an earlier `--stage-only` run: above BULK_MIN_ROWS (50 here: a Bulk
    # upload), from 20 people, and 15 Timeline calls to be killed among. The victim pushes them
    # (`--push-only`: the stage before a push is not what a kill during the push is about); the next
    # run is the scheduled command, stage and push. The call after `answered` ones on `path` is held
    # until the stop signal is taken, so the stop lands there whatever the timing; where the point is
    # a run stopped while Gainsight processes the upload, the upload stays INIT for PROCESSING sandbox
    # seconds, so the victim cannot see it finish; the test then moves the clock on for the next run.
    cg = staged_project(responses=60, days=19, accounts=10, people=20)
    gs = gs_sandbox(bulk_phase_seconds=PROCESSING) if processing else gs_sandbox()
    gs.add_fault(path=path, kind="delay", delay=HOLD, skip=answered, times=1)
    env = push_env(
        cg, gs, project, DESTINATION__GAINSIGHT__BULK_MIN_ROWS="50", DESTINATION__GAINSIGHT__TIMELINE_RECORDS_PER_CALL="4"
    )
    victim = start_cli("--push-only", cwd=project, env=env)
    stopped = stop_and_collect(victim, lambda: answer_held(gs), stop_signal, delivered=lambda: gs.advance(HOLD))
    gs.clear_faults()
    if processing:
        gs.advance(2 * PROCESSING)  # Gainsight finishes the upload; the next run polls it to the end

    result = run_main(cwd=project, env=env)

    assert result.returncode == 0, result.stderr
    assert_exactly_once(project, gs)
    assert_stopped_cleanly(stopped, stop_signal)
    if stop_signal != signal.SIGKILL:  # a stopped run booked every answer: no person was sent twice
        assert gs.count(path=PEOPLE_PATH) == len(gs.records("Person"))
    if path in (PEOPLE_PATH, TIMELINE_PATH) and stop_signal == signal.SIGKILL:
        # killed inside dlt's load step: its package goes first (a stopped run finishes the step)
        assert "re-delivering 1 package(s) an interrupted run left pending" in result.stderr
    if processing:
        # the open upload is polled and reconciled, not sent again: a stopped run waited for the
        # statusId and booked it, so it knows the upload as well as a run killed while polling
        assert "finished 1 Bulk upload(s) left open by an earlier run" in result.stderr
        assert gs.family_counts().get("bulk") == 1
    if path == BULK_PATH and stop_signal == signal.SIGKILL:  # the upload whose answer was lost is on record, and was sent again
        with read_only(project / "staging.duckdb") as conn:
            states = [row[0] for row in conn.execute("SELECT status FROM gainsight.bulk_uploads ORDER BY uploaded_at").fetchall()]
        assert states[0] == "UNKNOWN" and states[-1] == "COMPLETED"


def test_full_command_summary_and_no_secret_anywhere(cg_sandbox, gs_sandbox, project):
    cg = cg_sandbox(responses=60, days=10, accounts=5)
    gs = gs_sandbox()
    env = push_env(cg, gs, project, DESTINATION__GAINSIGHT__BULK_MIN_ROWS="50")  # a Bulk upload too

    result = run_main(cwd=project, env=env)

    assert result.returncode == 0, result.stderr
    assert "gainsight:" in result.stdout and "responses" in result.stdout
    assert "gainsight API calls:" in result.stdout and "quota left:" in result.stdout
    assert "gainsight: responses created 60" in result.stderr and gs.family_counts().get("bulk", 0) > 0
    for stream in (result.stdout, result.stderr):
        assert ACCESS_KEY not in stream and CLIENT_SECRET not in stream
    for path in project.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert ACCESS_KEY.encode() not in content and CLIENT_SECRET.encode() not in content, path

    cg.add_responses(3)
    again = run_main("--dry-run", cwd=project, env=env)
    assert again.returncode == 0, again.stderr
    assert "dry run" in again.stdout
    status = run_main("status", cwd=project, env=env).stdout
    dry_line = next(line for line in status.splitlines() if "dry-run" in line)
    assert "planned, not written: responses to create 3" in dry_line and "responses created" not in dry_line
    assert "would be new 3, updated 0" in dry_line  # fetched, not staged


def test_a_dry_run_before_the_first_run_leaves_no_file_and_says_what_a_run_would_do(cg_sandbox, gs_sandbox, project):
    cg = cg_sandbox(responses=40, days=5, accounts=2, invalid=3)
    gs = gs_sandbox()
    env = push_env(cg, gs, project)
    before = sorted(project.rglob("*"))

    dry = run_main("--dry-run", cwd=project, env=env)

    assert dry.returncode == 0, dry.stderr  # a dry run quarantined nothing itself
    assert sorted(project.rglob("*")) == before  # no DuckDB file, no dlt working folder, no holder record
    assert gs.requests() and all("/query/" in entry.path for entry in gs.requests())  # Gainsight only read
    feed = next(line for line in dry.stdout.splitlines() if line.startswith("  nps_responses:"))
    quarantined = int(feed.split("would be quarantined ")[1].split()[0])
    assert quarantined > 0 and "-> would be new 40, updated 0, unchanged 0" in feed
    assert f"newly quarantined (dry run): {quarantined} record(s) a real run would quarantine" in dry.stdout
    assert "staging.duckdb does not exist yet; the dry run did not create it" in dry.stdout
    assert f"a real run would stage: new 40, updated 0, quarantined {quarantined} (new {quarantined})" in dry.stderr

    real = run_main(cwd=project, env=env)  # finds no progress left by the dry run: stages everything

    assert real.returncode == 10, real.stderr  # the newly quarantined records the dry run announced
    assert feed.replace("would be ", "") in real.stdout.splitlines()
    assert f"new 40, updated 0, quarantined {quarantined} (new {quarantined})" in real.stderr
    assert gs.count_records(RESPONSE_OBJECT) == 40


def test_a_wrong_key_with_nothing_to_push_costs_no_call_and_the_summary_says_it_was_not_tried(cg_sandbox, gs_sandbox, project):
    """Re-runs with nothing new make no call (issue 10), so exit 0 proves nothing about the key: the
    summary says so and points at `check`; the first run with something to push exits 7."""
    cg = cg_sandbox(responses=30, days=5, accounts=2)
    gs = gs_sandbox()
    assert run_main(cwd=project, env=push_env(cg, gs, project)).returncode == 0
    wrong = push_env(cg, gs, project, DESTINATION__GAINSIGHT__ACCESS_KEY="regenerated-in-gainsight-7f3e")
    gs.clear_log()

    empty = run_main("--push-only", cwd=project, env=wrong)

    assert empty.returncode == 0, empty.stderr
    assert gs.requests() == []
    assert "gainsight API calls: none, so the Gainsight credentials were not tried (`check` proves them)" in empty.stdout
    assert "none to push); no call made, so the Gainsight credentials were not tried" in empty.stderr
    assert run_main("check", cwd=project, env=wrong).returncode == 7
    cg.add_responses(2)
    assert run_main(cwd=project, env=wrong).returncode == 7  # the first run with something to push


def test_missing_gainsight_settings_are_named_with_their_env_vars(cg_sandbox, project):
    cg = cg_sandbox(responses=10)
    result = run_main(cwd=project, env=cli_env(cg, project))
    assert result.returncode == 2
    assert "DESTINATION__GAINSIGHT__BASE_URL" in result.stderr
    env = cli_env(cg, project, DESTINATION__GAINSIGHT__BASE_URL="http://127.0.0.1:9")
    result = run_main(cwd=project, env=env)
    assert result.returncode == 2
    assert "DESTINATION__GAINSIGHT__ACCESS_KEY" in result.stderr


def test_gainsight_settings_are_read_from_the_documented_env_names(cg_sandbox, gs_sandbox, project):
    """The external contract: exactly these names configure the destination."""
    cg = cg_sandbox(responses=40, days=5, accounts=2)
    gs = gs_sandbox()
    env = push_env(cg, gs, project, DESTINATION__GAINSIGHT__TIMELINE_ACTIVITY_TYPE="Update")
    result = run_main(cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    assert {a["TypeName"] for a in gs.records("activity_timeline")} == {"Update"}
    assert all(company["CG_Account_Id__gc"] for company in gs.records("Company"))
    assert gs.family_counts().get("bulk", 0) == 0  # 40 rows are below BULK_MIN_ROWS: sync API
