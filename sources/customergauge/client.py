"""The one place that sends HTTP to CustomerGauge.

Everything the operator needs to trust about the wire lives here: token handling (renew before
expiry, once more on 401), the retry policy (429/5xx/dropped connections with backoff, honouring
`Retry-After`), classification of failures into the error classes of `errors.py` (a TLS, DNS,
refused-connection or 404 failure before a URL has answered once is an `InvalidSetting` naming
the host and setting, see `connector_common.first_contact`), and call counting for the run
summary. Secrets never enter log lines or exception messages: credentials go in the form body,
tokens in a header, and messages only name the method and path.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

import requests
import tenacity
import urllib3

from connector_common.first_contact import FirstContact
from connector_common.stop import STOP
from connector_common.tokens import TokenCache

from .auth import ClientCredentials
from .errors import ApiUnavailable, CredentialsRejected, InvalidSetting, RequestRejected
from .settings import API_BASE_URL, TOKEN_URL

log = logging.getLogger("nps.customergauge")

USER_AGENT = "cg-gainsight-nps/0.1 (+dlt)"


@dataclass
class RetryPolicy:
    """How hard to try before giving up on one request.

    `max_wait` caps any single wait: if CustomerGauge asks (via `Retry-After`) for a longer pause
    than that, the run stops with `ApiUnavailable` instead of sleeping, and the next scheduled run
    resumes from the same cursor.
    """

    max_attempts: int = 6
    backoff: float = 1.0  # first wait in seconds; doubles each retry, with jitter
    max_wait: float = 120.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0


@dataclass(frozen=True)
class Answer:
    """Status, headers and the whole body of one HTTP response."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class CallStats:
    calls: int = 0  # HTTP requests actually sent, retries included
    retries: int = 0
    pages: int = 0


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class CustomerGaugeClient:
    """Authenticated, retrying access to the v7 REST API."""

    def __init__(
        self,
        api_base_url: str,
        token_url: str,
        credentials: ClientCredentials,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ):
        self.api_base_url = api_base_url.rstrip("/")
        self.token_url = token_url
        self.retry = retry or RetryPolicy()
        self.stats = CallStats()
        self._credentials = credentials
        self._session = session or requests.Session()
        # JSON on every request, token included: an API gateway may otherwise pick an HTML error page.
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._tokens = TokenCache(self._request_token)
        self._contact = FirstContact("CustomerGauge")

    @property
    def token_grants(self) -> int:
        return self._tokens.grants

    def authenticate(self) -> None:
        """Get an access token now (raises `CredentialsRejected`): `check` proves the secret with it."""
        self._tokens.get()

    def get_page(self, path: str, params: Sequence[tuple[str, str]]) -> bytes:
        """GET one page and return its raw JSON body (parsing is the caller's hot path).

        A 401 gets one token renewal and one more try: tokens expire or get revoked mid-run.
        """
        url = self.api_base_url + path
        for renewed in (False, True):
            headers = {"Authorization": f"Bearer {self._tokens.get()}"}
            response = self._send("GET", url, params=list(params), headers=headers)
            if response.status == 401 and not renewed:
                log.info("CustomerGauge answered 401 on GET %s: renewing the access token", path)
                self._tokens.invalidate()
                continue
            break
        if response.status == 401:
            raise CredentialsRejected(
                f"CustomerGauge refused a freshly issued access token on GET {path} (HTTP 401): "
                "the Connected App may lack access to this endpoint"
            )
        if response.status != 200:
            raise _rejection("GET", path, response)
        self.stats.pages += 1
        return response.body

    def close(self) -> None:
        self._session.close()

    # --- internals -------------------------------------------------------------------------

    def _request_token(self) -> dict[str, Any]:
        response = self._send("POST", self.token_url, data=self._credentials.grant_form())
        if response.status == 200:
            body = response.json()
            if not isinstance(body, dict) or not body.get("access_token"):
                raise RequestRejected(
                    f"CustomerGauge token endpoint {self.token_url} answered 200 without an "
                    "access_token",
                    response.status,
                )
            return body
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if response.status in (400, 401) and error in (None, "invalid_client", "unauthorized_client"):
            raise CredentialsRejected(
                f"CustomerGauge token endpoint {self.token_url} rejected the client credentials "
                f"(HTTP {response.status}, {error or 'no error code'})"
            )
        raise _rejection("POST", urlsplit(self.token_url).path, response)

    def _send(self, method: str, url: str, **kwargs: Any) -> Answer:
        policy = self.retry
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=tenacity.stop_after_attempt(policy.max_attempts) | _stop_on_long_retry_after(policy),
            wait=_wait(policy),
            sleep=STOP.wait,  # a stop requested during the backoff ends it at once
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._attempt, method, url, **kwargs)
        except _Transient as exc:
            if exc.retry_after is not None and exc.retry_after > policy.max_wait:
                raise ApiUnavailable(
                    f"CustomerGauge is rate limiting ({exc.reason}) and asks to wait "
                    f"{exc.retry_after:.0f} s, longer than the {policy.max_wait:.0f} s this run "
                    "will wait; the next scheduled run resumes from the same cursor"
                ) from None
            raise ApiUnavailable(
                f"CustomerGauge still failing after {policy.max_attempts} attempts: {exc.reason}"
            ) from None

    def _attempt(self, method: str, url: str, **kwargs: Any) -> Answer:
        """One request, body included: a connection dropped mid-body is as transient as a 503."""
        path = urlsplit(url).path
        STOP.check()  # before sending, so nothing is in flight when the run stops
        setting = TOKEN_URL if url == self.token_url else API_BASE_URL
        self.stats.calls += 1
        try:
            with self._session.request(
                method,
                url,
                timeout=(self.retry.connect_timeout, self.retry.read_timeout),
                stream=True,
                **kwargs,
            ) as response:
                # One read of the whole body: requests' default 10 KB chunking costs more than
                # the transfer on a fast link.
                answer = Answer(response.status_code, response.headers, response.raw.read(decode_content=True))
        except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as exc:
            problem = self._contact.connection_problem(url, exc, setting)
            if problem:
                raise InvalidSetting(problem) from None
            raise _Transient(f"{type(exc).__name__} on {method} {path}") from None
        problem = self._contact.status_problem(url, answer.status, setting)
        if problem:
            raise InvalidSetting(problem)
        if answer.status < 300:
            self._contact.succeeded(setting)
        if answer.status == 429 or answer.status >= 500:
            raise _Transient(
                f"HTTP {answer.status} on {method} {path}",
                _parse_retry_after(answer.headers.get("Retry-After")),
            )
        return answer

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        reason = exc.reason if isinstance(exc, _Transient) else repr(exc)
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "CustomerGauge %s; retry %d/%d in %.1f s",
            reason,
            state.attempt_number,
            self.retry.max_attempts - 1,
            wait,
        )


def _wait(policy: RetryPolicy) -> Any:
    """Honour `Retry-After` when the server sends one; otherwise exponential backoff with jitter."""

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, policy.max_wait)
        base = policy.backoff * (2 ** (state.attempt_number - 1))
        return min(policy.max_wait, base * random.uniform(0.8, 1.2))

    return wait


def _stop_on_long_retry_after(policy: RetryPolicy) -> tenacity.stop.stop_base:
    """Stop at once when the server asks for a pause longer than we are willing to sleep."""

    class _Stop(tenacity.stop.stop_base):
        def __call__(self, state: tenacity.RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            return isinstance(exc, _Transient) and (exc.retry_after or 0) > policy.max_wait

    return _Stop()


def _parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _rejection(method: str, path: str, response: Answer) -> RequestRejected:
    """Turn a non-retryable answer into an error naming what CustomerGauge objected to."""
    body = response.json()
    message = body.get("message") if isinstance(body, dict) else None
    errors = body.get("errors") if isinstance(body, dict) and isinstance(body.get("errors"), dict) else {}
    details = "; ".join(f"{key}: {' '.join(map(str, msgs))}" for key, msgs in errors.items())
    text = f"CustomerGauge rejected {method} {path} with HTTP {response.status}"
    if message:
        text += f": {message}"
    if details:
        text += f" ({details})"
    return RequestRejected(text, response.status, errors)
