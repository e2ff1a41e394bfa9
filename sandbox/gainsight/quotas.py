"""Gainsight's rate limits as fixed windows on the sandbox clock (reference §5, DESIGN §7).

Windows are aligned to the clock ("100 requests between 10:00 am and 10:01 am" [documented]):
minutes on the minute, hours on the hour, days at UTC midnight. A call counts in every window of its
family; a call refused with 429 counts in none. Which endpoint counts in which family is [assumed]:
``sync`` = data API, People, metadata and Bulk status; ``timeline``; ``bulk`` = Bulk uploads only.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from sandbox.common.clock import SandboxClock

WINDOWS = {"minute": 60, "hour": 3600, "day": 86400}
FAMILIES = ("sync", "timeline", "bulk")
#: [documented] limits; Timeline's single-insert limit has no documented daily cap.
DEFAULT_LIMITS: dict[tuple[str, str], int] = {
    ("sync", "minute"): 100,
    ("sync", "day"): 50_000,
    ("timeline", "minute"): 200,
    ("bulk", "hour"): 10,
    ("bulk", "day"): 100,
}


@dataclass(frozen=True)
class Exceeded:
    """The window that refused a call: what the 429's ``x-ratelimit-limit`` and Retry-After tell."""

    family: str
    window: str
    limit: int
    resets_at: float


class Quotas:
    """Thread-safe counters per (family, window); ``enabled=False`` lets every call through uncounted."""

    def __init__(self, clock: SandboxClock, overrides: Mapping[tuple[str, str], int] | None = None, enabled: bool = True) -> None:
        limits = dict(DEFAULT_LIMITS)
        for (family, window), limit in (overrides or {}).items():
            if family not in FAMILIES or window not in WINDOWS or type(limit) is not int or limit < 0:
                raise ValueError(f"quota override ({family!r}, {window!r}): {limit!r} is not a known family/window with an int >= 0")
            limits[(family, window)] = limit
        self.limits = limits
        self.enabled = enabled
        self._clock = clock
        self._lock = threading.Lock()
        self._used: dict[tuple[str, str], tuple[float, int]] = {}

    def acquire(self, family: str) -> Exceeded | None:
        """Count one call, or return the first full window (and count nothing)."""
        if not self.enabled:
            return None
        now = self._clock.now()
        with self._lock:
            windows = [(key, limit) for key, limit in self.limits.items() if key[0] == family]
            for key, limit in windows:
                start = self._start(key[1], now)
                if self._count(key, start) >= limit:
                    return Exceeded(family, key[1], limit, start + WINDOWS[key[1]])
            for key, _ in windows:
                start = self._start(key[1], now)
                self._used[key] = (start, self._count(key, start) + 1)
        return None

    def state(self) -> dict[str, dict[str, dict[str, float]]]:
        """family -> window -> {limit, used, resets_at (sandbox epoch seconds)}."""
        now = self._clock.now()
        state: dict[str, dict[str, dict[str, float]]] = {}
        with self._lock:
            for (family, window), limit in self.limits.items():
                start = self._start(window, now)
                state.setdefault(family, {})[window] = {
                    "limit": limit,
                    "used": self._count((family, window), start),
                    "resets_at": start + WINDOWS[window],
                }
        return state

    def reset(self) -> None:
        with self._lock:
            self._used.clear()

    def _count(self, key: tuple[str, str], start: float) -> int:
        window_start, used = self._used.get(key, (start, 0))
        return used if window_start == start else 0

    @staticmethod
    def _start(window: str, now: float) -> float:
        length = WINDOWS[window]
        return math.floor(now / length) * length
