"""An optional request-rate limit for the CustomerGauge sandbox, on the sandbox clock.

CustomerGauge documents no rate limit (reference §4: unknown), so the sandbox has none unless a test
or benchmark asks for one (reference §5.3): N sync requests per token per minute, in fixed windows
aligned to the sandbox clock, answered with the assumed Laravel 429 (`Too Many Attempts.`).
Advancing the clock rolls the window, so a test never waits a real minute.
"""

from __future__ import annotations

import threading
from collections import Counter

from sandbox.common.clock import SandboxClock

WINDOW_SECONDS = 60.0


class RateLimit:
    """Fixed one-minute windows of ``per_minute`` requests per bearer token."""

    def __init__(self, per_minute: int, clock: SandboxClock) -> None:
        if per_minute < 1:
            raise ValueError(f"requests_per_minute must be >= 1, got {per_minute!r}")
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._window = -1
        self._used: Counter[str] = Counter()

    def admit(self, token: str) -> float | None:
        """Count a request; ``None`` if it may pass, else the sandbox seconds until its window ends."""
        now = self._clock.now()
        window = int(now // WINDOW_SECONDS)
        with self._lock:
            if window != self._window:
                self._window, self._used = window, Counter()
            if self._used[token] >= self.per_minute:
                return (window + 1) * WINDOW_SECONDS - now
            self._used[token] += 1
        return None
