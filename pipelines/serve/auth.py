"""Who may post events: each webhook call proves it knows the shared secret.

CustomerGauge does not document how (or whether) it signs outgoing webhooks (reference §3.7), so
three schemes are offered, one per deployment:

- `hmac` (default): `<signature_header>: sha256=<hex>`, the HMAC-SHA256 under the secret of
  `<timestamp>.<raw body>`, where `<timestamp>` is the `<timestamp_header>` value in Unix seconds
  and must be within `timestamp_tolerance_seconds` of the receiver's clock (a captured call cannot
  be replayed later). With `timestamp_header = ""` the raw body alone is signed (for a sender that
  cannot add a timestamp; no replay window then).
- `basic`: `Authorization: Basic base64(user:password)`, the secret being `user:password`.
- `header`: `<signature_header>: <secret>` verbatim (e.g. `X-Api-Key`).

Every comparison is constant-time (`hmac.compare_digest`). A call without credentials is 401, with
wrong or stale ones 403; the answer never says which part was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .settings import ServeSettings


@dataclass(frozen=True)
class Refusal:
    status: int  # 401 no credentials, 403 wrong or stale credentials
    reason: str  # for the log and the rejected-events metric; never holds the secret


def sign(secret: str, body: bytes, timestamp: str | None) -> str:
    """The `hmac` scheme's header value for `body` (what a sender computes)."""
    message = body if timestamp is None else timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class Authenticator:
    """Checks one call's headers (lower-cased names) and raw body against the configured scheme."""

    def __init__(self, settings: ServeSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock

    @property
    def basic(self) -> bool:
        return self._settings.webhook_auth == "basic"

    def refuse(self, headers: Mapping[str, str], body: bytes) -> Refusal | None:
        """None when the call is authentic, else why not."""
        mode = self._settings.webhook_auth
        if mode == "basic":
            return self._basic(headers.get("authorization"))
        given = headers.get(self._settings.signature_header.lower())
        if not given:
            return Refusal(401, f"no {self._settings.signature_header} header")
        if mode == "header":
            return None if _same(given, self._settings.webhook_secret) else Refusal(403, "wrong shared secret")
        return self._hmac(headers, given, body)

    def _hmac(self, headers: Mapping[str, str], given: str, body: bytes) -> Refusal | None:
        timestamp = None
        if self._settings.timestamp_header:
            timestamp = headers.get(self._settings.timestamp_header.lower())
            if not timestamp:
                return Refusal(401, f"no {self._settings.timestamp_header} header")
            try:
                skew = abs(self._clock() - int(timestamp))
            except ValueError:
                return Refusal(403, "timestamp is not Unix seconds")
            if skew > self._settings.timestamp_tolerance_seconds:
                return Refusal(403, f"timestamp {skew:.0f} s away from this clock")
        expected = sign(self._settings.webhook_secret, body, timestamp)
        return None if _same(given.strip(), expected) else Refusal(403, "signature does not match")

    def _basic(self, authorization: str | None) -> Refusal | None:
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return Refusal(401, "no Basic credentials")
        try:
            pair = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return Refusal(403, "malformed Basic credentials")
        return None if _same(pair, self._settings.webhook_secret) else Refusal(403, "wrong Basic credentials")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))
