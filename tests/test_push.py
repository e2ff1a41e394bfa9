"""Stage and push end to end: both sandboxes over real HTTP, a real DuckDB file, the real pipeline."""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from destinations.gainsight import engine
from pipelines.errors import ExitCode
from sandbox.gainsight import Variants

from .conftest import ACCESS_KEY, AUTHOR, GS_CLIENT_ID, GS_CLIENT_SECRET, RESPONSE_OBJECT
from .staged import push_only

WRITE_FAMILIES = ("people", "timeline", "bulk")


def write_calls(gs) -> int:
    """Data-API writes are POST/PUT on /v1/data/objects/{obj} (queries are POSTs on .../query/)."""
    data_writes = sum(
        1
        for entry in gs.requests()
        if entry.path.startswith("/v1/data/objects/")
        and not entry.path.startswith("/v1/data/objects/query/")
        and entry.method in ("POST", "PUT", "DELETE")
    )
    families = gs.family_counts()
    return data_writes + sum(families.get(name, 0) for name in WRITE_FAMILIES)


def by_key(records, key="ResponseId__gc"):
    return Counter(record[key] for record in records)


def test_first_sync_then_incremental(cg_sandbox, gs_sandbox, connector_for):
    seeded = 40  # above bulk_min_rows (20 here): the first run's responses go in one Bulk upload
    cg = cg_sandbox(responses=seeded, days=20, accounts=4)  # some older than the Timeline's 14 days
    gs = gs_sandbox()
    connector = connector_for(cg, gs)

    code, result = connector.run(bulk_min_rows=20)

    assert code == ExitCode.OK
    staged = connector.scalar("SELECT count(*) FROM nps.nps_responses")
    responses = connector.records()
    assert len(responses) == staged == seeded
    assert set(by_key(responses).values()) == {1}
    accounts = connector.scalar("SELECT count(DISTINCT account_id) FROM nps.nps_responses")
    assert gs.count_records("Company") == accounts
    push = result.push
    assert push["responses"].created == seeded and push.bulk_uploads == 1
    # every response references a Company the ledger confirmed
    company_gsids = {c["Gsid"] for c in gs.records("Company")}
    assert {r["CompanyId__gc"] for r in responses} <= company_gsids
    # a Timeline activity for each response younger than the configured 14 days, none older
    recent = connector.scalar(
        "SELECT count(*) FROM nps.nps_responses WHERE responded_at >= now() - INTERVAL 14 DAY AND account_id IS NOT NULL"
    )
    activities = gs.records("activity_timeline")
    assert len(activities) == recent > 0
    assert all(a["ExternalId"].startswith("cg-nps-") for a in activities)
    assert connector.scalar("SELECT count(*) FROM gainsight.response_status WHERE gainsight_status = 'in gainsight'") == seeded

    new_ids = cg.add_responses(7)
    gs.clear_log()
    code, result = connector.run(bulk_min_rows=20)

    assert code == ExitCode.OK
    assert result.push["responses"].created == 7
    assert result.push.bulk_uploads == 0  # 7 rows go through the sync API
    assert len(connector.records()) == seeded + 7
    assert set(map(str, new_ids)) <= set(by_key(connector.records()))


def test_rerun_with_nothing_new_makes_no_write_calls(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    _, connector = staged_connector(gs)
    assert push_only(connector).run(bulk_min_rows=20)[0] == ExitCode.OK
    gs.clear_log()
    # dlt's working folder is disposable: the ledger lives in the DuckDB file
    shutil.rmtree(connector.staging.settings.pipelines_dir)

    code, result = connector.run(bulk_min_rows=20)  # stages (nothing new), then pushes

    assert code == ExitCode.OK
    assert write_calls(gs) == 0
    assert len(gs.requests()) == 0  # not even a query: the ledger knows everything is there
    assert result.push["responses"].unchanged == 40


def test_one_invalid_record_in_a_sync_batch_is_the_only_dead_letter(cg_sandbox, gs_sandbox, connector_for):
    cg = cg_sandbox(responses=50, days=5, accounts=3)
    bad = next(r for r in cg.records if r.get("email"))["number_customergauge"]
    cg.edit_response(bad, email="jane.doe at acme")  # Gainsight's Email type refuses it
    gs = gs_sandbox()
    connector = connector_for(cg, gs)

    code, result = connector.run()  # 50 rows < bulk_min_rows: one sync batch of 50

    assert code == ExitCode.DEAD_LETTERED
    push = result.push
    assert push["responses"].created == 49 and push["responses"].failed == 1
    assert str(bad) not in by_key(connector.records()) and len(connector.records()) == 49
    key, code_, attempts, will_retry = connector.query(
        "SELECT record_key, error_code, attempts, will_retry FROM gainsight.dead_letter_report WHERE object = 'responses'"
    )[0]
    assert (key, code_, attempts, will_retry) == (str(bad), "GSOBJ_1008", 1, True)
    assert connector.scalar(
        "SELECT gainsight_status FROM gainsight.response_status WHERE response_id = ?", [str(bad)]
    ) == "rejected (will retry)"

    # Retried on later runs up to max_attempts, then left alone until the content changes; rejected
    # again for the same reason it is "seen before": counted, but it does not alert again. Nothing
    # changes in CustomerGauge meanwhile: those runs push only.
    connector = push_only(connector)
    code, again = connector.run(max_attempts=2)
    assert code == ExitCode.OK and again.push["responses"].failed == 1
    assert (again.dead_letters["responses"].new, again.dead_letters["responses"].seen_before) == (0, 1)
    assert connector.scalar("SELECT outcome FROM gainsight.run_history ORDER BY started_at DESC LIMIT 1") == "ok"
    gs.clear_log()
    code, result = connector.run(max_attempts=2)
    assert code == ExitCode.OK and result.push["responses"].given_up == 1
    assert write_calls(gs) == 0


def test_bulk_job_with_failed_rows_dead_letters_exactly_those(cg_sandbox, gs_sandbox, connector_for):
    cg = cg_sandbox(responses=40, days=5, accounts=3)
    valid = [r["number_customergauge"] for r in cg.records if r.get("email")]
    bad = valid[:2]
    for cgid in bad:
        cg.edit_response(cgid, email="not-an-address")
    gs = gs_sandbox()
    # Gainsight also fails rows for reasons the data does not show (emulated): those land on the sync retry.
    flaky = [str(cgid) for cgid in valid[10:13]]
    gs.fail_bulk_rows(flaky, reason="Lookup failed (emulated)")
    connector = connector_for(cg, gs)

    code, result = connector.run(bulk_min_rows=20)

    assert code == ExitCode.DEAD_LETTERED
    push = result.push
    assert push.bulk_uploads == 1
    dead = dict(connector.query("SELECT record_key, error_code FROM gainsight.dead_letters WHERE object = 'responses'"))
    assert dead == {str(cgid): "GSOBJ_1008" for cgid in bad}
    keys = by_key(connector.records())
    assert len(keys) == 38 and set(keys.values()) == {1} and set(flaky) <= set(keys)
    upload = connector.query("SELECT rows, failure_count, landed, not_landed FROM gainsight.bulk_uploads")
    assert upload == [(40, 5, 35, 5)]


@pytest.mark.parametrize(("page_rows", "file_bytes"), [(None, 12_000), (10, 8_000)])
def test_quota_exhaustion_defers_and_the_next_run_completes(gs_sandbox, staged_connector, monkeypatch, page_rows, file_bytes):
    # With 10-row pages and three files, a full file is uploaded between pages (BulkBatcher.flush_full),
    # after the page that filled it is dropped; the second finds the quota used up, and the rows that
    # did not fit in it are deferred with the file's and every later page's.
    # One Bulk upload per sandbox hour, on a clock at real speed: no run sees the window roll by
    # itself (at 60x one did, on a machine at load 15); the loop below moves the sandbox an hour on.
    # Bulk jobs finish in 2 x bulk_phase_seconds all the same (gs_sandbox).
    gs = gs_sandbox(quotas=True, quota_limits={("bulk", "hour"): 1, ("sync", "minute"): 100_000})
    _, connector = staged_connector(gs)  # 40 responses staged, nothing pushed
    connector = push_only(connector)
    options = {"bulk_min_rows": 20, "bulk_max_bytes": file_bytes}  # 40 rows need two files (three)
    if page_rows:
        monkeypatch.setattr(engine, "PAGE_ROWS", page_rows)

    code, result = connector.run(**options)

    assert code == ExitCode.DEFERRED
    push = result.push
    assert push.bulk_uploads == 1 and push["responses"].deferred > 0
    assert [d.family for d in push.deferrals] == ["bulk"]
    first = len(connector.records())
    assert 0 < first < 40

    finished = False
    for _ in range(20):  # each run uploads what the window allows
        gs.advance(3600)
        code, result = connector.run(**options)
        assert code in (ExitCode.OK, ExitCode.DEFERRED)
        if code == ExitCode.OK:
            finished = True
            break
    assert finished
    keys = by_key(connector.records())
    assert len(keys) == 40 and set(keys.values()) == {1}


def test_rate_limits_and_server_errors_are_ridden_out(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    # Gainsight sends no Retry-After; without one the client waits for the next minute window,
    # which a test cannot afford. Sent here, it is honoured: "0" (whole seconds only; a fraction
    # was rounded up to 1 s of real waiting), so the retry goes at once.
    gs.add_fault(path="/v1/data/objects/query/", status=429, times=2, retry_after=0)
    gs.add_fault(path=f"/v1/data/objects/{RESPONSE_OBJECT}", status=503, times=1)  # an insert: reconciled
    gs.add_fault(path="/v1/peoplemgmt/", status=500, times=2)
    gs.add_fault(path="/v1/ant/es/activity", status=429, times=1, retry_after=0)
    gs.add_fault(path="/v1/ant/es/activity", kind="drop", times=1)
    _, connector = staged_connector(gs)

    code, result = push_only(connector).run()

    assert code == ExitCode.OK
    assert gs.pending_faults() == []
    assert result.push.retries >= 5
    keys = by_key(connector.records())
    assert len(keys) == 40 and set(keys.values()) == {1}
    assert set(Counter(a["ExternalId"] for a in gs.records("activity_timeline")).values()) == {1}


@pytest.mark.parametrize("auth", ["access_key", "oauth"])
def test_both_auth_modes(gs_sandbox, staged_connector, auth):
    gs = gs_sandbox(token_lifetime=5.0)
    _, connector = staged_connector(gs)
    if auth == "oauth":
        credentials = {"access_key": None, "client_id": GS_CLIENT_ID, "client_secret": GS_CLIENT_SECRET}
        credentials["bulk_access_key"] = ACCESS_KEY
    else:
        credentials = {}

    code, result = push_only(connector).run(**credentials)

    assert code == ExitCode.OK
    assert len(connector.records()) == 40
    assert (result.push.token_grants > 0) == (auth == "oauth")
    assert (gs.family_counts().get("token", 0) > 0) == (auth == "oauth")


def test_rejected_gainsight_credentials_exit_7_and_push_nothing(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    _, connector = staged_connector(gs)

    code, _ = push_only(connector).run(access_key="wrong-key-3c1f9e")

    assert code == ExitCode.GAINSIGHT_CREDENTIALS_REJECTED
    assert gs.count_records(RESPONSE_OBJECT) == 0


def test_dry_run_plans_without_writing(cg_sandbox, gs_sandbox, connector_for):
    cg = cg_sandbox(responses=40, days=5, accounts=4)
    gs = gs_sandbox()
    connector = connector_for(cg, gs)

    code, result = connector.run(dry_run=True)

    assert code == ExitCode.OK
    assert write_calls(gs) == 0  # Gainsight is only read (which Companies and records exist)
    assert gs.count_records(RESPONSE_OBJECT) == gs.count_records("Company") == 0
    plan = result.push
    assert plan.dry_run and plan["responses"].created == 40 and plan["companies"].created == 4

    assert connector.run()[0] == ExitCode.OK  # the dry run staged nothing: this run stages and pushes
    assert plan["activities"].created == connector.scalar(
        "SELECT count(*) FROM nps.nps_responses WHERE responded_at >= now() - INTERVAL 14 DAY AND account_id IS NOT NULL"
    )
    cg.edit_response(int(connector.scalar("SELECT max(response_id) FROM nps.nps_responses")), comment="changed")
    code, result = connector.run(dry_run=True)
    assert (result.push["responses"].updated, result.push["responses"].created) == (1, 0)
    assert result.push["companies"].unchanged == 1 and result.push["companies"].created == 0


def test_old_responses_get_no_timeline_entry(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    _, connector = staged_connector(gs)  # 40 responses of the last 5 days staged, nothing pushed

    assert push_only(connector).run(timeline_max_age_days=3)[0] == ExitCode.OK

    since = datetime.now(timezone.utc) - timedelta(days=3)
    expected = connector.scalar(
        "SELECT count(*) FROM nps.nps_responses WHERE responded_at >= ? AND account_id IS NOT NULL", [since]
    )
    assert connector.scalar("SELECT count(*) FROM nps.nps_responses WHERE responded_at < ?", [since]) > 0
    assert 0 < len(gs.records("activity_timeline")) <= expected
    activity = gs.records("activity_timeline")[0]
    assert activity["Subject"].startswith("NPS ") and "from " in activity["Subject"]
    author = next(u for u in gs.records("GsUser") if u["Email"] == AUTHOR)
    assert activity["AuthorId"] == author["Gsid"]


def test_stage_only_then_push_only(cg_sandbox, gs_sandbox, staging_for, connector_for):
    cg = cg_sandbox(responses=40, days=5, accounts=2)
    gs = gs_sandbox()
    assert staging_for(cg, name="push").run()[0] == ExitCode.OK  # stage only: Gainsight untouched
    assert len(gs.requests()) == 0
    cg.clear_log()
    connector = connector_for(cg, gs, name="push", push_only=True)

    code, result = connector.run()

    assert code == ExitCode.OK
    assert cg.count() == 0  # CustomerGauge not called
    assert len(connector.records()) == 40 and result.push["responses"].created == 40


def test_a_field_map_naming_a_missing_field_is_a_config_error_not_dead_letters(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    _, connector = staged_connector(gs)

    code, _ = push_only(connector).run(response_fields={"touchpoint": "Touch_Point__gc"})  # not a field of the object

    assert code == ExitCode.CONFIG_ERROR
    assert connector.scalar("SELECT count(*) FROM gainsight.dead_letters") == 0
    assert gs.count(path=f"/v1/data/objects/{RESPONSE_OBJECT}") == 1  # one call, no bisecting


def test_a_bulk_file_that_cannot_be_written_stops_with_exit_6_and_the_next_run_finishes(
    gs_sandbox, staged_connector, monkeypatch, caplog
):
    gs = gs_sandbox()
    _, connector = staged_connector(gs)  # 40 responses staged, nothing pushed
    connector = push_only(connector)
    real_temporary_file = tempfile.TemporaryFile

    def disk_full_for_bulk_files(*args, **kwargs):
        if kwargs.get("prefix") == "gainsight-bulk-":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_temporary_file(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", disk_full_for_bulk_files)

    code, result = connector.run(bulk_min_rows=20)

    assert code == ExitCode.STAGING_ERROR and result is None
    assert "cannot create the Bulk file in" in caplog.text and "nothing is lost" in caplog.text
    assert gs.family_counts().get("bulk", 0) == 0 and connector.records() == []
    accounts = connector.scalar("SELECT count(DISTINCT account_id) FROM nps.nps_responses")
    assert gs.count_records("Company") == accounts  # the steps before the Bulk file are booked in the ledger

    monkeypatch.undo()
    gs.clear_log()
    code, result = connector.run(bulk_min_rows=20)

    assert code == ExitCode.OK and result.push.bulk_uploads == 1
    assert len(connector.records()) == 40 and set(by_key(connector.records()).values()) == {1}
    assert gs.family_counts().get("company", 0) == 0  # companies were not sent twice


# Answers the reference leaves open, served by the sandbox's switches (sandbox/gainsight/variants.py).
# Each combination mixes a Timeline answer with a query and a Bulk status spelling, so six runs
# cover every value of every switch.
ANSWER_VARIANTS = {
    "sandbox-defaults": {},
    "duplicate-as-success": {"timeline_answer": "duplicate_as_success", "query_dates": "iso", "bulk_status_fields": "status"},
    "duplicate-as-call-error": {
        "timeline_answer": "duplicate_as_call_error", "query_dates": "iso_offset", "query_shape": "bare_list",
        "bulk_status_fields": "state",
    },
    "bare-ok": {"timeline_answer": "bare_ok", "query_dates": "iso_plain", "empty_answer": "no_data_found"},
    "unknown-body": {
        "timeline_answer": "unknown_body", "query_shape": "bare_list", "empty_answer": "no_data_found",
        "bulk_status_fields": "state",
    },
    "empty-body": {
        "timeline_answer": "empty_body", "query_dates": "iso", "empty_answer": "no_data_found",
        "bulk_status_fields": "status",
    },
}  # fmt: skip


def assert_one_record_and_one_activity_each(connector, gs, count: int) -> None:
    staged = {row[0] for row in connector.query("SELECT response_id FROM nps.nps_responses")}
    records = by_key(connector.records())
    activities = Counter(a["ExternalId"] for a in gs.records("activity_timeline"))
    assert len(staged) == count
    assert set(records) == staged and set(records.values()) == {1}
    assert set(activities) == {f"cg-nps-{rid}" for rid in staged} and set(activities.values()) == {1}
    assert connector.scalar("SELECT count(*) FROM gainsight.response_status WHERE gainsight_status <> 'in gainsight'") == 0


def lose_timeline_bookings(connector, count: int, keep: str) -> None:
    """What a crash between a Timeline call and its ledger write leaves: activities the ledger forgot."""
    with duckdb.connect(str(connector.staging.settings.duckdb_path)) as db:
        db.execute(
            "DELETE FROM gainsight.activities WHERE response_id IN "
            "(SELECT response_id FROM gainsight.activities WHERE response_id <> ? ORDER BY response_id DESC LIMIT ?)",
            [keep, count],
        )


@pytest.mark.parametrize("variant", list(ANSWER_VARIANTS))
def test_push_converges_under_every_answer_variant(gs_sandbox, staged_connector, variant):
    gs = gs_sandbox(variants=Variants(**ANSWER_VARIANTS[variant]))
    cg, connector = staged_connector(gs, responses=40, days=5, accounts=3)  # 40 responses staged, none pushed
    options = {"bulk_min_rows": 20, "timeline_records_per_call": 25}

    code, result = push_only(connector).run(**options)  # Bulk for the responses (status read in this spelling)

    assert code == ExitCode.OK
    assert result.push.bulk_uploads == 1 and result.push["activities"].created == 40
    assert_one_record_and_one_activity_each(connector, gs, 40)

    # One response edited; bookings lost after the calls, plus new responses: re-sends and new
    # inserts share a call, the edit is an update; nothing the Bulk upload landed is sent again.
    edited = connector.scalar("SELECT max(response_id) FROM nps.nps_responses WHERE responded_at >= now() - INTERVAL 2 DAY")
    cg.edit_response(int(edited), nps=2, comment="Edited: still waiting for the fix.")
    lose_timeline_bookings(connector, 15, keep=edited)
    cg.add_responses(5)
    code, result = connector.run(**options)

    assert code == ExitCode.OK
    assert (result.push["responses"].created, result.push["responses"].updated) == (5, 1)
    activities = result.push["activities"]
    assert (activities.updated, activities.failed) == (1, 0) and activities.created + activities.unchanged == 20
    (activity,) = [a for a in gs.records("activity_timeline") if a["ExternalId"] == f"cg-nps-{edited}"]
    assert activity["Subject"].startswith("NPS 2 (Detractor) from ")
    assert activity["Notes"] == "Edited: still waiting for the fix."
    (record,) = [r for r in connector.records() if r["ResponseId__gc"] == edited]  # updated in place
    assert record["Comment__gc"] == "Edited: still waiting for the fix."
    assert_one_record_and_one_activity_each(connector, gs, 45)
    gs.clear_log()
    assert push_only(connector).run(**options)[0] == ExitCode.OK and len(gs.requests()) == 0  # no write, not even a query


def test_a_valid_response_edited_into_an_invalid_one_keeps_its_last_valid_version(cg_sandbox, gs_sandbox, connector_for):
    cg = cg_sandbox(responses=20, days=5, accounts=2, invalid=2)
    gs = gs_sandbox()
    connector = connector_for(cg, gs)
    assert connector.run()[0] == ExitCode.QUARANTINED  # the two records invalid from the start
    assert set(connector.query("SELECT DISTINCT status FROM nps.quarantine_report")) == {("never_staged",)}
    edited = connector.scalar(
        "SELECT max(response_id) FROM nps.nps_responses WHERE score >= 7 AND responded_at >= now() - INTERVAL 2 DAY"
    )
    before = next(r for r in connector.records() if r["ResponseId__gc"] == edited)

    cg.edit_response(int(edited), nps=11, comment="This version is invalid")
    code, result = connector.run()

    assert code == ExitCode.QUARANTINED
    assert result.push is None or result.push["responses"].updated == 0
    after = next(r for r in connector.records() if r["ResponseId__gc"] == edited)
    assert after["Score__gc"] == before["Score__gc"] and after["Comment__gc"] == before["Comment__gc"]
    status, fixed = connector.query("SELECT status, fixed_upstream FROM nps.quarantine_report WHERE response_id = ?", [edited])[0]
    assert (status, fixed) == ("invalid_edit_kept_last_valid", False)
    assert connector.scalar("SELECT gainsight_status FROM gainsight.response_status WHERE response_id = ?", [edited]) == "in gainsight"

    cg.edit_response(int(edited), nps=3, comment="Fixed upstream")
    assert connector.run()[0] in (ExitCode.OK, ExitCode.QUARANTINED)

    status, fixed = connector.query("SELECT status, fixed_upstream FROM nps.quarantine_report WHERE response_id = ?", [edited])[0]
    assert (status, fixed) == ("fixed_upstream", True)
    after = next(r for r in connector.records() if r["ResponseId__gc"] == edited)
    assert (after["Score__gc"], after["Comment__gc"]) == (3, "Fixed upstream")
    (activity,) = [a for a in gs.records("activity_timeline") if a["ExternalId"] == f"cg-nps-{edited}"]
    assert activity["Subject"].startswith("NPS 3 (Detractor) from ") and activity["Notes"] == "Fixed upstream"
