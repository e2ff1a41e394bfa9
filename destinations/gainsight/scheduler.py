"""The push's scheduler: one step per object, in value order, each quota family kept busy.

Gainsight counts its quota families (sync, Bulk, Timeline) in separate windows (reference §5), and
what a CSM sees first matters most: Companies (everything references them), then the response
records, then the Timeline entries, then the people (DESIGN §2). Run one after the other, a push
whose sync minute window is full would sleep while the Timeline window sat unused, and the
People API's 100 calls a minute would hold the responses back for hours.

So each object is a `Step`, and the steps run cooperatively: each in its own thread, but only the
one holding the turn runs, so the ledger, the client and the report are never used by two at
once, and without a full window the steps run strictly in order (the sandbox's request log shows
every response and activity before any person). A step gives up its turn where it would
wait: a full quota window, a `Retry-After`, a Bulk poll interval. Those waits call `pause`, which
parks the step until its time and hands the turn to the first step (in value order) that can go
on now; only when every pending step is parked does the scheduler sleep, until the earliest one
may go on. Before each call (`checkpoint`), a step also hands the turn back to an earlier step in
value order whose wait is over. Writers stay plain sequential code, and time is injected (`clock`, `sleep`), so tests
drive it with a fake clock and no real sleep.

A step that fails (a setting error, rejected credentials, a stop request) fails the run: the
other started steps are unwound at their pause (`Aborted`, which no writer catches), their
`finally` blocks booking what landed, and the first error is raised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector_common.stop import STOP


class Aborted(BaseException):
    """Another step failed the run: this one unwinds from where it was parked."""


@dataclass(eq=False)
class Step:
    """One object's work (`run`); it starts once the steps named in `after` have finished."""

    name: str
    run: Callable[[], Any]
    after: tuple[str, ...] = ()
    wake_at: float | None = None  # parked until then (scheduler clock)
    finished: bool = False
    result: Any = None
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


class Scheduler:
    """Runs steps one at a time, in the order given, switching only where a step would wait."""

    def __init__(self, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = STOP.wait) -> None:
        self.clock = clock
        self._sleep = sleep
        self._turn: Step | None = None  # the step allowed to run; None: the scheduler's own turn
        self._changed = threading.Condition()
        self._current = threading.local()
        self._aborting = False
        self._steps: Sequence[Step] = ()

    def checkpoint(self) -> None:
        """Before each call (the limiter asks): a step that woke up ahead of the current one in
        value order takes the turn back, so response records are not held behind people whose
        calls happened to be running when a Bulk poll interval ended."""
        step: Step | None = getattr(self._current, "step", None)
        if step is None:
            return
        runnable = self._runnable(self.clock())
        if runnable and runnable[0] is not step and self._steps.index(runnable[0]) < self._steps.index(step):
            self.pause(0.0)

    def pause(self, seconds: float) -> None:
        """Wait `seconds` (scheduler clock). Inside a step, other steps run meanwhile; elsewhere
        (the recovery of Bulk uploads, before the steps start) it is a plain wait."""
        step: Step | None = getattr(self._current, "step", None)
        if step is None:
            self._sleep(max(0.0, seconds))
            return
        step.wake_at = self.clock() + max(0.0, seconds)
        with self._changed:
            self._turn = None
            self._changed.notify_all()
            self._wait_for_turn(step)

    def run(self, steps: Sequence[Step]) -> None:
        """Run every step to its end; raises the first step's error after unwinding the others."""
        self._aborting = False
        self._steps = steps
        try:
            while any(not step.finished for step in steps):
                now = self.clock()
                runnable = self._runnable(now)
                if not runnable:  # every pending step is parked: sleep until the first may go on
                    self._sleep(max(0.0, min(step.wake_at or now for step in self._ready()) - now))
                    STOP.check()
                    continue
                step = runnable[0]
                step.wake_at = None
                self._give_turn(step)
                if step.error is not None:
                    raise step.error
        finally:
            self._abort([step for step in steps if step.thread is not None and not step.finished])

    def _ready(self) -> list[Step]:
        """Unfinished steps whose dependencies have finished, in value order."""
        done = {step.name for step in self._steps if step.finished}
        return [step for step in self._steps if not step.finished and all(name in done for name in step.after)]

    def _runnable(self, now: float) -> list[Step]:
        return [step for step in self._ready() if step.wake_at is None or step.wake_at <= now]

    def _give_turn(self, step: Step) -> None:
        """Let `step` run until it pauses or finishes."""
        with self._changed:
            self._turn = step
            if step.thread is None:
                step.thread = threading.Thread(target=self._main, args=(step,), name=f"push-{step.name}", daemon=True)
                step.thread.start()
            self._changed.notify_all()
            while self._turn is step:
                self._changed.wait()

    def _main(self, step: Step) -> None:
        self._current.step = step
        try:
            with self._changed:
                self._wait_for_turn(step)
            step.result = step.run()
        except BaseException as exc:  # handed to the scheduler's thread, which raises it
            step.error = exc
        finally:
            with self._changed:
                step.finished = True
                self._turn = None
                self._changed.notify_all()

    def _wait_for_turn(self, step: Step) -> None:
        while self._turn is not step:
            self._changed.wait()
        if self._aborting:
            raise Aborted()

    def _abort(self, started: list[Step]) -> None:
        """Unwind the steps parked mid-way (they raise `Aborted` where they paused)."""
        self._aborting = True
        for step in started:
            self._give_turn(step)
        for step in started:
            if step.thread is not None:
                step.thread.join()
