"""The CustomerGauge sandbox over real HTTP: it must be as strict as reference §5 says, page exactly,
and inject faults deterministically, because every client test trusts it."""

from __future__ import annotations

import base64
import math
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests

from sandbox.customergauge import CustomerGaugeSandbox, Fault, SeedSpec

CLIENT_ID, CLIENT_SECRET = "cg-id", "cg-secret"
RESPONSES = "/v7/rest/sync/responses"
NON_RESPONSES = "/v7/rest/sync/non-responses"
ALL_WITH = ["drivers", "questions", "tags", "properties"]
END = date(2026, 11, 20)
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


SERVER_KNOBS = ("token_lifetime", "time_scale", "requests_per_minute")


def make_sandbox(**spec: Any) -> CustomerGaugeSandbox:
    """A sandbox from seed fields plus the server's own knobs (token lifetime, clock, rate limit)."""
    spec.setdefault("end", END)
    knobs = {name: spec.pop(name) for name in SERVER_KNOBS if name in spec}
    return CustomerGaugeSandbox(CLIENT_ID, CLIENT_SECRET, seed=SeedSpec(**spec), **knobs)


@pytest.fixture
def cg() -> Iterator[CustomerGaugeSandbox]:
    with make_sandbox(responses=250, days=10, accounts=5) as sandbox:
        yield sandbox


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def token(cg: CustomerGaugeSandbox, http: requests.Session) -> str:
    response = http.post(
        cg.token_url,
        data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def get(
    cg: CustomerGaugeSandbox,
    http: requests.Session,
    params: Any = None,
    path: str = RESPONSES,
    bearer: str | None = None,
) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer or token(cg, http)}"}
    return http.get(cg.base_url + path, params=params, headers=headers)


def fetch_all(cg: CustomerGaugeSandbox, http: requests.Session, **params: Any) -> tuple[list[dict], list[int]]:
    """Page to the end; returns the records and every cursor.next seen (the last from the empty page)."""
    bearer = token(cg, http)
    records: list[dict] = []
    cursors: list[int] = []
    cursor: int | None = params.pop("cursor", None)
    while True:
        query = dict(params, **({"cursor": cursor} if cursor is not None else {}))
        body = get(cg, http, query, bearer=bearer).json()
        cursors.append(body["cursor"]["next"])
        if not body["data"]:
            return records, cursors
        records.extend(body["data"])
        cursor = body["cursor"]["next"]


# -- OAuth2 token endpoint --------------------------------------------------------------------------


def test_token_from_form_body_query_string_and_basic(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    creds = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    answers = [
        http.post(cg.token_url, data=creds),
        # viadot: credentials in the query string of a POST with an empty, form-typed body
        http.post(cg.token_url, params=creds, headers={"Content-Type": "application/x-www-form-urlencoded"}),
        http.post(cg.token_url, data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {"access_token", "expires_in", "token_type"}
        assert body["expires_in"] == 3600 and body["token_type"] == "Bearer"
    assert len({a.json()["access_token"] for a in answers}) == 3
    assert cg.token_requests == 3
    assert get(cg, http, bearer=answers[1].json()["access_token"]).status_code == 200


@pytest.mark.parametrize(
    "data, headers, error",
    [
        ({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "wrong"}, {}, "invalid_client"),
        ({"grant_type": "client_credentials", "client_id": "other", "client_secret": CLIENT_SECRET}, {}, "invalid_client"),
        ({"grant_type": "client_credentials"}, {"Authorization": "Basic " + base64.b64encode(b"cg-id:nope").decode()}, "invalid_client"),
        ({"grant_type": "password", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, {}, "unsupported_grant_type"),
        ({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, {}, "invalid_request"),
        ({"grant_type": "client_credentials", "client_id": CLIENT_ID}, {}, "invalid_request"),
    ],
)
def test_token_errors(
    cg: CustomerGaugeSandbox, http: requests.Session, data: dict, headers: dict, error: str
) -> None:
    answer = http.post(cg.token_url, data=data, headers=headers)
    assert (answer.status_code, answer.json()) == (400, {"error": error})
    assert cg.token_requests == 0


def test_token_rejects_json_body_and_wrong_method(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    answer = http.post(cg.token_url, json={"grant_type": "client_credentials", "client_id": CLIENT_ID})
    assert (answer.status_code, answer.json()) == (400, {"error": "invalid_request"})
    assert http.get(cg.token_url).status_code == 405


# -- authentication on the API ---------------------------------------------------------------------


def test_api_requires_a_valid_unexpired_bearer_token(http: requests.Session) -> None:
    with make_sandbox(responses=5, token_lifetime=0.2, time_scale=0) as cg:
        assert http.get(cg.base_url + RESPONSES).status_code == 401
        bad = http.get(cg.base_url + RESPONSES, headers={"Authorization": "Bearer not-a-token"})
        assert (bad.status_code, bad.json()) == (401, {"message": "Unauthenticated."})
        grant = http.post(
            cg.token_url,
            data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        ).json()
        assert grant["expires_in"] == 1  # 0.2 s rounded up: OAuth2 has whole seconds only
        assert get(cg, http, bearer=grant["access_token"]).status_code == 200
        cg.advance(0.3)  # the sandbox clock, not a real wait
        assert get(cg, http, bearer=grant["access_token"]).status_code == 401


# -- query validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, key, message",
    [
        ({"per_page": 0}, "per_page", "The per page must be at least 1."),
        ({"per_page": 1001}, "per_page", "The per page must not be greater than 1000."),
        ({"per_page": "abc"}, "per_page", "The per page must be an integer."),
        ({"per_page": "007"}, "per_page", "The per page must be an integer."),
        ({"cursor": -1}, "cursor", "The cursor must be at least 0."),
        ({"cursor": "MTIz"}, "cursor", "The cursor must be an integer."),
        ({"with[]": ["drivers", "segments"]}, "with.1", "The selected with.1 is invalid."),
        ({"with": "drivers"}, "with", "The with field is prohibited."),
        ({"perpage": 10}, "perpage", "The perpage field is prohibited."),
        (
            {"period[field]": "date_survey_response", "period[start]": "2026-11-01"},
            "period.end",
            "The period.end field is required when period.field / period.start is present.",
        ),
        (
            {"period[field]": "date_updated", "period[start]": "2026-11-01", "period[end]": "2026-11-02"},
            "period.field",
            "The selected period.field is invalid.",
        ),
        (
            {"period[field]": "date_sent", "period[start]": "2026-02-30", "period[end]": "2026-03-02"},
            "period.start",
            "The period.start does not match the format Y-m-d.",
        ),
        (
            {"period[field]": "date_sent", "period[start]": "2026-11-01", "period[end]": "01/11/2026"},
            "period.end",
            "The period.end does not match the format Y-m-d.",
        ),
        (
            {"period[field]": "date_sent", "period[start]": "2026-11-02", "period[end]": "2026-11-01"},
            "period.end",
            "The period.end must be a date after or equal to period.start.",
        ),
    ],
)
def test_invalid_queries_get_laravel_422(
    cg: CustomerGaugeSandbox, http: requests.Session, params: dict, key: str, message: str
) -> None:
    answer = get(cg, http, params)
    assert answer.status_code == 422
    body = answer.json()
    assert body["message"] == "The given data was invalid."
    assert body["errors"] == {key: [message]}


def test_every_failing_parameter_is_reported_at_once(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    body = get(cg, http, {"per_page": 5000, "cursor": "x", "foo": "1"}).json()
    assert set(body["errors"]) == {"per_page", "cursor", "foo"}


def test_unknown_path_and_wrong_method(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    missing = http.get(cg.base_url + "/v7/rest/sync/responses/")
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})
    wrong = http.post(cg.base_url + RESPONSES)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET, HEAD"


# -- paging ------------------------------------------------------------------------------------------


def test_full_paging_returns_every_record_once_in_feed_order(http: requests.Session) -> None:
    with make_sandbox(responses=2500, days=20, accounts=30) as cg:
        records, cursors = fetch_all(cg, http, per_page=1000, **{"with[]": ALL_WITH})
        assert records == cg.records
        ids = [r["number_customergauge"] for r in records]
        assert len(ids) == len(set(ids)) == 2500
        assert cursors[:-1] == sorted(set(cursors[:-1])) and len(cursors) == 4  # 1000 + 1000 + 500 + empty
        assert cursors[-1] == cursors[-2]  # the empty last page echoes the cursor it was given
        # records leave the feed in response-time order, which is how their sync ids were assigned
        times = [r["date_survey_response"] for r in records]
        assert times == sorted(times)


def test_defaults_and_empty_pages(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    first = get(cg, http).json()
    assert len(first["data"]) == 100  # per_page defaults to 100
    assert get(cg, http, {"cursor": 10**12}).json() == {"data": [], "cursor": {"next": 10**12}}
    next_page = get(cg, http, {"cursor": first["cursor"]["next"], "per_page": 1}).json()
    assert next_page["data"][0]["number_customergauge"] == cg.records[100]["number_customergauge"]


def test_period_filter_is_inclusive_of_whole_days_and_pages(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    start, end = "2026-11-13", "2026-11-15"
    expected = [r for r in cg.records if start <= r["date_survey_response"][:10] <= end]
    days = {r["date_survey_response"][:10] for r in expected}
    assert days == {"2026-11-13", "2026-11-14", "2026-11-15"}
    period = {"period[field]": "date_survey_response", "period[start]": start, "period[end]": end}
    records, _ = fetch_all(cg, http, per_page=7, **period, **{"with[]": ALL_WITH})
    assert records == expected

    sent, _ = fetch_all(cg, http, per_page=1000, **{"period[field]": "date_sent", "period[start]": end, "period[end]": end})
    assert sent and all(r["date_email_sent"].startswith(end) for r in sent)
    assert len(sent) == sum(r["date_email_sent"].startswith(end) for r in cg.records)


def test_expansions_only_when_requested(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    expandable = {"drivers", "questions", "tags", "properties"}
    bare = get(cg, http, {"per_page": 50}).json()["data"]
    assert all(not expandable & set(r) for r in bare)
    assert all({"custom_fields", "contact", "account", "date_email_sent"} <= set(r) for r in bare)
    some = get(cg, http, {"per_page": 50, "with[]": ["drivers", "tags"]}).json()["data"]
    assert all(expandable & set(r) == {"drivers", "tags"} for r in some)
    full = get(cg, http, {"per_page": 50, "with[]": ALL_WITH}).json()["data"]
    assert all(expandable <= set(r) for r in full)
    assert [{k: v for k, v in r.items() if k not in expandable} for r in full] == bare


def test_non_responses_have_own_feed_and_only_expand_properties(http: requests.Session) -> None:
    with make_sandbox(responses=20, non_responses=30) as cg:
        bearer = token(cg, http)
        body = get(cg, http, {"per_page": 1000, "with[]": ALL_WITH}, path=NON_RESPONSES, bearer=bearer).json()
        assert len(body["data"]) == 30
        for record in body["data"]:
            assert "properties" in record
            assert not {"nps", "comment", "date_survey_response", "drivers", "tags", "questions"} & set(record)
        response_ids = {r["number_customergauge"] for r in cg.records}
        assert not response_ids & {r["number_customergauge"] for r in body["data"]}
        bare = get(cg, http, {"per_page": 1000}, path=NON_RESPONSES, bearer=bearer).json()["data"]
        assert all("properties" not in r for r in bare)


# -- feed mutations ----------------------------------------------------------------------------------


def test_edit_moves_a_record_past_a_stored_cursor(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    _, cursors = fetch_all(cg, http, per_page=1000)
    stored = cursors[-1]
    victim = cg.records[40]["number_customergauge"]
    cg.edit_response(victim, comment="Changed my mind 🙂", nps=3)
    changed, _ = fetch_all(cg, http, per_page=1000, cursor=stored, **{"with[]": ALL_WITH})
    assert [(r["number_customergauge"], r["comment"], r["nps"]) for r in changed] == [(victim, "Changed my mind 🙂", 3)]
    assert cg.records[-1] == changed[0]
    assert [r["number_customergauge"] for r in cg.records].count(victim) == 1
    with pytest.raises(KeyError):
        cg.edit_response(1, comment="nobody")


def test_late_response_appears_after_cursor_and_matches_its_old_date(
    cg: CustomerGaugeSandbox, http: requests.Session
) -> None:
    _, cursors = fetch_all(cg, http, per_page=1000)
    late = cg.add_responses(2, responded_at=datetime(2026, 11, 12, 10, 0))
    fresh = cg.add_responses(1)
    new, _ = fetch_all(cg, http, per_page=1000, cursor=cursors[-1])
    assert [r["number_customergauge"] for r in new] == late + fresh
    assert [r["date_survey_response"] for r in new[:2]] == ["2026-11-12 10:00:00"] * 2
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert now - timedelta(minutes=15) < datetime.fromisoformat(new[2]["date_survey_response"]) <= now
    period = {"period[field]": "date_survey_response", "period[start]": "2026-11-12", "period[end]": "2026-11-12"}
    on_that_day, _ = fetch_all(cg, http, per_page=1000, **period)
    assert set(late) <= {r["number_customergauge"] for r in on_that_day}
    assert on_that_day[-2:] == new[:2]  # oldest first by feed position, so they come last


def test_raw_records_are_served_as_is(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    _, cursors = fetch_all(cg, http, per_page=1000)
    cg.add_raw_response({"number_customergauge": 42, "nps": "ten", "date_survey_response": "yesterday", "tags": [{"label": "x"}]})
    assert get(cg, http, {"cursor": cursors[-1]}).json()["data"] == [
        {"number_customergauge": 42, "nps": "ten", "date_survey_response": "yesterday"}
    ]


def test_paging_never_loses_a_record_while_records_are_edited(http: requests.Session) -> None:
    with make_sandbox(responses=3000) as cg:
        ids = [r["number_customergauge"] for r in cg.records]
        started = threading.Event()

        def edit() -> None:
            started.set()
            for i in range(3000):  # bounded: every edit re-queues a record at the end of the feed
                cg.edit_response(ids[(i * 7) % len(ids)], comment=f"edit {i}")

        editor = threading.Thread(target=edit)
        editor.start()
        started.wait()
        try:
            records, cursors = fetch_all(cg, http, per_page=200)
        finally:
            editor.join()
        assert cursors[:-1] == sorted(set(cursors[:-1]))
        # a record edited behind the reader's cursor is seen again later; none is ever skipped
        assert {r["number_customergauge"] for r in records} == set(ids)


# -- faults ----------------------------------------------------------------------------------------------


def test_rate_limit_fault_with_and_without_retry_after(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    bearer = token(cg, http)
    cg.add_fault(kind="status", status=429, retry_after=1.5, path=RESPONSES, skip=1)
    cg.add_fault(Fault(kind="status", status=429, path=RESPONSES, skip=2))  # counts request 2 as well
    assert get(cg, http, bearer=bearer).status_code == 200  # both faults let the first through
    limited = get(cg, http, bearer=bearer)
    assert (limited.status_code, limited.json()) == (429, {"message": "Too Many Attempts."})
    assert limited.headers["Retry-After"] == "2"  # whole seconds, rounded up
    assert limited.headers["X-RateLimit-Remaining"] == "0" and "X-RateLimit-Limit" in limited.headers
    bare = get(cg, http, bearer=bearer)
    assert bare.status_code == 429 and "Retry-After" not in bare.headers
    assert get(cg, http, bearer=bearer).status_code == 200
    assert cg.count(RESPONSES, status=429) == 2 and cg.pending_faults() == []


def test_rate_limit_fault_with_an_http_date_retry_after(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    bearer = token(cg, http)
    cg.add_fault(kind="status", status=429, retry_after=6.2, retry_after_date=True, path=RESPONSES)
    limited = get(cg, http, bearer=bearer)
    assert limited.status_code == 429
    # IMF-fixdate (RFC 9110 §5.6.7), exactly the rounded-up seconds after the answer's one Date header
    fixdate = r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT"
    assert re.fullmatch(fixdate, limited.headers["Retry-After"]) and re.fullmatch(fixdate, limited.headers["Date"])
    delta = parsedate_to_datetime(limited.headers["Retry-After"]) - parsedate_to_datetime(limited.headers["Date"])
    assert delta.total_seconds() == 7
    with pytest.raises(ValueError, match="retry_after_date needs retry_after"):
        Fault(kind="status", status=429, retry_after_date=True)


def test_server_error_fault_hits_times_matching_requests(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    bearer = token(cg, http)
    cg.add_fault(kind="status", status=503, path="/v7/", times=2)
    statuses = [get(cg, http, bearer=bearer).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert http.get(cg.base_url + RESPONSES).status_code == 401  # used up: routing again
    cg.add_fault(kind="status", status=502, path=NON_RESPONSES)
    assert get(cg, http, bearer=bearer).status_code == 200  # other path untouched
    failed = get(cg, http, path=NON_RESPONSES, bearer=bearer)
    assert (failed.status_code, failed.json()) == (502, {"message": "Server Error"})


def test_drop_fault_closes_the_connection_without_a_response(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    bearer = token(cg, http)
    cg.add_fault(kind="drop", path=RESPONSES)
    with pytest.raises(requests.ConnectionError):
        get(cg, http, bearer=bearer)
    assert get(cg, http, bearer=bearer).status_code == 200
    assert [e.status for e in cg.requests(RESPONSES)] == [None, 200]


def test_delay_fault_serves_slowly(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    bearer = token(cg, http)
    cg.add_fault(kind="delay", delay=0.3, path=RESPONSES)
    started = time.monotonic()
    assert get(cg, http, bearer=bearer).status_code == 200
    assert time.monotonic() - started >= 0.3
    cg.add_fault(kind="delay", delay=0.5, path=RESPONSES)
    with pytest.raises(requests.Timeout):
        http.get(cg.base_url + RESPONSES, headers={"Authorization": f"Bearer {bearer}"}, timeout=0.1)


def test_delay_fault_authenticates_on_arrival(http: requests.Session) -> None:
    with make_sandbox(responses=5, token_lifetime=60, time_scale=0) as cg:
        bearer = token(cg, http)
        cg.add_fault(kind="delay", delay=120, path=RESPONSES)
        answers: list[int] = []
        held = threading.Thread(target=lambda: answers.append(get(cg, http, bearer=bearer).status_code))
        held.start()
        cg.clock.wait_for_sleepers(1)  # arrived and held: a frozen clock releases nothing
        assert answers == []
        cg.advance(120)
        held.join(timeout=10)
        assert answers == [200]  # valid on arrival, expired on delivery
        assert get(cg, http, bearer=bearer).status_code == 401


def test_rate_limit_counts_per_token_in_minute_windows_of_the_sandbox_clock(http: requests.Session) -> None:
    with make_sandbox(responses=5, time_scale=0, requests_per_minute=2) as cg:
        bearer, other = token(cg, http), token(cg, http)
        assert [get(cg, http, bearer=bearer).status_code for _ in range(2)] == [200, 200]
        limited = get(cg, http, bearer=bearer)
        assert (limited.status_code, limited.json()) == (429, {"message": "Too Many Attempts."})
        to_window_end = 60 - cg.clock.now() % 60  # frozen: Retry-After is in sandbox seconds
        assert limited.headers["Retry-After"] == str(max(1, math.ceil(to_window_end)))
        assert limited.headers["X-RateLimit-Limit"] == "2" and limited.headers["X-RateLimit-Remaining"] == "0"
        assert get(cg, http, bearer=other).status_code == 200  # each token has its own budget
        assert get(cg, http, bearer=bearer).status_code == 429  # until the clock moves
        moved = http.post(cg.base_url + "/_sandbox/advance", json={"seconds": to_window_end + 1})
        assert moved.status_code == 200
        assert get(cg, http, bearer=bearer).status_code == 200  # a new window


def test_revoke_tokens_fault_expires_tokens_at_an_exact_request(
    cg: CustomerGaugeSandbox, http: requests.Session
) -> None:
    bearer = token(cg, http)
    cg.add_fault(kind="revoke_tokens", path=RESPONSES, skip=2)
    assert [get(cg, http, bearer=bearer).status_code for _ in range(4)] == [200, 200, 401, 401]
    assert get(cg, http, bearer=token(cg, http)).status_code == 200
    cg.revoke_tokens()
    assert get(cg, http, bearer=bearer).status_code == 401


def test_fault_fields_are_validated() -> None:
    with pytest.raises(ValueError):
        Fault(kind="explode")
    with pytest.raises(ValueError):
        Fault(kind="status", status=200)
    with pytest.raises(ValueError):
        Fault(times=0)


# -- seeded data -------------------------------------------------------------------------------------------


def test_seed_is_deterministic() -> None:
    spec = {"responses": 300, "days": 7, "accounts": 4, "invalid": 5, "non_responses": 10, "seed": 11}
    first, second = make_sandbox(**spec), make_sandbox(**spec)
    assert first.records == second.records
    assert make_sandbox(**dict(spec, seed=12)).records != first.records


def test_seed_spec_is_validated() -> None:
    with pytest.raises(ValueError):
        SeedSpec(end=date.today() + timedelta(days=2))  # survey data cannot lie in the future
    with pytest.raises(ValueError):
        SeedSpec(days=0)
    with pytest.raises(ValueError):
        SeedSpec(responses=-1)


def test_invalid_records_are_spread_through_the_feed(http: requests.Session) -> None:
    with make_sandbox(responses=200, invalid=10) as cg:
        records, _ = fetch_all(cg, http, per_page=1000)
        assert len(records) == 210
        problems = []
        for position, record in enumerate(records):
            nps = record.get("nps", "missing")
            if "number_customergauge" not in record:
                problems.append((position, "missing cgid"))
            elif not DATETIME.fullmatch(answered := record["date_survey_response"]) or answered[5:10] == "02-30":
                problems.append((position, "bad date"))
            elif nps == "missing" or not isinstance(nps, int) or not 0 <= nps <= 10:
                problems.append((position, f"nps {nps!r}"))
        assert len(problems) == 10
        assert Counter(kind.split(" ")[0] for _, kind in problems) == {"nps": 6, "missing": 2, "bad": 2}
        positions = [p for p, _ in problems]
        assert positions[0] < 30 and positions[-1] > 180  # spread, not bunched
        # a malformed response date never matches a period filter, but is served without one
        everything = {"period[field]": "date_survey_response", "period[start]": "2000-01-01", "period[end]": "2099-12-31"}
        filtered, _ = fetch_all(cg, http, per_page=1000, **everything)
        assert len(filtered) == 208


def test_seeded_data_is_realistically_messy() -> None:
    records = make_sandbox(responses=4000, days=30, accounts=12).records
    assert len(records) == 4000
    days = sorted({r["date_survey_response"][:10] for r in records})
    assert days[-1] == END.isoformat() and days[0] == (END - timedelta(days=29)).isoformat()
    for r in records[:500]:
        assert r["date_creation"] <= r["date_email_sent"] < r["date_survey_response"]
        assert r["date_order"] <= r["date_creation"] and r["date_order"].endswith("00:00:00")
        assert re.fullmatch(r"ORD-\d+", r["number_customer"])
    emails = [r.get("email") for r in records]
    missing = sum(1 for e in emails if not e)
    shouting = sum(1 for e in emails if e and e != e.lower())
    assert 0.01 < missing / 4000 < 0.06 and 0.05 < shouting / 4000 < 0.16
    comments = [r["comment"] for r in records]
    assert 0.33 < comments.count(None) / 4000 < 0.47
    assert any(c and len(c.encode()) > 5000 for c in comments)
    assert any(c and re.search(r"[\u3040-\u30ff\u0400-\u04ff\u0600-\u06ff]", c) for c in comments)
    scores = Counter(r["nps"] for r in records)
    assert sum(scores[s] for s in (8, 9, 10)) > 3 * sum(scores[s] for s in (0, 1, 2, 3))
    numbers_by_account: dict[str, set] = {}
    for r in records:
        props = {p["field"]: p["reference"] for p in r["properties"]}
        if "Account Number" in props:
            numbers_by_account.setdefault(r["account"]["name"], set()).add(props["Account Number"])
        assert len(r["drivers"]) <= 3
    assert len(numbers_by_account) == 12
    assert all(len(numbers - {None}) == 1 for numbers in numbers_by_account.values())
    fields = Counter(p["field"] for r in records for p in r["properties"])
    assert {"Touchpoint", "Country", "Language", "Channel", "Segment", "Product", "Survey ID", "Case Link"} <= set(fields)
    assert any(p["reference"] is None for r in records for p in r["properties"])


# -- emulator-only HTTP controls and the command line ----------------------------------------------------


def test_control_endpoints(cg: CustomerGaugeSandbox, http: requests.Session) -> None:
    control = cg.base_url + "/_sandbox"
    before = len(cg.records)
    added = http.post(control + "/responses", json={"count": 2, "responded_at": "2026-11-14 09:30:00"}).json()["ids"]
    assert len(cg.records) == before + 2 and cg.records[-1]["number_customergauge"] == added[-1]
    edited = http.post(f"{control}/responses/{added[0]}", json={"comment": "via curl"})
    assert edited.status_code == 200 and cg.records[-1]["comment"] == "via curl"
    assert http.post(f"{control}/responses/1", json={"comment": "x"}).status_code == 404
    assert http.post(control + "/responses", json={"count": "two"}).status_code == 400

    bearer = token(cg, http)
    assert http.post(control + "/faults", json={"kind": "status", "status": 504, "path": RESPONSES}).status_code == 201
    assert http.post(control + "/faults", json={"kind": "boom"}).status_code == 400
    assert http.post(control + "/faults", json={"kind": "drop", "path": NON_RESPONSES}).status_code == 201
    assert [f["kind"] for f in http.get(control + "/faults").json()["faults"]] == ["status", "drop"]
    assert http.delete(control + "/faults").json() == {"faults": []} and cg.pending_faults() == []
    assert http.post(control + "/faults", json={"kind": "status", "status": 504, "path": RESPONSES}).status_code == 201
    assert get(cg, http, bearer=bearer).status_code == 504
    assert http.post(control + "/tokens/revoke").status_code == 200
    assert get(cg, http, bearer=bearer).status_code == 401
    assert http.get(control + "/requests").json() == {
        "counts": {"/oauth2/token": 1, RESPONSES: 2},
        "total": 3,
    }
    assert http.delete(control + "/requests").status_code == 200
    assert cg.count() == 0


def test_command_line_serves_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "customergauge", "--port", "0", "--client-id", CLIENT_ID,
         "--client-secret", CLIENT_SECRET, "--responses", "30", "--invalid", "1", "--token-lifetime", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        match = re.fullmatch(
            r"CustomerGauge sandbox serving at (http://127\.0\.0\.1:\d+) \(token URL (\S+)\)\n", line
        )
        assert match, line
        base_url, token_url = match.groups()
        assert token_url == base_url + "/oauth2/token"
        credentials = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        grant = requests.post(token_url, params=credentials)
        assert grant.json()["expires_in"] == 60
        page = requests.get(base_url + RESPONSES, headers={"Authorization": f"Bearer {grant.json()['access_token']}"})
        assert len(page.json()["data"]) == 31
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_people_pool_makes_respondents_repeat():
    from sandbox.customergauge.data import RecordFactory

    responses, _ = RecordFactory(SeedSpec(responses=3000, accounts=20, people=150)).seed()
    emails = [r["email"].lower() for r in responses if r.get("email")]
    assert len(set(emails)) <= 150 and len(emails) > 2500
    with pytest.raises(ValueError):
        SeedSpec(accounts=20, people=10)  # fewer people than accounts


@pytest.mark.parametrize("seconds_later", [20, 95])
def test_fresh_responses_do_not_depend_on_how_long_after_the_seed_they_are_made(monkeypatch, seconds_later):
    """The demo's second pass created 25 or 26 records from run to run: the draw of the new responses'
    times consumed more or less randomness depending on the time since the seed, shifting every
    account drawn after it. Only their times may differ now."""
    from sandbox.customergauge import data

    seeded_at = datetime(2026, 12, 2, 11, 0, tzinfo=timezone.utc)

    def accounts_of_fresh(after: int) -> list[str]:
        monkeypatch.setattr(data, "_utc_now", lambda: seeded_at)
        factory = data.RecordFactory(SeedSpec(responses=50, accounts=40, seed=5))
        monkeypatch.setattr(data, "_utc_now", lambda: seeded_at + timedelta(seconds=after))
        return [record["account"]["name"] for record in factory.fresh_responses(25)]

    assert accounts_of_fresh(seconds_later) == accounts_of_fresh(1)
