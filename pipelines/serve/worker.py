"""The worker: spooled events through the normal stage -> push path, in batches, plus the timer.

One thread does every run, so runs never overlap and the DuckDB file has one writer of staging and
ledger. A batch is everything due in the spool when the worker looks (up to `MAX_EVENTS`): events
that arrive while a push is under way wait for the next batch, so a burst costs a few pushes, never
one per event. In a steady stream the next batch also waits for the pace Gainsight's quota allows
(`pacing.py`), gathering events rather than starting a push that would wait for a quota window.
Each batch is a run like the scheduled one (run history, quarantine, ledger, quotas, summary) whose
extract is the events source (`sources/customergauge/events.py`).

A spooled record leaves the spool once it is merged into staging; from there the push's outbox
owns it, and a failed push is retried by the next run (or by the retry timer when no event comes).
An id-only event whose record CustomerGauge does not show yet is retried a few times, then left to
the reconciliation, which reads the same window.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from connector_common.stop import STOP
from destinations.gainsight.quota import QuotaLimiter
from destinations.gainsight.settings import GainsightSettings
from destinations.gainsight.store import quota_log_reader
from sources.customergauge import ExtractReport
from sources.customergauge.events import Events, customergauge_events

from ..errors import WARNINGS, ExitCode
from ..runner import execute
from ..settings import RunSettings
from ..stage import StageResult, make_pipeline, run_stage
from ..staging import StagingStore
from .metrics import Metrics
from .pacing import Pacer
from .spool import Spool, Spooled

log = logging.getLogger("nps.serve")

MAX_EVENTS = 10_000  # per batch: bounds a batch's memory whatever the backlog
LINGER_SECONDS = 0.2  # after the first event of a quiet spell, let the rest of its burst land
ID_RETRIES = 5  # an id-only event not found after this many batches is left to the reconciliation
ID_RETRY_DELAY = timedelta(seconds=30)
PUSH_RETRY_SECONDS = 60.0  # after a push that did not finish (Gainsight down, quota), when no event comes
COMPLETED = (ExitCode.OK, *WARNINGS)


@dataclass
class LastRun:
    mode: str
    exit_code: int
    ended_at: datetime


class Worker:
    """Runs batches and reconciliations on its own thread until stopped (`stop` drains first)."""

    def __init__(
        self,
        settings: RunSettings,
        store: StagingStore,
        spool: Spool,
        metrics: Metrics,
        gainsight: GainsightSettings,
        reconcile_minutes: int,
        source_options: dict[str, Any] | None = None,
        gainsight_options: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.spool = spool
        self.metrics = metrics
        self.gainsight = gainsight
        self.reconcile_seconds = reconcile_minutes * 60.0
        self.source_options = source_options or {}
        self.gainsight_options = gainsight_options
        self.last_run: LastRun | None = None
        self.last_success: LastRun | None = None
        self.failure: BaseException | None = None
        self.on_failure: Callable[[], None] | None = None  # serve stops listening, so the process exits 1
        self._wake = threading.Event()
        self._stopping = False
        self._forced = False
        self._running: str | None = None  # the mode of the run under way
        # dlt's working folder is this process's own once a batch restored it from DuckDB: later
        # batches skip that check (about a tenth of a batch's time).
        self._restored = False
        self.pacer = Pacer(gainsight, lambda: quota_log_reader(store.connection))
        self._thread = threading.Thread(target=self._loop, name="serve-worker", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.failure is None

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """New events are in the spool."""
        self._wake.set()

    def stop(self) -> None:
        """Deliver every event due in the spool, then end the thread (no reconciliation on the way out)."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def end_reconciliation(self, signal_number: int) -> None:
        """The first signal: a reconciliation under way (it may hold a long backlog, or wait out a
        quota window) stops at its next safe point and resumes at the next start; a webhook batch
        under way is delivered, as is the rest of the spool (`stop`)."""
        if self._running in ("scheduled", "push-only"):
            STOP.request(signal_number)

    def force_stop(self, signal_number: int) -> None:
        """A second signal: the run under way stops at its next safe point, nothing more is delivered."""
        self._forced = self._stopping = True
        STOP.request(signal_number)
        self._wake.set()

    def _loop(self) -> None:
        try:
            self.first_run()
            next_reconcile = time.monotonic() + self.reconcile_seconds
            retry_push_at: float | None = None
            while True:
                if self._stopping:
                    while not self._forced and self.spool.ready(1):
                        self.deliver()
                    return
                if self.reconcile_seconds and time.monotonic() >= next_reconcile:
                    code = self.reconcile()
                    next_reconcile = time.monotonic() + self.reconcile_seconds
                elif self.spool.ready(1):
                    hold = self.pacer.pause()
                    if hold > 0:
                        self._gather(hold)
                        continue
                    code = self.deliver()
                elif retry_push_at is not None and time.monotonic() >= retry_push_at:
                    code = self.push_pending()
                else:
                    self._sleep(next_reconcile, retry_push_at)
                    continue
                retry_push_at = None if code in COMPLETED and code != ExitCode.DEFERRED else time.monotonic() + PUSH_RETRY_SECONDS
        except BaseException as exc:  # the process stays up for /healthz to report it (503)
            self.failure = exc
            log.exception("serve: the worker stopped unexpectedly; /healthz answers 503 and serve exits")
            if self.on_failure is not None:
                self.on_failure()

    def _sleep(self, next_reconcile: float, retry_push_at: float | None) -> None:
        """Until an event arrives, a held-back event is due, or a timer fires."""
        deadlines = [retry_push_at] if retry_push_at is not None else []
        if self.reconcile_seconds:
            deadlines.append(next_reconcile)
        due = self.spool.next_due()
        if due is not None:
            deadlines.append(time.monotonic() + (due - datetime.now(timezone.utc)).total_seconds())
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        if self._wake.wait(timeout):
            self._wake.clear()
            if not self._stopping:
                time.sleep(LINGER_SECONDS)

    def _gather(self, seconds: float) -> None:
        """Let events gather in the spool for `seconds` (`pacing.py`); only a stop ends it sooner."""
        until = time.monotonic() + seconds
        while not self._stopping and (left := until - time.monotonic()) > 0:
            self._wake.wait(left)
            self._wake.clear()

    def first_run(self) -> ExitCode:
        """At start: the reconciliation (what happened while nobody listened), or without a timer a
        push of what an earlier process staged and did not push."""
        return self.reconcile() if self.reconcile_seconds else self.push_pending()

    def reconcile(self) -> ExitCode:
        """The scheduled run (lookback window, then push), as cron would start it."""
        if self._stopping:
            return ExitCode.OK
        self._running = "scheduled"
        return self._finish("scheduled", *execute(self.settings, self.source_options, self.gainsight_options, store=self.store))

    def push_pending(self) -> ExitCode:
        if self._stopping:
            return ExitCode.OK
        self._running = "push-only"
        settings = replace(self.settings, push_only=True)
        return self._finish("push-only", *execute(settings, None, self.gainsight_options, store=self.store))

    def deliver(self) -> ExitCode:
        """One batch: the due events through stage and push; then the spool forgets what was staged."""
        batch = self.spool.ready(MAX_EVENTS)
        events = Events(
            records=[event.record for event in batch if event.record is not None],
            ids={event.response_id for event in batch if event.record is None},
        )
        staged: list[StageResult] = []

        def stage(store: StagingStore, report: ExtractReport) -> StageResult:
            options = _events_options(self.source_options)
            result = run_stage(
                make_pipeline(self.settings, store), store, report, None,
                lambda: customergauge_events(events, report=report, **options), restore_state=not self._restored,
            )  # fmt: skip
            self._restored = True
            staged.append(result)
            return result

        self._running = "webhook"
        self.pacer.started()
        log.info("serve: delivering %d event(s) (%d records, %d ids to look up)", len(batch), len(events.records), len(events.ids))
        code, result = execute(self.settings, None, self.gainsight_options, store=self.store, stage=("webhook", stage))
        self._settle(batch, events, bool(staged), code)
        if result is not None and result.push is not None:
            self.pacer.record(result.push.calls)
        return self._finish("webhook", code, result)

    def _settle(self, batch: list[Spooled], events: Events, staged: bool, code: ExitCode) -> None:
        if not staged:
            self.spool.retry_later([event.seq for event in batch], ID_RETRY_DELAY)
            log.warning("serve: %d event(s) stay in the spool: the batch failed before staging (exit %d)", len(batch), int(code))
            return
        done = [event for event in batch if event.record is not None or event.response_id in events.resolved]
        waiting = [event for event in batch if event.record is None and event.response_id not in events.resolved]
        given_up = [event for event in waiting if event.attempts + 1 >= ID_RETRIES]
        self.spool.remove([event.seq for event in done + given_up])
        self.spool.retry_later([event.seq for event in waiting if event not in given_up], ID_RETRY_DELAY)
        if given_up:
            log.warning(
                "serve: %d id-only event(s) not found in CustomerGauge's lookback window after %d tries; "
                "left to the reconciliation", len(given_up), ID_RETRIES,
            )  # fmt: skip
        if code in COMPLETED:
            now = datetime.now(timezone.utc)
            for event in done:
                self.metrics.latency.observe((now - event.received_at).total_seconds())

    def _finish(self, mode: str, code: ExitCode, result: StageResult | None) -> ExitCode:
        self._running = None
        now = datetime.now(timezone.utc)
        self.last_run = LastRun(mode, int(code), now)
        self.metrics.runs.labels(mode, str(int(code))).inc()
        self.metrics.last_exit_code.labels(mode).set(int(code))
        if code in COMPLETED:
            self.last_success = self.last_run
            self.metrics.last_success.set(now.timestamp())
        for family, windows in QuotaLimiter(self.gainsight.quotas, quota_log_reader(self.store.connection)).remaining().items():
            for window, left in windows.items():
                self.metrics.quota_left.labels(family, window).set(left)
        return code


def _events_options(source_options: dict[str, Any]) -> dict[str, Any]:
    """The scheduled source's explicit options (tests, the benchmark) that the events source takes too."""
    accepted = inspect.signature(customergauge_events).parameters
    return {key: value for key, value in source_options.items() if key in accepted}
