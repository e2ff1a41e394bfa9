"""Sandbox time: real time scaled by a factor, plus manual jumps.

Gainsight's limits are per minute, hour and day and its tokens live 24 hours. Tests cannot wait that
long, so everything time-dependent in a sandbox (quota windows, token expiry, Bulk job progress) reads
this clock instead of the wall clock: ``time_scale`` sandbox seconds pass per real second, and
``advance`` jumps forward at once (``time_scale=0`` freezes time so only ``advance`` moves it, which
makes a test fully deterministic). ``sleep`` waits on sandbox time, so on a frozen clock a slow answer
is held until the test advances the clock past it.
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
        self._moved = threading.Condition()  # notified by ``advance``; its own lock, as ``now`` takes ``_lock``
        self._sleepers = 0

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
        with self._moved:
            self._moved.notify_all()

    def sleep(self, seconds: float) -> None:
        """Block until ``seconds`` of sandbox time have passed: scaled real time, or ``advance`` calls
        (on a frozen clock only those)."""
        until = self.now() + seconds
        with self._moved:
            self._sleepers += 1
            self._moved.notify_all()  # for ``wait_for_sleepers``
            try:
                while (left := until - self.now()) > 0:
                    self._moved.wait(None if self.time_scale == 0 else self.real_seconds(left))
            finally:
                self._sleepers -= 1

    def wait_for_sleepers(self, count: int = 1, timeout: float = 30.0) -> None:
        """Block until ``count`` threads wait in ``sleep``, so a test knows its request is held before
        it acts; ``TimeoutError`` after ``timeout`` real seconds (a broken test, not an outcome)."""
        with self._moved:
            if not self._moved.wait_for(lambda: self._sleepers >= count, timeout):
                raise TimeoutError(f"{count} sleeper(s) expected on the sandbox clock, {self._sleepers} after {timeout} s")

    def retry_after(self, sandbox_seconds: float) -> int:
        """A ``Retry-After`` for a wait of ``sandbox_seconds``: whole real seconds, rounded up, at least
        1, so a client that sleeps that long finds the window rolled (sandbox seconds on a frozen clock)."""
        real = self.real_seconds(sandbox_seconds)
        return max(1, math.ceil(real if math.isfinite(real) else sandbox_seconds))

    def real_seconds(self, sandbox_seconds: float) -> float:
        """How long ``sandbox_seconds`` take in real time (infinite on a frozen clock)."""
        if sandbox_seconds <= 0:
            return 0.0
        return sandbox_seconds / self.time_scale if self.time_scale else math.inf
