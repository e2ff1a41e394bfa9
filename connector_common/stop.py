"""A stop asked for by SIGINT or SIGTERM, honoured at the next safe point.

Why not let the signal raise where it lands: the push runs in dlt's worker thread and books every
Gainsight answer in the ledger right after it arrives; an exception in the middle of that (or of a
DuckDB transaction) would leave a thread writing to a connection the main thread is closing. So
the handler only records the request, and the code asks `STOP.enter()` / `STOP.check()` where
stopping loses nothing: before sending a request, between steps. Waits (retry backoff, quota
windows, Bulk polling) go through `STOP.wait()`, which wakes as soon as a stop is requested.

The wake-up is a self-pipe rather than a `threading.Event`: the handler runs in the main thread,
possibly while that thread holds the Event's internal lock inside `wait()`, and `set()` would then
deadlock. Writing a byte to a non-blocking pipe takes no lock; every thread waiting in `select()`
on it wakes, and keeps waking until the next run resets it.

dlt installs handlers of its own around normalize and load; they swallow the first signal when
no job is left to stop, so the pipelines turn them off (`runtime_config.intercept_signals`).
"""

from __future__ import annotations

import os
import select
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
    """Raised at a safe point after SIGINT/SIGTERM; the runner turns it into exit 128 + signal."""

    def __init__(self, signal_number: int, where: str):
        super().__init__(f"stopped by {signal.Signals(signal_number).name} during {where}")
        self.signal_number = signal_number
        self.where = where
        self.push: Any = None  # the push's report so far, when the stop came during the push

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal_number).name


class StopRequest:
    """Whether a stop was asked for, and which step the run is in (for the message)."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self.where = "the run"
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def request(self, signal_number: int) -> None:
        """Record the first signal and wake every waiter; safe inside a signal handler."""
        if self.signal_number is None:
            self.signal_number = signal_number
        with suppress(BlockingIOError):  # the pipe is full of earlier wake-ups: waiters are awake anyway
            os.write(self._wake_write, b"\0")

    def check(self, where: str | None = None) -> None:
        """Raise `StopRequested` if a stop was asked for; call only where stopping loses nothing."""
        if self.signal_number is not None:
            raise StopRequested(self.signal_number, where or self.where)

    def enter(self, where: str) -> None:
        """A step boundary: stop here if asked to, else name the step the run is now in."""
        self.check()
        self.where = where

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`; raise `StopRequested` as soon as a stop is asked for."""
        self.check()
        select.select([self._wake_read], [], [], max(0.0, seconds))
        self.check()

    def reset(self) -> None:
        self.signal_number = None
        self.where = "the run"
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass


STOP = StopRequest()


def _handle(signal_number: int, frame: FrameType | None) -> None:
    # A second signal while stopping changes nothing: the run is already on its way out, and
    # leaving at once could cut a ledger write short. SIGKILL remains for "now".
    STOP.request(signal_number)


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """For one run: SIGINT/SIGTERM request a stop instead of killing the process mid-write.

    Only the main thread can install handlers; elsewhere (a test calling the runner from a thread)
    the signals keep their previous meaning.
    """
    STOP.reset()
    if threading.current_thread() is not threading.main_thread():
        yield STOP
        return
    previous = {number: signal.getsignal(number) for number in SIGNALS}
    for number in SIGNALS:
        signal.signal(number, _handle)
    try:
        yield STOP
    finally:
        for number, handler in previous.items():
            # After a stop the process is on its way out: a second Ctrl-C while it exits must not
            # turn exit 130 into death by SIGINT. SIG_IGN, unlike a Python handler, outlives
            # interpreter shutdown.
            signal.signal(number, signal.SIG_IGN if STOP.requested else handler)
        STOP.reset()
