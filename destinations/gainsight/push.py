"""The push of one outbox into Gainsight: the engine over every spec, with the run's client and ledger.

Companies first (nothing may reference a Company that is not confirmed), then the response records
(Bulk or sync), then Timeline activities, then people (with their Company association): the value
order of `specs.SPECS`, run by the scheduler (`scheduler.py`), which lets another object's calls go
on while one quota family's window is full. Every outcome is booked in the ledger as it lands, so a run killed anywhere
leaves a ledger the next run continues from, and a used-up quota becomes deferred work, not a crash.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from connector_common.stop import STOP

from .bulk import recover_uploads
from .client import GainsightClient
from .companies import CompanyWriter
from .engine import Engine, PushContext, Writer
from .people import PersonWriter
from .quota import QuotaLimiter, RunBudget
from .report import PushReport
from .scheduler import Scheduler
from .settings import GainsightSettings
from .specs import COMPANY, PERSON, SYNC, TIMELINE
from .store import Connection, Ledger, now
from .timeline import TimelineWriter
from .writes import SyncWriter

log = logging.getLogger("nps.gainsight")

WRITERS: dict[str, type[Writer]] = {SYNC: SyncWriter, COMPANY: CompanyWriter, PERSON: PersonWriter, TIMELINE: TimelineWriter}


class _QuotaCounts:
    """The dry run's quota store: it sees the counts of earlier runs and records nothing."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def load_quota_counts(self, since: float) -> dict[tuple[str, str, int], int]:
        return self.ledger.load_quota_counts(since)

    def save_quota_counts(self, counts: dict[tuple[str, str, int], int]) -> None:
        """Nothing: a dry run changes no sync state."""


class Pusher:
    """Owns the client, limiter and ledger of one run (`dry_run`: reads only, books nothing)."""

    def __init__(
        self,
        settings: GainsightSettings,
        connection: Connection,
        dataset: str,
        run_id: str,
        dry_run: bool = False,
        scheduler: Scheduler | None = None,
        budget: RunBudget | None = None,
    ):
        """`scheduler` carries the clock and the waits (a test's fake clock); `budget`: when the
        push stops calling Gainsight (the run's `max_run_minutes`)."""
        self.settings = settings
        self.dataset = dataset
        self.report = PushReport(dry_run=dry_run)
        self.ledger = Ledger(connection, run_id, settings.max_attempts)
        scheduler = scheduler or Scheduler()
        quota_store = _QuotaCounts(self.ledger) if dry_run else self.ledger
        self.limiter = QuotaLimiter(
            settings.quotas,
            quota_store,
            settings.max_rate_limit_wait_seconds,
            scheduler.clock,
            scheduler.pause,
            budget,
            scheduler.checkpoint,
        )
        self.client = GainsightClient(settings, self.limiter, sleep=scheduler.pause)
        self.ctx = PushContext(settings, self.client, self.ledger, self.report, dry_run, dataset, scheduler)
        self.engine = Engine(self.ctx, WRITERS)
        self.started = now()

    def recover(self) -> int:
        """Finish what an earlier run left open (Bulk uploads Gainsight was still processing)."""
        STOP.enter("the push: Bulk uploads left open by an earlier run")
        return recover_uploads(self.ctx)

    def deliver(self, outbox: str | pa.Table) -> None:
        """Push one outbox (a dlt load file's path, or a table): every object, in value order.
        The outbox goes into DuckDB, which the engine reads a page at a time."""
        rows = self.ledger.load_outbox(outbox, self.settings.people_enabled)
        if not rows:
            log.info("gainsight: every row of this outbox file is already confirmed in the ledger")
            return
        log.info("gainsight: pushing %s outbox rows", f"{rows:,}")
        self.engine.run()

    def plan(self, outbox: pa.Table) -> None:
        """The dry run: the plan the push would execute for `outbox`, made with reads only."""
        if self.ledger.load_outbox(outbox, self.settings.people_enabled):
            self.engine.run()

    def finish(self) -> PushReport:
        """Persist quota counts and fill the report's call statistics."""
        self.limiter.flush()
        report = self.report
        for table, keys in report.deferred_keys.items():
            if not report.dry_run:
                report.settle(table, self.ledger.settled_since(table, list(keys), self.started))
        report.calls = dict(self.client.stats.calls)
        report.retries = self.client.stats.retries
        report.token_grants = self.client.token_grants
        report.quota_left = self.limiter.remaining()
        return report

    def close(self) -> None:
        self.client.close()
        self.ledger.close()
