"""When the next webhook batch may start: paced by what Gainsight's quota windows have left.

A batch is a run, and a run costs a few calls whatever its size: the response look-up and insert
and a Timeline insert, more for a person Gainsight has not seen. With the CPU to itself the worker
would start a batch every second or so of a steady stream, which at two or three sync calls a batch
is more than the 100 a minute Gainsight allows: the batch that finds the minute used up then waits, with
its events, for the next minute (up to a minute), and the events behind it wait for it.

So the worker lets events gather instead. The next batch starts no sooner than the pace that
spends a window's remaining calls by the window's end at the recent batches' cost (`pause_for`),
and when the window cannot afford one more batch the events wait for it to reset, then go as one
batch that does not wait. A quiet stream is not held: an event long after the last batch goes at
once. Time comes from an injected clock (the limiter's), so tests decide it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping

from destinations.gainsight.client import TOKEN_FAMILY, quota_family
from destinations.gainsight.quota import QuotaLimiter, QuotaStore
from destinations.gainsight.settings import GainsightSettings

log = logging.getLogger("nps.serve")

RECENT = 5  # batches whose mean cost is the estimate of the next one's
# A batch's calls per paced family before any batch was measured: the response look-up and its
# insert (sync); one Timeline insert.
FIRST_COST: Mapping[str, float] = {"sync": 2.0, "timeline": 1.0}


def pause_for(left: int, resets_in: float, cost: float, since_last: float) -> float:
    """Seconds to hold the next batch (0: start it now), for one quota window with `left` calls
    until it resets in `resets_in` seconds, a batch costing `cost` calls, and the last batch
    started `since_last` seconds ago."""
    if left < cost:
        return resets_in  # this window cannot afford the batch: gather until it resets
    return max(0.0, cost * resets_in / left - since_last)


def quota_calls(calls: Mapping[str, int], settings: GainsightSettings) -> dict[str, int]:
    """A run's calls per endpoint (`PushReport.calls`) as calls per quota family."""
    families: dict[str, int] = defaultdict(int)
    for endpoint, count in calls.items():
        if endpoint != TOKEN_FAMILY:
            families[quota_family(endpoint, settings)] += count
    return families


class Pacer:
    """Remembers what the last batches cost and when the last one started; says how long to hold."""

    def __init__(
        self,
        settings: GainsightSettings,
        quota_log: Callable[[], QuotaStore | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.quota_log = quota_log  # the counts of every run so far (the push flushes them as it ends)
        self.clock = clock
        self._costs: dict[str, deque[int]] = {family: deque(maxlen=RECENT) for family in FIRST_COST}
        self._last_start: float | None = None

    def started(self) -> None:
        self._last_start = self.clock()

    def record(self, calls: Mapping[str, int]) -> None:
        """The calls per endpoint the batch just delivered made."""
        made = quota_calls(calls, self.settings)
        for family, costs in self._costs.items():
            costs.append(made.get(family, 0))

    def cost(self, family: str) -> float:
        costs = self._costs[family]
        return max(1.0, sum(costs) / len(costs)) if costs else FIRST_COST[family]

    def pause(self) -> float:
        """Seconds the next batch should wait so that it does not wait inside the push."""
        limiter = QuotaLimiter(self.settings.quotas, self.quota_log(), clock=self.clock)
        since = float("inf") if self._last_start is None else self.clock() - self._last_start
        holds = {family: pause_for(*limiter.headroom(family), self.cost(family), since) for family in self._costs}
        family = max(holds, key=lambda name: holds[name])
        if holds[family] > 0 and limiter.headroom(family)[0] < self.cost(family):
            log.info(
                "serve: the %s quota has %d call(s) left this window, a batch costs about %.0f: "
                "events gather %.0f s until it resets", family, limiter.headroom(family)[0], self.cost(family), holds[family],
            )  # fmt: skip
        return holds[family]
