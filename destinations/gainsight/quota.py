"""Client-side fixed-window limiter whose counts persist in DuckDB, so quotas hold across runs.

Gainsight counts calls in fixed windows ("100 requests between 10:00 and 10:01", reference §5). An
hourly cron run that forgot the previous run's Bulk uploads would hit the server's 429 instead of
planning around it, so every call is counted per family and window and saved to the quota log.

Waiting is reserved for short windows: a full minute window is slept out (at most a minute; in the
push, the scheduler runs another object's calls meanwhile); a full hour or day window raises
`QuotaExhausted`, and the run defers the rest to a later run. The run's time budget is kept here
too, since every call asks first.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from connector_common.stop import STOP

from .errors import QuotaExhausted, RunBudgetReached
from .settings import QuotaLimits

log = logging.getLogger("nps.gainsight.quota")

FLUSH_EVERY_CALLS = 50
FLUSH_EVERY_SECONDS = 5.0


@dataclass(frozen=True)
class Window:
    family: str
    name: str
    seconds: int
    limit: int

    def start(self, now: float) -> int:
        return int(now // self.seconds * self.seconds)


@dataclass(frozen=True)
class RunBudget:
    """The run's time budget (`max_run_minutes`): no call starts at or after `deadline` (limiter clock)."""

    deadline: float
    minutes: float


class QuotaStore(Protocol):
    """Where counts live between runs (the ledger's `quota_log` table)."""

    def load_quota_counts(self, since: float) -> dict[tuple[str, str, int], int]: ...

    def save_quota_counts(self, counts: dict[tuple[str, str, int], int]) -> None: ...


class QuotaLimiter:
    """Counts calls per (family, window, window start); thread-safe; flushes to its store."""

    def __init__(
        self,
        limits: QuotaLimits,
        store: QuotaStore | None,
        max_wait: float = 65.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = STOP.wait,  # a stop request ends the wait at once
        budget: RunBudget | None = None,
        checkpoint: Callable[[], None] = lambda: None,  # the scheduler's, before each call
    ) -> None:
        self._windows = {
            family: [Window(family, name, seconds, limit) for name, seconds, limit in windows]
            for family, windows in limits.windows().items()
        }
        self._store = store
        self._max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._counts: dict[tuple[str, str, int], int] = store.load_quota_counts(now - 86_400) if store else {}
        self._dirty: set[tuple[str, str, int]] = set()
        self._unflushed = 0
        self._flushed_at = now
        self._blocked: dict[str, QuotaExhausted] = {}
        self._budget = budget
        self._checkpoint = checkpoint

    def acquire(self, family: str) -> None:
        """Count one call of `family`, sleeping through a full short window; raise for a long one,
        and `RunBudgetReached` once the run's time budget is used up (every call passes here: the
        run stops between two calls)."""
        budget = self._budget
        self._checkpoint()
        while True:
            with self._lock:
                now = self._clock()
                if budget is not None and now >= budget.deadline:
                    raise RunBudgetReached(budget.minutes)
                blocked = self._blocked.get(family)
                if blocked is not None and (blocked.resume_at is None or blocked.resume_at.timestamp() > now):
                    raise blocked
                full = [w for w in self._windows.get(family, []) if self._used(w, now) >= w.limit]
                if not full:
                    for window in self._windows.get(family, []):
                        key = (family, window.name, window.start(now))
                        self._counts[key] = self._counts.get(key, 0) + 1
                        self._dirty.add(key)
                    self._unflushed += 1
                    due = self._unflushed >= FLUSH_EVERY_CALLS or now - self._flushed_at >= FLUSH_EVERY_SECONDS
                    if due:
                        self._flush_locked(now)
                    return
                longest = max(full, key=lambda w: w.start(now) + w.seconds)
                resume = longest.start(now) + longest.seconds
                if resume - now > self._max_wait:
                    exhausted = QuotaExhausted(family, longest.name, _utc(resume))
                    self._blocked[family] = exhausted
                    raise exhausted
            log.info("gainsight: %s quota for this %s is used up; waiting %.0f s", family, longest.name, resume - now)
            self._sleep(max(0.0, min(resume, budget.deadline if budget else resume) - now))

    def server_refused(self, family: str, wait_limit: float) -> float:
        """The server said 429 although our counts allowed the call (another client shares the
        tenant's quota). Returns how long to wait for the next window of the family's shortest
        window; raises `QuotaExhausted` if that is longer than `wait_limit`."""
        now = self._clock()
        shortest = min(self._windows.get(family, [Window(family, "minute", 60, 0)]), key=lambda w: w.seconds)
        resume = shortest.start(now) + shortest.seconds
        if resume - now > wait_limit:
            exhausted = QuotaExhausted(family, shortest.name, _utc(resume))
            with self._lock:
                self._blocked[family] = exhausted
            raise exhausted
        return resume - now + 0.05

    def block(self, family: str, window: str, seconds: int) -> QuotaExhausted:
        """Mark `family` exhausted until the end of the current `seconds`-long window."""
        now = self._clock()
        exhausted = QuotaExhausted(family, window, _utc(math.floor(now / seconds) * seconds + seconds))
        with self._lock:
            self._blocked[family] = exhausted
        return exhausted

    def remaining(self) -> dict[str, dict[str, int]]:
        """family -> window -> calls left in the current window."""
        now = self._clock()
        with self._lock:
            return {
                family: {w.name: max(0, w.limit - self._used(w, now)) for w in windows}
                for family, windows in self._windows.items()
            }

    def headroom(self, family: str) -> tuple[int, float]:
        """Calls of `family` left in its shortest window, and the seconds until that window resets
        (`serve` paces its batches by it, so that no batch starts only to wait for the window)."""
        now = self._clock()
        shortest = min(self._windows[family], key=lambda w: w.seconds)
        with self._lock:
            left = max(0, shortest.limit - self._used(shortest, now))
        return left, shortest.start(now) + shortest.seconds - now

    def deferred(self) -> Iterable[QuotaExhausted]:
        with self._lock:
            return list(self._blocked.values())

    def flush(self) -> None:
        with self._lock:
            self._flush_locked(self._clock())

    def _used(self, window: Window, now: float) -> int:
        return self._counts.get((window.family, window.name, window.start(now)), 0)

    def _flush_locked(self, now: float) -> None:
        if self._store is not None and self._dirty:
            self._store.save_quota_counts({key: self._counts[key] for key in self._dirty})
        self._dirty.clear()
        self._unflushed = 0
        self._flushed_at = now


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)
