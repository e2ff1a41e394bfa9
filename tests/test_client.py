"""The CustomerGauge HTTP choke point against the sandbox: auth, retries, error envelopes."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from sources.customergauge.auth import ClientCredentials
from sources.customergauge.client import CustomerGaugeClient, RetryPolicy
from sources.customergauge.errors import ApiUnavailable, CredentialsRejected, InvalidSetting, RequestRejected
from sources.customergauge.settings import RESPONSES_PATH

from .conftest import CLIENT_ID, CLIENT_SECRET


def client_for(sandbox, secret: str = CLIENT_SECRET, sleep: Callable[[float], None] | None = None, **policy) -> CustomerGaugeClient:
    """`sleep`: where the client's waits go (its injected clock), instead of really sleeping."""
    return CustomerGaugeClient(
        sandbox.base_url,
        sandbox.token_url,
        ClientCredentials(CLIENT_ID, secret),
        RetryPolicy(backoff=0.01, **policy),
        **({"sleep": sleep} if sleep is not None else {}),
    )


def test_token_is_reused_across_pages(cg_sandbox):
    sandbox = cg_sandbox(responses=30)
    client = client_for(sandbox)
    for _ in range(3):
        client.get_page(RESPONSES_PATH, [("per_page", "10")])
    assert client.token_grants == 1 and sandbox.token_requests == 1


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ([("per_page", "1001")], "per_page"),
        ([("per_page", "0")], "per_page"),
        ([("cursor", "-4")], "cursor"),
        ([("with[]", "segments")], "with"),
        ([("period[field]", "date_survey_response")], "period"),
    ],
)
def test_422_becomes_a_request_rejected_naming_the_parameter(cg_sandbox, params, param):
    client = client_for(cg_sandbox(responses=5))
    with pytest.raises(RequestRejected) as caught:
        client.get_page(RESPONSES_PATH, params)
    assert caught.value.status == 422
    assert any(key.startswith(param) for key in caught.value.errors)
    assert "HTTP 422" in str(caught.value) and param in str(caught.value)


def test_bad_credentials_are_reported_without_the_secret(cg_sandbox, caplog):
    client = client_for(cg_sandbox(responses=5), secret="definitely-wrong-secret")
    with caplog.at_level(logging.DEBUG), pytest.raises(CredentialsRejected) as caught:
        client.get_page(RESPONSES_PATH, [])
    assert "invalid_client" in str(caught.value)
    assert "definitely-wrong-secret" not in str(caught.value) + caplog.text


def test_retry_after_is_honoured_and_logged(cg_sandbox, caplog):
    sandbox = cg_sandbox(responses=5)
    sandbox.add_fault(kind="status", status=429, retry_after=1, path=RESPONSES_PATH)
    waits: list[float] = []
    client = client_for(sandbox, sleep=waits.append)
    with caplog.at_level(logging.WARNING):
        client.get_page(RESPONSES_PATH, [])
    assert client.stats.retries == 1
    assert waits == [1.0]  # the wait the server asked for, not the 0.01 s backoff
    assert "HTTP 429 on GET /v7/rest/sync/responses; retry 1/5 in 1.0 s" in caplog.text


def test_dropped_connection_then_success(cg_sandbox):
    sandbox = cg_sandbox(responses=5)
    sandbox.add_fault(kind="drop", path=RESPONSES_PATH, times=2)
    client = client_for(sandbox)
    body = client.get_page(RESPONSES_PATH, [])
    assert b'"data"' in body
    assert client.stats.retries == 2 and client.stats.total == 4  # token + 3 page attempts


def test_persistent_5xx_gives_up_after_the_budget(cg_sandbox):
    sandbox = cg_sandbox(responses=5)
    sandbox.add_fault(kind="status", status=502, path=RESPONSES_PATH, times=10)
    client = client_for(sandbox, max_attempts=4)
    with pytest.raises(ApiUnavailable, match="after 4 attempts: HTTP 502"):
        client.get_page(RESPONSES_PATH, [])
    assert sandbox.count(path=RESPONSES_PATH, status=502) == 4


def test_unreachable_host_on_first_contact_is_a_setting_error_not_retried():
    client = CustomerGaugeClient(
        "http://127.0.0.1:9", "http://127.0.0.1:9/oauth2/token", ClientCredentials("a", "b"), RetryPolicy(max_attempts=3, backoff=0.01)
    )
    with pytest.raises(InvalidSetting, match=r"127\.0\.0\.1:9 refused the connection.*SOURCES__CUSTOMERGAUGE__TOKEN_URL"):
        client.get_page(RESPONSES_PATH, [])
    assert client.stats.total == 1


def test_host_lost_after_first_contact_is_retried_then_api_unavailable(cg_sandbox):
    sandbox = cg_sandbox(responses=5)
    client = client_for(sandbox, max_attempts=2)
    client.get_page(RESPONSES_PATH, [])
    sandbox.__exit__(None, None, None)
    calls = client.stats.total
    with pytest.raises(ApiUnavailable, match="ConnectionError on GET"):
        client.get_page(RESPONSES_PATH, [])
    assert client.stats.total == calls + 2
