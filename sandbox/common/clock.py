"""Sandbox time: real time scaled by a factor, plus manual jumps.

Gainsight's limits are per minute, hour and day and its tokens live 24 hours. Tests cannot wait that
long, so everything time-dependent in a sandbox (quota windows, token expiry, Bulk job progress) reads
this clock instead of the wall clock: ``time_scale`` sandbox seconds pass per real second, and
``advance`` jumps forward at once (``time_scale=0`` freezes time so only ``advance`` moves it, which
makes a test fully deterministic).
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timezone


class SandboxClock:
    """Thread-safe, monotonic sandbox time in epoch seconds (it starts at the real wall-clock time)."""

    def __init__(self, time_scale: float = 1.0, start: float | None = None) -> None:
        if not (time_scale >= 0 and math.isfinite(time_scale)):
            raise ValueError(f"time_scale must be a finite number >= 0, got {time_scale!r}")
        self.time_scale = time_scale
        self._lock = threading.Lock()
        self._real_origin = time.monotonic()
        self._origin = time.time() if start is None else start
        self._advanced = 0.0

    def now(self) -> float:
        """Sandbox epoch seconds."""
        elapsed = (time.monotonic() - self._real_origin) * self.time_scale
        with self._lock:
            return self._origin + elapsed + self._advanced

    def datetime(self) -> datetime:
        """Sandbox now as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), timezone.utc)

    def advance(self, seconds: float) -> None:
        """Jump forward by ``seconds`` of sandbox time (never backwards: windows and expiries only roll on)."""
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"can only advance by a finite number of seconds >= 0, got {seconds!r}")
        with self._lock:
            self._advanced += seconds

    def real_seconds(self, sandbox_seconds: float) -> float:
        """How long ``sandbox_seconds`` take in real time (infinite on a frozen clock)."""
        if sandbox_seconds <= 0:
            return 0.0
        return sandbox_seconds / self.time_scale if self.time_scale else math.inf
