"""One HTTP base for the vendor clients: what every call to CustomerGauge or Gainsight goes through.

Both vendors need the same things from the wire, and an operator should only have to trust them
once: a session that asks for JSON and names the connector, timeouts on connect and read, retries
of transient failures with jittered backoff (tenacity) that honour `Retry-After` in both of its
RFC 9110 forms (delta-seconds or an HTTP-date), call statistics for the run summary, the
first-contact rule of `connector_common.first_contact` (a wrong host or path is a setting error,
not a flaky network), and redaction: no credential or token a client knows ever leaves it in an
exception message or a log line, even when a server echoes one back.

A vendor client subclasses `VendorClient` and adds only what differs: its auth headers
(`before_send`), how its answers are classified (`classify`: which are transient, which are its
own errors) and what a lost answer means for a call that is not safe to repeat (`unanswered`).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import quote, quote_plus, urlsplit

import requests
import tenacity
import urllib3

from .first_contact import FirstContact, Setting
from .stop import STOP

USER_AGENT = "cg-gainsight-nps/0.1 (+dlt)"
REDACTED = "***"
# Shorter values are no real credential (the settings refuse placeholders) and would blank out
# ordinary words if redacted.
MIN_SECRET_LENGTH = 4


@dataclass
class RetryPolicy:
    """How hard to try before giving up on one call.

    `max_wait` caps the backoff; a server asking (via `Retry-After`) for a longer pause than that
    is not slept through: the vendor client gives up at once, and a later run resumes.
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
        """The body as JSON, or None when it is empty or not JSON (an HTML error page, say)."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def retry_after(self) -> float | None:
        """Seconds the server asks to wait, from `Retry-After` (RFC 9110 §10.2.3), or None.

        The header is delta-seconds or an HTTP-date. A date is read against the answer's own `Date`
        header when there is one, so a skewed local clock does not stretch or cancel the wait; the
        local clock is the fallback. A malformed value counts as absent.
        """
        value = (self.headers.get("Retry-After") or "").strip()
        if not value:
            return None
        if value.isdigit():
            return float(value)
        when = http_date(value)
        if when is None:
            return None
        now = http_date(self.headers.get("Date") or "")
        return max(0.0, when - (now if now is not None else time.time()))


def http_date(value: str) -> float | None:
    """Epoch seconds of an HTTP-date in any of the three formats RFC 9110 §5.6.7 makes recipients
    accept (IMF-fixdate, RFC 850, asctime; all GMT), or None."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)  # asctime carries no zone and means GMT
    return parsed.timestamp()


@dataclass
class CallStats:
    """What the run summary reports about the wire."""

    calls: dict[str, int] = field(default_factory=dict)  # endpoint family -> requests sent, retries included
    retries: int = 0
    rate_limited: int = 0

    def count(self, family: str) -> None:
        self.calls[family] = self.calls.get(family, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@dataclass
class Call:
    """One logical call: what to send, where it is configured, and whether it is safe to repeat."""

    method: str
    url: str
    family: str  # the endpoint family counted in `CallStats`
    setting: Setting  # the config key holding the URL, named when the first contact fails
    idempotent: bool = True  # False: a lost answer is `unanswered`, never blindly re-sent
    params: Any = None
    data: Any = None  # bytes, a form dict, or a stream (rewound before every attempt)
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None  # HTTP Basic, for token grants

    def __str__(self) -> str:
        return f"{self.method} {urlsplit(self.url).path}"


class Transient(Exception):
    """A failure another attempt may cure; `wait` is the pause the server or the vendor asked for."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class Redactor:
    """The secrets one client knows, and their removal from any text."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def keep(self, *values: str | None) -> None:
        """Remember credentials and tokens (and their URL-encoded forms) to redact them from now on."""
        kept = set(self._secrets)
        for value in values:
            if value and len(value) >= MIN_SECRET_LENGTH:
                kept |= {value, quote(value, safe=""), quote_plus(value)}
        # A new list, swapped in whole: another thread may be redacting with the old one right now.
        # Longest first, so a secret containing another is replaced as a whole.
        self._secrets = sorted(kept, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def scrub(self, exc: BaseException) -> None:
        """Redact an exception's message and its text attributes (e.g. a vendor's error description)."""
        exc.args = tuple(self(arg) if isinstance(arg, str) else arg for arg in exc.args)
        for name, value in vars(exc).items():
            if isinstance(value, str):
                setattr(exc, name, self(value))


class RedactingLog:
    """A vendor's logger whose lines pass through the client's redactor, arguments included."""

    def __init__(self, logger: logging.Logger, redact: Redactor) -> None:
        self.logger = logger
        self._redact = redact

    def info(self, msg: str, *args: object) -> None:
        self._log(logging.INFO, msg, args)

    def warning(self, msg: str, *args: object) -> None:
        self._log(logging.WARNING, msg, args)

    def _log(self, level: int, msg: str, args: tuple[object, ...]) -> None:
        if self.logger.isEnabledFor(level):
            # stacklevel 3: the record names the line that logged, not this class
            self.logger.log(level, self._redact(msg % args if args else msg), stacklevel=3)


@dataclass(frozen=True)
class Vendor:
    """Who answers, as a client's messages name it, and the errors the client raises for it."""

    name: str  # as operators know it: "CustomerGauge", "Gainsight"
    setting_error: type[Exception]  # a wrong host or path: configuration, never retried
    unavailable: type[Exception]  # transient failures outlasted the policy
    resume_hint: str  # what becomes of the work when the client gives up


C = TypeVar("C", bound=Call)


class VendorClient(Generic[C]):
    """Session, timeouts, retries, first contact, statistics and redaction for one vendor's API."""

    vendor: ClassVar[Vendor]

    def __init__(
        self,
        policy: RetryPolicy,
        logger: logging.Logger,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = STOP.wait,  # a stop requested during a backoff ends it at once
    ) -> None:
        self.policy = policy
        self.stats = CallStats()
        self.redact = Redactor()
        self.log = RedactingLog(logger, self.redact)
        self._sleep = sleep
        self._session = session or requests.Session()
        # JSON on every request, token grants included: a gateway may otherwise pick an HTML error page.
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._contact = FirstContact(self.vendor.name)

    def close(self) -> None:
        self._session.close()

    @contextmanager
    def redacting(self) -> Iterator[None]:
        """Whatever error leaves this block leaves without a secret in its message."""
        try:
            yield
        except BaseException as exc:
            self.redact.scrub(exc)
            raise

    # --- hooks for the vendor ---------------------------------------------------------------

    def before_send(self, call: C) -> dict[str, str]:
        """Headers of one attempt (auth, fetched anew as tokens renew); the place to take a quota slot."""
        return {}

    def classify(self, call: C, answer: Answer) -> Answer:
        """Raise for an answer that is not the caller's to read, else return it.

        The default: 429 and 5xx are transient, everything else goes back to the caller.
        """
        if answer.status == 429 or answer.status >= 500:
            raise self.transient(f"HTTP {answer.status} on {call}", answer)
        return answer

    def unanswered(self, call: C, reason: str) -> Exception:
        """What a request that may have reached the server, but whose answer was lost, becomes when
        the call is not idempotent. The default suits a vendor whose every call is safe to repeat."""
        return Transient(reason)

    # --- for the vendor's hooks -------------------------------------------------------------

    def transient(self, reason: str, answer: Answer) -> Exception:
        """A retryable failure honouring the answer's `Retry-After`, or the vendor's `unavailable`
        at once when the server asks for a longer pause than the policy allows."""
        wait = answer.retry_after()
        if wait is not None and wait > self.policy.max_wait:
            return self.vendor.unavailable(
                f"{self.vendor.name} asks to wait {wait:.0f} s ({reason}), longer than the "
                f"{self.policy.max_wait:.0f} s this run will wait; {self.vendor.resume_hint}"
            )
        return Transient(reason, wait)

    # --- the choke point --------------------------------------------------------------------

    def send(self, call: C) -> Answer:
        """One logical call with retries; the answer as `classify` lets it through."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Transient),
            stop=tenacity.stop_after_attempt(self.policy.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        with self.redacting():
            try:
                return retrying(self._attempt, call)
            except Transient as exc:
                raise self.vendor.unavailable(
                    f"{self.vendor.name} still failing after {self.policy.max_attempts} attempts: {exc.reason}"
                ) from None

    def _attempt(self, call: C) -> Answer:
        """One request, body included: a connection dropped mid-body is as lost as a timeout."""
        STOP.check()  # before sending, so nothing is in flight when the run stops
        headers = {**call.headers, **self.before_send(call)}
        if hasattr(call.data, "seek"):
            call.data.seek(0)  # a retried upload is sent from its start
        self.stats.count(call.family)
        try:
            with self._session.request(
                call.method,
                call.url,
                params=call.params,
                data=call.data,
                headers=headers,
                auth=call.auth,
                timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                stream=True,
            ) as response:
                # One read of the whole body: requests' default 10 KB chunking costs more than the
                # transfer on a fast link.
                answer = Answer(response.status_code, response.headers, response.raw.read(decode_content=True))
        except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as exc:
            problem = self._contact.connection_problem(call.url, exc, call.setting)
            if problem:
                raise self.vendor.setting_error(problem) from None
            reason = f"{type(exc).__name__} on {call}"
            if call.idempotent or _never_connected(exc):
                raise Transient(reason) from None
            raise self.unanswered(call, reason) from None
        problem = self._contact.status_problem(call.url, answer.status, call.setting)
        if problem:
            raise self.vendor.setting_error(problem)
        if answer.status < 300:
            self._contact.succeeded(call.setting)
        return self.classify(call, answer)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """The pause a `Transient` asked for; otherwise exponential backoff with jitter."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Transient) and exc.wait is not None:
            return exc.wait
        base = self.policy.backoff * (2 ** (state.attempt_number - 1))
        return float(min(self.policy.max_wait, base * random.uniform(0.8, 1.2)))

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        reason = exc.reason if isinstance(exc, Transient) else repr(exc)
        wait = state.next_action.sleep if state.next_action else 0.0
        self.log.warning(
            "%s: %s; retry %d/%d in %.1f s", self.vendor.name, reason, state.attempt_number, self.policy.max_attempts - 1, wait
        )


def _never_connected(exc: BaseException) -> bool:
    """True when no TCP connection was made, so the request cannot have been applied.

    requests wraps urllib3's `MaxRetryError`, whose `reason` is a `NewConnectionError` for a
    refused or unresolvable connection; a connect timeout never sent a byte either.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)

