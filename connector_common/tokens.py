"""Bearer-token caching shared by the OAuth2 client-credentials clients (CustomerGauge, Gainsight M2M).

A token is renewed a little before expiry so it does not die between being checked and being used
on a slow request, and a client forgets it on a 401 (tokens can be revoked server-side). The HTTP
grant itself stays in each vendor's client, the single choke point for that vendor's traffic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AccessToken:
    value: str = field(repr=False)
    issued_at: float  # clock() seconds when the grant was requested
    lifetime: float  # seconds, from `expires_in`

    def usable(self, now: float) -> bool:
        """True while the token is safely inside its lifetime.

        The safety margin is 60 s against a one-hour token but never more than a tenth of the
        lifetime, so very short-lived tokens still get used.
        """
        margin = min(60.0, self.lifetime / 10)
        return now < self.issued_at + self.lifetime - margin


class TokenCache:
    """Holds the current token and decides when a new one is needed."""

    def __init__(self, fetch: Callable[[], dict[str, Any]], clock: Callable[[], float] = time.monotonic):
        self._fetch = fetch
        self._clock = clock
        self._token: AccessToken | None = None
        self.grants = 0

    def get(self) -> str:
        if self._token is None or not self._token.usable(self._clock()):
            self._token = self._grant()
        return self._token.value

    def invalidate(self) -> None:
        """Forget the token, e.g. after the API answered 401 to it."""
        self._token = None

    def _grant(self) -> AccessToken:
        issued_at = self._clock()
        body = self._fetch()
        self.grants += 1
        return AccessToken(
            value=str(body["access_token"]),
            issued_at=issued_at,
            lifetime=float(body.get("expires_in") or 3600),
        )
