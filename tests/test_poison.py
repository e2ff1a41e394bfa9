"""Poison records and silent stalls (issue 8 item 9): each trial first shows the failure mode the
crash and bad-input trials found, then that the record is quarantined alone, retried, or counted."""

from __future__ import annotations

import json
import signal
from collections import Counter
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from pipelines.errors import ExitCode

from .cli import push_env, run_main, start_cli
from .conftest import NO_CLIENT_QUOTAS, read_only
from .staged import push_only
from .test_push_command import assert_exactly_once

INT64_MAX = 2**63 - 1


def _fresh(sandbox, cgid: int, **changes):
    """A raw response shaped like the sandbox's own, answered an hour ago, with `changes` applied."""
    template = dict(sandbox.records[-1])
    moment = datetime.now(timezone.utc) - timedelta(hours=1)
    template.update(
        number_customergauge=cgid,
        date_survey_response=moment.strftime("%Y-%m-%d %H:%M:%S"),
        date_creation=moment.strftime("%Y-%m-%d %H:%M:%S"),
    )
    template.update(changes)
    return template


POISON = {
    # (c) legal JSON that pydantic-core refuses for the whole page and UTF-8 cannot hold
    "lone surrogate in a text": ({"comment": "broken \ud800 emoji"}, "comment: text holds a lone UTF-16 surrogate"),
    "lone surrogate in a key": ({"x\udc00": 1}, "x\\udc00: text holds a lone UTF-16 surrogate"),
    "lone surrogate in a property": (
        {"properties": [{"field": "Country", "reference": "\udfff"}]},
        "properties.0.reference: text holds a lone UTF-16 surrogate",
    ),
    # (d) an id no BIGINT can hold
    "id beyond int64": ({"number_customergauge": INT64_MAX + 1}, "number_customergauge: Input should be less than or equal to"),
    # (e) JSON booleans are not numbers
    "boolean score": ({"nps": True}, "nps: Value error, a boolean is not a number here"),
    "boolean id": ({"number_customergauge": True}, "number_customergauge: Value error, a boolean is not a number here"),
}


def test_poison_records_are_quarantined_alone_and_the_rest_of_their_page_is_staged(staged_staging):
    """Every kind of poison in one page: each is quarantined alone with its own reason, and every
    valid record of the page, before and after them, is staged."""
    sandbox, staging = staged_staging(responses=40, days=5, accounts=3)  # staged by an earlier run
    staged = staging.scalar("SELECT count(*) FROM nps.nps_responses")
    new_ids = sandbox.add_responses(5)
    poisons = {name: _fresh(sandbox, 990_000_001 + n, **changes) for n, (name, (changes, _)) in enumerate(POISON.items())}
    for poison in poisons.values():
        sandbox.add_raw_response(poison)
    later = sandbox.add_responses(5)  # the same page as the poison records, after them

    code, result = staging.run()

    # Before: exit 5 (surrogate: the whole page is a contract violation) or exit 1 with a traceback
    # (id beyond int64), or the record staged with score 1 / as response 1 (booleans).
    assert code == ExitCode.QUARANTINED
    feed = result.report.feeds["nps_responses"]
    assert feed.quarantined == len(POISON)
    ids = {row[0] for row in staging.query("SELECT response_id FROM nps.nps_responses")}
    assert {str(cgid) for cgid in new_ids + later} <= ids
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == staged + 10
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses WHERE response_id = '1'") == 0
    stored = staging.query("SELECT reason, raw FROM nps.quarantine_report")
    assert len(stored) == len(POISON)
    for name, (_, reason) in POISON.items():
        verbatim = {k: v for k, v in poisons[name].items() if k not in ("tags", "questions")}
        (stored_reason,) = [stored_reason for stored_reason, raw in stored if json.loads(raw) == verbatim]
        assert stored_reason.startswith(reason), name

    # the cursor moved past them: the next run fetches them in its lookback, but piles up nothing
    code, _ = staging.run()
    assert code in (ExitCode.OK, ExitCode.QUARANTINED)
    assert staging.scalar("SELECT count(*) FROM nps.quarantine") == len(POISON)
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == staged + 10


# --- (a) dead letters are retried under the give-up policy, and will_retry says so -----------------

PEOPLE_PATH = "/v1/peoplemgmt/v1.0/people"
BULK_PATH = "/v1.0/admin/connector/job/bulkimport"


def _dead_letters(connector, obj: str) -> list[tuple]:
    return connector.query(
        "SELECT record_key, attempts, will_retry FROM gainsight.dead_letter_report WHERE object = ? ORDER BY record_key", [obj]
    )


def _exactly_once(connector, staged: int) -> None:
    keys = Counter(record["ResponseId__gc"] for record in connector.records())
    assert len(keys) == staged and set(keys.values()) == {1}
    emails = {row[0] for row in connector.query("SELECT DISTINCT email FROM nps.nps_responses WHERE email IS NOT NULL")}
    people = Counter(person["Email"].lower() for person in connector.gainsight.records("Person"))
    assert set(people) == emails and set(people.values()) == {1}


@pytest.mark.parametrize("fault", [{"status": 400}, {"kind": "result_false"}], ids=["http-400", "200-result-false"])
def test_a_person_rejected_once_is_retried_by_the_next_run(gs_sandbox, staged_connector, fault):
    gs = gs_sandbox()
    gs.add_fault(path=PEOPLE_PATH, times=1, **fault)
    _, connector = staged_connector(gs)  # 40 responses staged
    connector = push_only(connector)

    code, result = connector.run()

    assert code == ExitCode.DEAD_LETTERED and result.push["people"].failed == 1
    (email, attempts, will_retry), = _dead_letters(connector, "people")
    assert (attempts, will_retry) == (1, True)
    assert len(connector.records()) == 40  # the person's response went in regardless

    gs.clear_log()
    code, result = connector.run()

    # Before: exit 0, no People call, and will_retry = true for ever.
    assert code == ExitCode.OK
    assert gs.family_counts().get("people") == 1 and result.push["people"].created + result.push["people"].updated == 1
    assert _dead_letters(connector, "people") == []
    assert email in {person["Email"].lower() for person in gs.records("Person")}
    _exactly_once(connector, 40)


def test_a_person_is_given_up_after_max_attempts_and_retried_at_once_when_it_changes(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    gs.add_fault(path=PEOPLE_PATH, status=400, times=1)
    cg, connector = staged_connector(gs)  # 40 responses staged
    pusher = push_only(connector)  # nothing changes in CustomerGauge until the edit below

    assert pusher.run(max_attempts=2)[0] == ExitCode.DEAD_LETTERED
    (email, attempts, will_retry), = _dead_letters(connector, "people")
    assert (attempts, will_retry) == (1, True)

    gs.clear_log()
    gs.add_fault(path=PEOPLE_PATH, status=400, times=1)
    code, _ = pusher.run(max_attempts=2)  # will_retry was true: this run sends it again
    # the same dead letter again: no new alert (exit 11 is for records new in this run)
    assert code == ExitCode.OK and gs.family_counts().get("people") == 1
    assert _dead_letters(connector, "people") == [(email, 2, False)]

    gs.clear_log()
    code, result = pusher.run(max_attempts=2)  # will_retry was false: this run does not
    assert code == ExitCode.OK and gs.family_counts().get("people", 0) == 0
    assert result.push["people"].given_up == 1
    assert _dead_letters(connector, "people") == [(email, 2, False)]

    # new content starts counting again: the report says so before the run, and the run does it
    cgid = connector.scalar(
        "SELECT response_id FROM nps.nps_responses WHERE email = ? ORDER BY responded_at DESC LIMIT 1", [email]
    )
    cg.edit_response(int(cgid), contact={"first_name": "Renamed", "last_name": "Person"})
    assert connector.run(max_attempts=2, cg={"lookback_days": 10})[0] == ExitCode.OK  # the edit may be 6 days back
    assert _dead_letters(connector, "people") == []
    assert any(p["FirstName"] == "Renamed" for p in gs.records("Person") if p["Email"].lower() == email)
    _exactly_once(connector, 40)


def test_a_dead_lettered_company_is_retried_and_its_responses_follow(cg_sandbox, gs_sandbox, connector_for):
    cg = cg_sandbox(responses=15, days=5, accounts=1)
    gs = gs_sandbox()
    gs.add_fault(path="/v1/data/objects/Company", status=400, times=1)  # the one insert
    connector = connector_for(cg, gs)

    code, result = connector.run()

    assert code == ExitCode.DEAD_LETTERED and result.push["companies"].failed == 1
    assert [row[1:] for row in _dead_letters(connector, "companies")] == [(1, True)]
    with_account = connector.scalar("SELECT count(*) FROM nps.nps_responses WHERE account_id IS NOT NULL")
    assert result.push["responses"].deferred == with_account  # they wait for their company

    code, result = push_only(connector).run()

    assert code == ExitCode.OK and result.push["companies"].created == 1
    assert _dead_letters(connector, "companies") == []
    _exactly_once(connector, 15)


# --- (b) a Bulk upload without an outcome is deferred work: exit 12, then landed exactly once --------

@pytest.mark.parametrize(
    "fault, options",
    [
        ({"status": 503}, {}),
        ({"kind": "drop"}, {}),
        # Gainsight takes the file, but its answer comes after the client gave up waiting
        ({"kind": "delay", "delay": 3.0}, {"timeout_seconds": 0.5}),
    ],
    ids=["503", "dropped-connection", "lost-answer"],
)
def test_a_lost_bulk_upload_defers_its_rows_and_the_next_run_lands_them_once(gs_sandbox, staged_connector, fault, options):
    gs = gs_sandbox()
    gs.add_fault(path=BULK_PATH, times=1, **fault)
    _, connector = staged_connector(gs)  # 40 responses staged, nothing pushed
    connector = push_only(connector)

    code, result = connector.run(bulk_min_rows=20, **options)

    # Before: exit 0 "completed" with every row of the upload left behind.
    assert code == ExitCode.DEFERRED
    assert result.push["responses"].deferred == 40 and result.push.bulk_uploads == 0
    assert [d.reason for d in result.push.deferrals] == ["a Bulk upload got no answer (5xx or a lost connection)"]

    code, result = connector.run(bulk_min_rows=20)

    assert code == ExitCode.OK and result.push["responses"].deferred == 0
    _exactly_once(connector, 40)


def test_a_bulk_upload_still_processing_when_polling_times_out_is_deferred_and_reconciled_next_run(
    gs_sandbox, staged_connector
):
    gs = gs_sandbox(time_scale=0)  # the sandbox clock stands still: the job stays INIT
    _, connector = staged_connector(gs)  # 40 responses staged, nothing pushed
    connector = push_only(connector)

    code, result = connector.run(bulk_min_rows=20, bulk_poll_timeout_seconds=0.3)

    assert code == ExitCode.DEFERRED
    assert result.push["responses"].deferred == 40 and result.push.bulk_uploads == 1
    assert "still processing" in result.push.deferrals[0].reason

    gs.advance(10)  # Gainsight finishes the job
    gs.clear_log()
    code, result = connector.run(bulk_min_rows=20)

    assert code == ExitCode.OK and result.push.recovered_uploads == 1
    assert gs.family_counts().get("bulk", 0) == 0  # reconciled, not uploaded again
    _exactly_once(connector, 40)


# --- (f) deferred counts: a quota that runs out between steps ---------------------------------------

def test_a_quota_used_up_between_steps_counts_every_row_left_behind(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    _, connector = staged_connector(gs)  # 40 responses of 3 accounts staged
    connector = push_only(connector)
    # companies take a query and an insert, the responses the metadata call and a query by key; their
    # insert finds the day's sync quota used up, and so do the people after them. Timeline entries
    # count in their own quota family: they are written all the same.
    quotas = {**NO_CLIENT_QUOTAS, "sync_per_day": 4}

    code, result = connector.run(quotas=quotas)

    # Before: exit 12, but responses and activities showed 0 deferred.
    assert code == ExitCode.DEFERRED
    push = result.push
    emails = connector.scalar("SELECT count(DISTINCT email) FROM nps.nps_responses")
    recent = connector.scalar(
        "SELECT count(*) FROM nps.nps_responses WHERE responded_at >= now() - INTERVAL 14 DAY AND account_id IS NOT NULL"
    )
    assert push["companies"].created == 3 and push["responses"].created == 0
    assert push["responses"].deferred == 40 and push["people"].deferred == emails > 0
    assert push["activities"].created == recent and push["activities"].deferred == 0
    assert connector.scalar("SELECT count(*) FROM gainsight.response_status WHERE gainsight_status = 'deferred to next run'") == 40

    code, result = connector.run()

    assert code == ExitCode.OK
    assert result.push["responses"].created == 40 and result.push["people"].created == emails
    _exactly_once(connector, 40)


# --- (f) deferred counts: a re-delivered package and the fresh outbox are one set of records -------

def _summary_row(stdout: str, name: str) -> dict[str, int]:
    """The summary table's row for one Gainsight object, by column."""
    line = next(line for line in stdout.splitlines() if line.strip().startswith(f"{name} "))
    numbers = [int(value.replace(",", "")) for value in line.split()[1:6]]
    return dict(zip(("created", "updated", "unchanged", "failed", "deferred"), numbers, strict=True))


def test_records_deferred_by_a_redelivered_package_and_the_fresh_outbox_count_once(cg_sandbox, gs_sandbox, project):
    staged = 60  # above BULK_MIN_ROWS (50 here): the responses go in one Bulk upload
    cg = cg_sandbox(responses=staged, days=20, accounts=10)
    gs = gs_sandbox()
    gs.add_fault(path=PEOPLE_PATH, kind="delay", delay=60.0, skip=25, times=1)  # the 26th person's answer waits
    env = push_env(cg, gs, project, DESTINATION__GAINSIGHT__BULK_MIN_ROWS="50")
    victim = start_cli(cwd=project, env=env)
    try:  # killed inside dlt's load step, while that answer is held: its package stays pending
        gs.clock.wait_for_sleepers(1, timeout=60)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    gs.clear_faults()

    result = run_main(cwd=project, env={**env, "DESTINATION__GAINSIGHT__QUOTAS__SYNC_PER_DAY": "1"})

    assert result.returncode == ExitCode.DEFERRED, result.stderr
    assert "re-delivering 1 package(s) an interrupted run left pending" in result.stderr
    # Where the kill landed decides what is left (people go last, and run while the Bulk job is
    # processing); the ledger says what this run deferred, each record once.
    with read_only(project / "staging.duckdb") as conn:
        left = {
            name: conn.execute(f"SELECT count(*) FROM gainsight.{name} WHERE status = 'deferred'").fetchone()[0]
            for name in ("responses", "activities", "people")
        }
    assert sum(left.values()) > 0
    # Before: each record was counted twice (by the package and again by the fresh outbox).
    for name, count in left.items():
        assert _summary_row(result.stdout, name)["deferred"] == count

    result = run_main(cwd=project, env=env)

    assert result.returncode == ExitCode.OK, result.stderr
    assert all(_summary_row(result.stdout, name)["deferred"] == 0 for name in left)
    assert_exactly_once(project, gs)


# --- one definition: the SQL spelling of the company and person hashes is the Python one ---------

@pytest.mark.parametrize(
    "account_id, name, email, first, last, gsid",
    [
        ("ACC-1", "Acme GmbH", "jane@acme.com", "Jane", "Doe", "1P02ABC"),
        ("ACC-2", None, "zoë@acme.com", None, "Ñúñez", None),
        ("ACC-3", "", "x@y.z", "", None, "1P02DEF"),
    ],
)
def test_retry_rule_hashes_match_the_hashes_the_push_books(account_id, name, email, first, last, gsid):
    from destinations.gainsight.records import company_hash, person_hash
    from destinations.gainsight.store import COMPANY_HASH, PERSON_HASH

    row = {"account_id": account_id, "account_name": name, "email": email, "first_name": first, "last_name": last}
    with duckdb.connect() as db:
        company, person = db.execute(
            f"SELECT {COMPANY_HASH}, {PERSON_HASH} FROM (SELECT $account_id AS account_id, $account_name::VARCHAR AS "
            "account_name, $email AS email, $first_name::VARCHAR AS first_name, $last_name::VARCHAR AS last_name) x, "
            "(SELECT $gsid::VARCHAR AS gsid) c",
            {**row, "gsid": gsid},
        ).fetchone()
    assert company == company_hash(account_id, name)
    assert person == person_hash(email, first, last, gsid)
