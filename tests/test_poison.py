"""Poison records and silent stalls (issue 8 item 9): each trial first shows the failure mode the
crash and bad-input trials found, then that the record is quarantined alone, retried, or counted."""

from __future__ import annotations

import json
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
