"""OAuth2 client-credentials tokens as the sandbox issues them: opaque, expiring, revocable.

Real tokens live one hour (reference §2.1); tests configure sub-second lifetimes to prove the client
refreshes on expiry, and revoke all tokens at once to simulate expiry at an exact request.
"""

from __future__ import annotations

import math
import secrets
import threading
import time


class TokenIssuer:
    """Thread-safe registry of issued bearer tokens and their monotonic-clock expiry."""

    def __init__(self, lifetime: float) -> None:
        if not lifetime > 0:
            raise ValueError(f"token lifetime must be > 0 seconds, got {lifetime!r}")
        self.lifetime = lifetime
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
        now = time.monotonic()
        with self._lock:
            # Forget expired tokens so a long benchmark with short lifetimes does not grow the map.
            self._expiry = {t: expiry for t, expiry in self._expiry.items() if expiry > now}
            self._expiry[token] = now + self.lifetime
            self._granted += 1
        return token

    def is_valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._expiry.get(token)
        return expiry is not None and time.monotonic() < expiry

    def revoke_all(self) -> None:
        with self._lock:
            self._expiry.clear()
