"""Poison records and silent stalls (issue 8 item 9): each trial first shows the failure mode the
crash and bad-input trials found, then that the record is quarantined alone, retried, or counted."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from pipelines.errors import ExitCode

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


@pytest.mark.parametrize("name", list(POISON))
def test_a_poison_record_is_quarantined_alone_and_the_rest_of_its_page_is_staged(cg_sandbox, staging_for, name):
    changes, reason = POISON[name]
    sandbox = cg_sandbox(responses=120, days=5)
    staging = staging_for(sandbox)
    assert staging.run()[0] == ExitCode.OK
    staged = staging.scalar("SELECT count(*) FROM nps.nps_responses")
    new_ids = sandbox.add_responses(5)
    poison = _fresh(sandbox, 990_000_001, **changes)
    sandbox.add_raw_response(poison)
    later = sandbox.add_responses(5)  # the same page as the poison record, after it

    code, result = staging.run()

    # Before: exit 5 (surrogate: the whole page is a contract violation) or exit 1 with a traceback
    # (id beyond int64), or the record staged with score 1 / as response 1 (booleans).
    assert code == ExitCode.QUARANTINED
    feed = result.report.feeds["nps_responses"]
    assert feed.quarantined == 1
    ids = {row[0] for row in staging.query("SELECT response_id FROM nps.nps_responses")}
    assert {str(cgid) for cgid in new_ids + later} <= ids
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == staged + 10
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses WHERE response_id = '1'") == 0
    (stored_reason, raw), = staging.query("SELECT reason, raw FROM nps.quarantine_report")
    assert stored_reason.startswith(reason)
    assert json.loads(raw) == {k: v for k, v in poison.items() if k not in ("tags", "questions")}  # verbatim

    # the cursor moved past it: the next run fetches it in its lookback, but piles up nothing
    code, _ = staging.run()
    assert code in (ExitCode.OK, ExitCode.QUARANTINED)
    assert staging.scalar("SELECT count(*) FROM nps.quarantine") == 1
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == staged + 10


# --- (a) dead letters are retried under the give-up policy, and will_retry says so -----------------

PEOPLE_PATH = "/v1/peoplemgmt/"
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
def test_a_person_rejected_once_is_retried_by_the_next_run(cg_sandbox, gs_sandbox, connector_for, fault):
    cg = cg_sandbox(responses=30, days=5, accounts=3)
    gs = gs_sandbox()
    gs.add_fault(path=PEOPLE_PATH, times=1, **fault)
    connector = connector_for(cg, gs)

    code, result = connector.run()

    assert code == ExitCode.DEAD_LETTERED and result.push["people"].failed == 1
    (email, attempts, will_retry), = _dead_letters(connector, "people")
    assert (attempts, will_retry) == (1, True)
    assert len(connector.records()) == 30  # the person's response went in regardless

    gs.clear_log()
    code, result = connector.run()

    # Before: exit 0, no People call, and will_retry = true for ever.
    assert code == ExitCode.OK
    assert gs.family_counts().get("people") == 1 and result.push["people"].created + result.push["people"].updated == 1
    assert _dead_letters(connector, "people") == []
    assert email in {person["Email"].lower() for person in gs.records("Person")}
    _exactly_once(connector, 30)


def test_a_person_is_given_up_after_max_attempts_and_retried_at_once_when_it_changes(cg_sandbox, gs_sandbox, connector_for):
    cg = cg_sandbox(responses=20, days=5, accounts=2)
    gs = gs_sandbox()
    gs.add_fault(path=PEOPLE_PATH, status=400, times=1)
    connector = connector_for(cg, gs)

    assert connector.run(max_attempts=2)[0] == ExitCode.DEAD_LETTERED
    (email, attempts, will_retry), = _dead_letters(connector, "people")
    assert (attempts, will_retry) == (1, True)

    gs.clear_log()
    gs.add_fault(path=PEOPLE_PATH, status=400, times=1)
    code, _ = connector.run(max_attempts=2)  # will_retry was true: this run sends it again
    assert code == ExitCode.DEAD_LETTERED and gs.family_counts().get("people") == 1
    assert _dead_letters(connector, "people") == [(email, 2, False)]

    gs.clear_log()
    code, result = connector.run(max_attempts=2)  # will_retry was false: this run does not
    assert code == ExitCode.OK and gs.family_counts().get("people", 0) == 0
    assert result.push["people"].given_up == 1
    assert _dead_letters(connector, "people") == [(email, 2, False)]

    # new content starts counting again: the report says so before the run, and the run does it
    cgid = connector.scalar(
        "SELECT response_id FROM nps.nps_responses WHERE email = ? ORDER BY responded_at DESC LIMIT 1", [email]
    )
    cg.edit_response(int(cgid), contact={"first_name": "Renamed", "last_name": "Person"})
    assert connector.run(max_attempts=2, cg={"lookback_days": 10})[0] == ExitCode.OK  # the edit is 5 days back
    assert _dead_letters(connector, "people") == []
    assert any(p["FirstName"] == "Renamed" for p in gs.records("Person") if p["Email"].lower() == email)
    _exactly_once(connector, 20)


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

    code, result = connector.run()

    assert code == ExitCode.OK and result.push["companies"].created == 1
    assert _dead_letters(connector, "companies") == []
    _exactly_once(connector, 15)
