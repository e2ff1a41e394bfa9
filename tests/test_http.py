"""The shared HTTP base (connector_common.http) through both vendor clients and a minimal vendor of
its own, over real HTTP to the sandboxes: Retry-After in both forms, redaction, the classification
hook. Waits go to a recording sleep, so nothing here depends on how long anything takes."""

from __future__ import annotations

import logging

import pytest

from connector_common.first_contact import Setting
from connector_common.http import Answer, Call, RetryPolicy, Transient, Vendor, VendorClient
from destinations.gainsight.client import GainsightClient
from destinations.gainsight.errors import (
    GainsightRejected,
    GainsightSettingError,
)
from destinations.gainsight.quota import QuotaLimiter
from destinations.gainsight.settings import GainsightSettings, QuotaLimits
from sources.customergauge.auth import ClientCredentials
from sources.customergauge.client import CustomerGaugeClient
from sources.customergauge.errors import ApiUnavailable, RequestRejected
from sources.customergauge.settings import RESPONSES_PATH

from .conftest import ACCESS_KEY, CLIENT_ID, CLIENT_SECRET, NO_CLIENT_QUOTAS
from .test_gainsight_units import FakeClock

QUERY = "/v1/data/objects/query/"
FORMS = pytest.mark.parametrize("as_date", [False, True], ids=["delta-seconds", "http-date"])


def cg_client(sandbox, slept: list[float], **policy) -> CustomerGaugeClient:
    return CustomerGaugeClient(
        sandbox.base_url,
        sandbox.token_url,
        ClientCredentials(CLIENT_ID, CLIENT_SECRET),
        RetryPolicy(backoff=0.01, **policy),
        sleep=slept.append,
    )


def gs_client(gs, clock: FakeClock, **overrides) -> GainsightClient:
    settings = GainsightSettings(
        base_url=gs.base_url, access_key=ACCESS_KEY, timeline_author_email="nps.connector@example.com", **overrides
    )
    limiter = QuotaLimiter(QuotaLimits(**NO_CLIENT_QUOTAS), None, settings.max_rate_limit_wait_seconds, clock, clock.sleep)
    return GainsightClient(settings, limiter, sleep=clock.sleep)


# --- Retry-After: delta-seconds and HTTP-date, in both clients ----------------------------------


@FORMS
def test_customergauge_waits_as_retry_after_says(cg_sandbox, as_date):
    sandbox = cg_sandbox(responses=5)
    sandbox.add_fault(kind="status", status=429, retry_after=7, retry_after_date=as_date, path=RESPONSES_PATH)
    slept: list[float] = []
    client = cg_client(sandbox, slept)

    assert b'"data"' in client.get_page(RESPONSES_PATH, [])

    assert slept == [7.0] and client.stats.retries == 1
    assert sandbox.count(path=RESPONSES_PATH, status=429) == 1


@FORMS
def test_customergauge_stops_at_once_when_retry_after_is_too_long(cg_sandbox, as_date):
    sandbox = cg_sandbox(responses=5)
    sandbox.add_fault(kind="status", status=429, retry_after=3600, retry_after_date=as_date, path=RESPONSES_PATH)
    slept: list[float] = []
    client = cg_client(sandbox, slept, max_wait=5)

    with pytest.raises(ApiUnavailable, match="asks to wait 3600 s .*longer than the 5 s"):
        client.get_page(RESPONSES_PATH, [])

    assert slept == [] and sandbox.count(path=RESPONSES_PATH) == 1


@FORMS
@pytest.mark.parametrize("status", [429, 503])
def test_gainsight_waits_as_retry_after_says(gs_sandbox, as_date, status):
    gs = gs_sandbox()
    gs.add_fault(path=QUERY, status=status, retry_after=7, retry_after_date=as_date)
    clock = FakeClock(1_800_000_030.0)
    client = gs_client(gs, clock)

    assert client.query("Company", ["Name"]) == []

    assert clock.slept == [7.0] and client.stats.retries == 1
    assert client.stats.rate_limited == (1 if status == 429 else 0)


@FORMS
def test_gainsight_rate_limit_longer_than_allowed_waits_for_the_window_instead(gs_sandbox, as_date):
    gs = gs_sandbox()
    gs.add_fault(path=QUERY, status=429, retry_after=3600, retry_after_date=as_date)
    clock = FakeClock(1_800_000_030.0)  # 30 s before the minute window rolls
    client = gs_client(gs, clock)

    assert client.query("Company", ["Name"]) == []

    assert len(clock.slept) == 1 and 29.9 <= clock.slept[0] <= 30.5


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "120"}, 120.0),
        ({"Retry-After": "Sun, 06 Nov 1994 08:51:37 GMT", "Date": "Sun, 06 Nov 1994 08:49:37 GMT"}, 120.0),
        ({"Retry-After": "Sunday, 06-Nov-94 08:51:37 GMT", "Date": "Sun, 06 Nov 1994 08:49:37 GMT"}, 120.0),
        ({"Retry-After": "Sun Nov  6 08:51:37 1994", "Date": "Sun, 06 Nov 1994 08:49:37 GMT"}, 120.0),
        ({"Retry-After": "Sun, 06 Nov 1994 08:51:37 GMT"}, 0.0),  # no Date: against the clock, long past
        ({"Retry-After": "Sun, 06 Nov 1994 08:48:37 GMT", "Date": "Sun, 06 Nov 1994 08:49:37 GMT"}, 0.0),
        ({"Retry-After": "1.5"}, None),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
    ids=["seconds", "imf-fixdate", "rfc850", "asctime", "date-without-Date", "date-in-the-past", "fraction", "junk", "none"],
)
def test_retry_after_reads_both_rfc_9110_forms(headers, seconds):
    assert Answer(429, headers, b"").retry_after() == seconds


# --- redaction ------------------------------------------------------------------------------------


def connector_lines(caplog) -> str:
    """Every line the connector logged. (urllib3's DEBUG request lines show the URL path, which
    carries a secret only in these tests' contrived paths: credentials travel in headers and bodies.)"""
    return "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("nps."))


def test_customergauge_never_shows_its_secret_even_when_echoed(cg_sandbox, caplog):
    sandbox = cg_sandbox(responses=5)
    client = cg_client(sandbox, [])
    client.get_page(RESPONSES_PATH, [])  # first contact made: a 404 is now the request's fault
    echoed = f"/v7/rest/sync/{CLIENT_SECRET}"  # e.g. a secret pasted into the wrong setting
    sandbox.add_fault(kind="status", status=503, path=echoed)

    with caplog.at_level(logging.DEBUG), pytest.raises(RequestRejected) as raised:
        client.get_page(echoed, [])

    assert "HTTP 404" in str(raised.value) and "/v7/rest/sync/***" in str(raised.value)
    assert "retry 1/5" in caplog.text  # the 503 was logged, redacted
    assert CLIENT_SECRET not in str(raised.value) + connector_lines(caplog)


def test_gainsight_never_shows_its_key_even_when_echoed(gs_sandbox, caplog):
    gs = gs_sandbox()
    gs.add_fault(path=QUERY, status=503)
    client = gs_client(gs, FakeClock(1_800_000_030.0), retry_backoff_seconds=0.01)

    with caplog.at_level(logging.DEBUG), pytest.raises(GainsightSettingError) as raised:
        client.query(ACCESS_KEY, ["Name"])  # an object "named" like the access key: Gainsight echoes it

    assert "/v1/data/objects/query/***" in str(raised.value) and "retry 1/4" in caplog.text
    assert ACCESS_KEY not in str(raised.value) + connector_lines(caplog)


def test_gainsight_rejection_keeps_no_secret_in_its_description(gs_sandbox):
    gs = gs_sandbox()
    gs.add_fault(path=QUERY, kind="result_false", error_code=ACCESS_KEY)
    client = gs_client(gs, FakeClock(1_800_000_030.0))
    with pytest.raises(GainsightRejected) as raised:
        client.query("Company", ["Name"])
    assert ACCESS_KEY not in str(raised.value) + str(raised.value.code) + raised.value.reason


# --- the classification hook, through a vendor of the test's own -----------------------------------

ENDPOINT = Setting("tests.vendor.base_url", "TESTS__VENDOR__BASE_URL")


class VendorDown(Exception):
    pass


class VendorSetting(Exception):
    pass


class WriteLost(Exception):
    pass


class ConflictRetrying(VendorClient[Call]):
    """A vendor whose 409 means "busy, try again" and whose lost writes must be reconciled."""

    vendor = Vendor("Testvendor", VendorSetting, VendorDown, "nothing to resume")

    def classify(self, call: Call, answer: Answer) -> Answer:
        if answer.status == 409:
            raise Transient(f"busy on {call}", 0.0)
        return super().classify(call, answer)

    def unanswered(self, call: Call, reason: str) -> Exception:
        return WriteLost(reason)


def vendor_client(slept: list[float]) -> ConflictRetrying:
    return ConflictRetrying(RetryPolicy(max_attempts=4, backoff=0.01), logging.getLogger("tests.vendor"), sleep=slept.append)


def test_the_vendor_decides_what_is_transient(cg_sandbox):
    sandbox = cg_sandbox(responses=1)
    sandbox.add_fault(kind="status", status=409, path=RESPONSES_PATH, times=2)
    slept: list[float] = []
    client = vendor_client(slept)

    answer = client.send(Call("GET", sandbox.base_url + RESPONSES_PATH, "page", ENDPOINT))

    assert answer.status == 401  # no bearer: not the hook's to judge, so the caller gets it
    assert slept == [0.0, 0.0] and client.stats.retries == 2 and client.stats.calls == {"page": 3}


def test_unclassified_server_errors_are_retried_until_the_budget_is_spent(cg_sandbox):
    sandbox = cg_sandbox(responses=1)
    sandbox.add_fault(kind="status", status=502, path=RESPONSES_PATH, times=10)
    client = vendor_client([])
    with pytest.raises(VendorDown, match="Testvendor still failing after 4 attempts: HTTP 502 on GET"):
        client.send(Call("GET", sandbox.base_url + RESPONSES_PATH, "page", ENDPOINT))
    assert sandbox.count(path=RESPONSES_PATH, status=502) == 4


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_lost_answer_is_retried_only_for_a_call_safe_to_repeat(cg_sandbox, idempotent):
    sandbox = cg_sandbox(responses=1)
    client = vendor_client([])
    grant = ClientCredentials(CLIENT_ID, CLIENT_SECRET).grant_form()
    call = Call("POST", sandbox.token_url, "token", ENDPOINT, idempotent=idempotent, data=grant)
    assert client.send(call).status == 200
    sandbox.add_fault(kind="drop", path="/oauth2/token")

    if idempotent:
        assert client.send(call).status == 200 and client.stats.retries == 1
    else:
        with pytest.raises(WriteLost, match="on POST /oauth2/token"):
            client.send(call)
        assert client.stats.retries == 0
    assert sandbox.count(path="/oauth2/token") == 3 if idempotent else 2


def test_a_404_before_any_success_names_the_setting(cg_sandbox):
    sandbox = cg_sandbox(responses=1)
    client = vendor_client([])
    with pytest.raises(VendorSetting, match=r"answered 404 Not Found for /nowhere.*TESTS__VENDOR__BASE_URL"):
        client.send(Call("GET", sandbox.base_url + "/nowhere", "page", ENDPOINT))
    assert client.stats.calls == {"page": 1}
