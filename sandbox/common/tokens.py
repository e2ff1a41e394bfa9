"""Bearer tokens as the sandboxes issue them (opaque, expiring, revocable) and HTTP Basic parsing.

Both vendors hand out client-credentials tokens: CustomerGauge's live one hour, Gainsight's 24 hours.
Tests configure short lifetimes (or advance the sandbox clock) to prove the client refreshes on
expiry, and revoke all tokens at once to simulate expiry at an exact request.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import threading
from urllib.parse import unquote

from sandbox.common.clock import SandboxClock


class TokenIssuer:
    """Thread-safe registry of issued bearer tokens and their expiry on the sandbox clock."""

    def __init__(self, lifetime: float, clock: SandboxClock | None = None) -> None:
        if not lifetime > 0:
            raise ValueError(f"token lifetime must be > 0 seconds, got {lifetime!r}")
        self.lifetime = lifetime
        self._clock = clock or SandboxClock()
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._granted = 0

    @property
    def expires_in(self) -> int:
        """The ``expires_in`` to report: whole seconds, rounded up, at least 1 (OAuth2 has no fractions)."""
        return max(1, math.ceil(self.lifetime))

    @property
    def granted(self) -> int:
        """How many tokens were issued (successful grants)."""
        with self._lock:
            return self._granted

    def issue(self) -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock.now()
        with self._lock:
            # Forget expired tokens so a long benchmark with short lifetimes does not grow the map.
            self._expiry = {t: expiry for t, expiry in self._expiry.items() if expiry > now}
            self._expiry[token] = now + self.lifetime
            self._granted += 1
        return token

    def is_valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._expiry.get(token)
        return expiry is not None and self._clock.now() < expiry

    def revoke_all(self) -> None:
        with self._lock:
            self._expiry.clear()


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """``(id, secret)`` from an ``Authorization: Basic base64(urlencode(id):urlencode(secret))`` header
    value (RFC 6749 §2.3.1), or ``None`` if it is not Basic or malformed."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return None
    return unquote(client_id), unquote(secret)
