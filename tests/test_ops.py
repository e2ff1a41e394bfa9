"""Operating the connector: JSON logs, run history, `status`, warnings as success, `--version`."""

from __future__ import annotations

import json
import re

import duckdb

from destinations.gainsight import load_settings
from pipelines.errors import ExitCode
from pipelines.status import collect

from .cli import cli_env, run_cli, run_main
from .conftest import CLIENT_SECRET, REPO

KEYS = {"ts", "level", "logger", "run_id", "event", "counts"}


def json_lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines()]


def test_json_log_format_one_object_per_line_dlt_included(cg_sandbox, project):
    sandbox = cg_sandbox(responses=200, days=10, invalid=2)
    # dlt logs at INFO here so its own lines (logger `dlt`) show up in the run's stderr
    env = cli_env(sandbox, project, NPS_TO_GAINSIGHT__LOG_FORMAT="json", RUNTIME__LOG_LEVEL="INFO")

    result = run_main("--stage-only", cwd=project, env=env)

    assert result.returncode == ExitCode.QUARANTINED, result.stderr
    lines = json_lines(result.stderr)  # every line parses
    assert all(set(line) >= KEYS for line in lines)
    final = lines[-1]
    assert {line["run_id"] for line in lines} == {final["run_id"]} and final["run_id"]
    assert final["logger"] == "nps.run" and "finished: exit 10" in final["event"]
    assert final["counts"]["staged"] == {
        "new": 200, "updated": 0, "quarantined": 2, "quarantined_new": 2, "quarantined_seen_before": 0,
    }
    assert any(line["logger"] == "dlt" for line in lines)
    assert any(line["level"] == "WARNING" and "quarantined a nps_responses record" in line["event"] for line in lines)
    assert CLIENT_SECRET not in result.stderr


def test_dlt_warnings_go_through_the_connector_handler_as_json(tmp_path):
    """dlt reconfigures its `dlt` logger when a pipeline starts; its warnings must stay JSON and masked."""
    script = f"""
import dlt
from dlt.common import logger
from pipelines.logs import bind_run_id, setup_logging
setup_logging("INFO", "json").add(["s3cret-value-123"])
bind_run_id("run-1")
dlt.pipeline(pipeline_name="logs_probe", destination="duckdb", pipelines_dir={str(tmp_path)!r})
logger.warning("dlt says s3cret-value-123")
import logging
try:
    raise ValueError("vendor echoed s3cret-value-123 \\ud800")
except ValueError:
    logging.getLogger("nps.probe").exception("step failed")
"""
    (tmp_path / "probe.py").write_text(script)  # in a process of its own, forked from the zygote
    result = run_cli(cwd=REPO, env={**cli_env(), "RUNTIME__LOG_LEVEL": "WARNING"}, script=str(tmp_path / "probe.py"))

    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stderr)
    assert all(set(line) >= KEYS for line in lines)
    (line,) = [entry for entry in lines if entry["logger"] == "dlt"]
    assert (line["level"], line["event"], line["run_id"]) == ("WARNING", "dlt says ***", "run-1")
    (failure,) = [entry for entry in lines if entry["logger"] == "nps.probe"]
    assert failure["level"] == "ERROR" and "ValueError: vendor echoed ***" in failure["exc"]
    assert "s3cret-value-123" not in result.stderr


def test_history_status_warnings_as_success_and_new_only_alerts(cg_sandbox, project):
    sandbox = cg_sandbox(responses=300, days=3, invalid=3)  # every bad record inside the 3-day lookback
    env = cli_env(sandbox, project)

    first = run_main("--stage-only", "--warnings-as-success", cwd=project, env=env)
    assert first.returncode == 0, first.stderr
    assert "(quarantined reported as success: warnings_as_success is on)" in first.stdout
    again = run_main("--stage-only", cwd=project, env=env)  # same bad records, re-read: no alert
    assert again.returncode == 0, again.stderr
    assert "still quarantined (seen before)" in again.stdout
    with duckdb.connect(str(project / "staging.duckdb"), read_only=True) as db:
        (latest,) = db.execute("SELECT response_id FROM nps.nps_responses ORDER BY responded_at DESC LIMIT 1").fetchone()
    sandbox.edit_response(int(latest), nps=42)
    third = run_main("--stage-only", cwd=project, env=env)  # one new bad record alerts
    assert third.returncode == ExitCode.QUARANTINED, third.stderr
    assert "(new 1)" in third.stderr and "1 newly quarantined record(s)" in third.stdout

    status = run_main("status", "--json", cwd=project, env=env)
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    runs = state["runs"]
    assert [(r["exit_code"], r["outcome"], r["mode"]) for r in runs] == [
        (10, "quarantined", "scheduled, stage-only"),
        (0, "ok", "scheduled, stage-only"),
        (0, "quarantined", "scheduled, stage-only"),
    ]
    first_seen = runs[2]["counts"]["staged"]["quarantined_new"]
    assert first_seen > 0 and [r["counts"]["staged"]["quarantined_new"] for r in runs] == [1, 0, first_seen]
    assert runs[0]["cursor_before"]["nps_responses"] and runs[0]["cursor_after"]["nps_responses"]
    assert state["cursor"]["run_id"] == runs[0]["run_id"]
    assert [r["counts"]["staged"]["quarantined_seen_before"] for r in runs] == [first_seen, first_seen, 0]
    assert state["staged_responses"] == 300 and state["quarantine"]["records"] == first_seen + 1
    assert "unknown" in state["outbox"]  # no Gainsight settings in this project: said, not guessed

    text = run_main("status", "--runs", "1", cwd=project, env=env)
    assert text.returncode == 0, text.stderr
    assert "last 1 run(s)" in text.stdout and "exit 10 (quarantined)" in text.stdout
    assert f"quarantine: {first_seen + 1} record(s)" in text.stdout

    # status only reads; while a run holds the file, DuckDB lets nobody read it, and status says so
    with duckdb.connect(str(project / "staging.duckdb")):
        locked = run_cli("status", cwd=project, env=env)
    assert locked.returncode == ExitCode.LOCKED
    assert "in use by another process" in locked.stderr and "Traceback" not in locked.stderr


def test_failed_run_is_recorded_with_its_outcome(cg_sandbox, staging_for):
    staging = staging_for(cg_sandbox(responses=20))
    assert staging.run()[0] == ExitCode.OK

    code, _ = staging.run(client_secret="wrong-secret-31337")

    assert code == ExitCode.CREDENTIALS_REJECTED
    (row,) = staging.query(
        "SELECT exit_code, outcome, error, mode FROM gainsight.run_history ORDER BY started_at DESC LIMIT 1"
    )
    assert row[:2] == (3, "credentials_rejected") and row[3] == "scheduled, stage-only"
    assert "rejected" in row[2] and "wrong-secret-31337" not in row[2]


def test_status_counts_outbox_dead_letters_and_quota(cg_sandbox, gs_sandbox, connector_for):
    cg = cg_sandbox(responses=30, days=5, accounts=3)
    bad = next(r for r in cg.records if r.get("email"))["number_customergauge"]
    cg.edit_response(bad, email="jane.doe at acme")  # Gainsight's Email type refuses it
    connector = connector_for(cg, gs_sandbox())
    assert connector.run()[0] == ExitCode.DEAD_LETTERED
    settings = load_settings(connector.gs_options())

    with duckdb.connect(str(connector.staging.settings.duckdb_path), read_only=True) as db:
        state = collect(db, "nps", 5, settings, None)

    # the bad e-mail fails the person and the response
    assert state["dead_letters"] == {name: {"records": 1, "will_retry": 1} for name in ("people", "responses")}
    assert state["outbox"]["responses"] == 1  # the rejected response is retried by the next run
    used = state["runs"][0]["counts"]["gainsight_api_calls"]
    assert state["quota_left"]["sync"]["day"] < settings.quotas.sync_per_day and used
    assert state["runs"][0]["counts"]["dead_lettered"]["responses"] == {"new": 1, "seen_before": 0}


def test_version_is_the_package_version(tmp_path):
    result = run_main("--version", cwd=tmp_path, env=cli_env())
    declared = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    assert result.returncode == 0 and result.stdout.strip() == f"nps_to_gainsight.py {declared}"


def test_quarantined_by_a_failed_run_is_still_new_to_the_next_run_that_sees_it(cg_sandbox, staging_for):
    """A run that fails reported nothing: what it quarantined alerts when a completed run meets it."""
    sandbox = cg_sandbox(responses=1500, days=3, invalid=12)  # two parts of rows_per_load (its minimum, 1000)
    staging = staging_for(sandbox)
    sandbox.add_fault(kind="status", status=503, path="/v7/rest/sync/responses", skip=1, times=100)

    code, _ = staging.run(rows_per_load=1000, decode_workers=0, max_attempts=2)  # first part loads, then 503s

    assert code == ExitCode.SOURCE_API_ERROR
    (failed_run,) = staging.query("SELECT run_id FROM gainsight.run_history WHERE outcome = 'source_api_error'")[0]
    unreported = staging.scalar("SELECT count(*) FROM nps.quarantine WHERE run_id = ?", [failed_run])
    assert unreported > 0
    sandbox.clear_faults()
    staging.run(rows_per_load=1000, decode_workers=0)  # resumes after the loaded part: does not re-read it

    code, result = staging.run(rows_per_load=1000, decode_workers=0)  # the lookback re-reads everything

    assert code == ExitCode.QUARANTINED
    assert result.quarantine.new == unreported
    assert result.quarantine.new + result.quarantine.seen_before == staging.scalar("SELECT count(*) FROM nps.quarantine")


def test_reported_problem_re_saved_by_a_failed_run_is_not_new_again(cg_sandbox, gs_sandbox, connector_for):
    """Quarantine and dead-letter rows are merged on the record, so a failed run re-saves a reported
    problem under its own run_id; the run after it still counts the problem as seen before."""
    cg = cg_sandbox(responses=30, days=3, accounts=3, invalid=2)
    records = [r for r in cg.records if r.get("email")]
    cg.edit_response(records[0]["number_customergauge"], email="jane.doe at acme")  # Gainsight refuses it
    gs = gs_sandbox()
    connector = connector_for(cg, gs)
    code, first = connector.run()
    assert code in (ExitCode.QUARANTINED, ExitCode.DEAD_LETTERED)
    assert first.quarantine.new > 0 and first.dead_letters["responses"].new == 1

    cg.edit_response(records[1]["number_customergauge"], comment="edited: pushed again")
    gs.add_fault(path="/v1/ant/es/activity", status=401, times=1000)  # fails after re-reading and re-pushing
    code, _ = connector.run()
    assert code == ExitCode.GAINSIGHT_CREDENTIALS_REJECTED
    (failed,) = connector.query("SELECT run_id FROM gainsight.run_history WHERE exit_code = 7")[0]
    assert connector.scalar("SELECT count(*) FROM nps.quarantine WHERE run_id = ?", [failed]) == first.quarantine.new
    assert connector.scalar("SELECT count(*) FROM gainsight.dead_letters WHERE run_id = ?", [failed]) > 0
    gs.clear_faults()

    code, third = connector.run()

    assert code == ExitCode.OK
    assert (third.quarantine.new, third.quarantine.seen_before) == (0, first.quarantine.new)
    assert all(n.new == 0 for n in third.dead_letters.values()) and third.dead_letters["responses"].seen_before == 1
