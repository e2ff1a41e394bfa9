"""A stop request ends the run's waits at once instead of sleeping them out.

The kill-and-resume tests (test_command.py, test_push_command.py) send real signals to the command;
this shows the wake-up itself, in-process, on the longest wait a run sleeps through (a full quota
minute; retry backoff and Bulk poll pauses use the same `STOP.wait`).
"""

from __future__ import annotations

import logging
import signal
import threading

import pytest

from connector_common.stop import STOP, StopRequested
from destinations.gainsight.quota import QuotaLimiter
from destinations.gainsight.settings import QuotaLimits

from .cli import wait_for


@pytest.fixture
def stop_request():
    STOP.reset()
    yield STOP
    STOP.reset()  # the request is process-wide: leave none behind for the next test


def test_a_stop_wakes_a_quota_wait_and_the_call_is_neither_sent_nor_counted(stop_request, caplog):
    # The clock stands one second into a minute whose only sync call is used: the next waits 59 s.
    limiter = QuotaLimiter(QuotaLimits(sync_per_minute=1), None, 65.0, clock=lambda: 60_001.0)
    limiter.acquire("sync")
    outcome: list[BaseException] = []

    def second_call() -> None:
        try:
            limiter.acquire("sync")
        except StopRequested as exc:
            outcome.append(exc)

    caplog.set_level(logging.INFO, logger="nps.gainsight.quota")
    waiter = threading.Thread(target=second_call)
    waiter.start()
    wait_for(lambda: any("used up; waiting" in r.getMessage() for r in caplog.records))
    stop_request.where = "the push: people"
    stop_request.request(signal.SIGTERM)
    stop_request.request(signal.SIGINT)  # a second signal changes nothing
    waiter.join(timeout=30)

    assert not waiter.is_alive()
    assert [str(exc) for exc in outcome] == ["stopped by SIGTERM during the push: people"]
    assert limiter.remaining()["sync"]["minute"] == 0 and limiter.remaining()["sync"]["day"] == 50_000 - 1
