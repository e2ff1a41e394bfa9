"""The one place that sends HTTP to CustomerGauge: its auth and its error envelope.

The wire itself (retries of 429/5xx/dropped connections with backoff honouring `Retry-After`,
timeouts, first-contact setting errors, call counting, redaction) is `connector_common.http`'s.
Here: the OAuth2 client-credentials grant (renewed before expiry, once more on a 401) and turning
CustomerGauge's answers into the error classes of `errors.py`. Credentials travel in the form
body and tokens in a header; both are redacted from every message and log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import requests

from connector_common.http import Answer, Call, RetryPolicy, Vendor, VendorClient
from connector_common.stop import STOP
from connector_common.tokens import TokenCache

from .auth import ClientCredentials
from .errors import ApiUnavailable, CredentialsRejected, InvalidSetting, RequestRejected
from .settings import API_BASE_URL, TOKEN_URL

log = logging.getLogger("nps.customergauge")


class CustomerGaugeClient(VendorClient[Call]):
    """Authenticated, retrying access to the v7 REST API."""

    vendor = Vendor("CustomerGauge", InvalidSetting, ApiUnavailable, "the next scheduled run resumes from the same cursor")

    def __init__(
        self,
        api_base_url: str,
        token_url: str,
        credentials: ClientCredentials,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = STOP.wait,
    ):
        super().__init__(retry or RetryPolicy(), log, session, sleep)
        self.api_base_url = api_base_url.rstrip("/")
        self.token_url = token_url
        self._credentials = credentials
        self.redact.keep(credentials.client_secret)
        self._tokens = TokenCache(self._request_token)

    @property
    def token_grants(self) -> int:
        return self._tokens.grants

    def authenticate(self) -> None:
        """Get an access token now (raises `CredentialsRejected`): `check` proves the secret with it."""
        with self.redacting():
            self._tokens.get()

    def get_page(self, path: str, params: Sequence[tuple[str, str]]) -> bytes:
        """GET one page and return its raw JSON body (parsing is the caller's hot path).

        A 401 gets one token renewal and one more try: tokens expire or get revoked mid-run.
        """
        with self.redacting():
            for renewed in (False, True):
                headers = {"Authorization": f"Bearer {self._tokens.get()}"}
                call = Call("GET", self.api_base_url + path, "page", API_BASE_URL, params=list(params), headers=headers)
                answer = self.send(call)
                if answer.status == 401 and not renewed:
                    self.log.info("CustomerGauge answered 401 on GET %s: renewing the access token", path)
                    self._tokens.invalidate()
                    continue
                break
            if answer.status == 401:
                raise CredentialsRejected(
                    f"CustomerGauge refused a freshly issued access token on GET {path} (HTTP 401): "
                    "the Connected App may lack access to this endpoint"
                )
            if answer.status != 200:
                raise _rejection(call, answer)
            return answer.body

    def _request_token(self) -> dict[str, Any]:
        call = Call("POST", self.token_url, "token", TOKEN_URL, data=self._credentials.grant_form())
        answer = self.send(call)
        body = answer.json()
        if answer.status == 200:
            if not isinstance(body, dict) or not body.get("access_token"):
                raise RequestRejected(
                    f"CustomerGauge token endpoint {self.token_url} answered 200 without an access_token",
                    answer.status,
                )
            self.redact.keep(str(body["access_token"]))
            return body
        error = body.get("error") if isinstance(body, dict) else None
        if answer.status in (400, 401) and error in (None, "invalid_client", "unauthorized_client"):
            raise CredentialsRejected(
                f"CustomerGauge token endpoint {self.token_url} rejected the client credentials "
                f"(HTTP {answer.status}, {error or 'no error code'})"
            )
        raise _rejection(call, answer)


def _rejection(call: Call, answer: Answer) -> RequestRejected:
    """Turn a non-retryable answer into an error naming what CustomerGauge objected to (Laravel's
    `message` and per-parameter `errors`)."""
    body = answer.json()
    message = body.get("message") if isinstance(body, dict) else None
    errors: dict[str, Any] = body["errors"] if isinstance(body, dict) and isinstance(body.get("errors"), dict) else {}
    details = "; ".join(f"{key}: {' '.join(map(str, msgs))}" for key, msgs in errors.items())
    text = f"CustomerGauge rejected {call} with HTTP {answer.status}"
    if message:
        text += f": {message}"
    if details:
        text += f" ({details})"
    return RequestRejected(text, answer.status, errors)
