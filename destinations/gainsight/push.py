"""The push of one outbox into Gainsight, in dependency order.

Companies first (nothing may reference a Company that is not confirmed), then people (with their
Company association), then the response records (Bulk or sync), then Timeline activities. Each
step books every outcome in the ledger as it goes, so a run killed anywhere leaves a ledger the
next run continues from, and each step turns an exhausted quota into deferred work, not a crash.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from connector_common.stop import STOP

from .bulk import push_bulk, recover_uploads
from .client import GainsightClient
from .companies import resolve_companies
from .context import PushContext
from .errors import QuotaExhausted
from .people import upsert_people
from .quota import QuotaLimiter
from .report import PushReport
from .responses import pending_responses, push_sync
from .settings import GainsightSettings
from .store import Connection, Ledger, now
from .timeline import create_activities

log = logging.getLogger("nps.gainsight")


class Pusher:
    """Owns the client, limiter and ledger of one run."""

    def __init__(self, settings: GainsightSettings, connection: Connection, dataset: str, run_id: str):
        self.settings = settings
        self.dataset = dataset
        self.report = PushReport()
        self.ledger = Ledger(connection, run_id, settings.max_attempts)
        self.limiter = QuotaLimiter(settings.quotas, self.ledger, settings.max_rate_limit_wait_seconds)
        self.client = GainsightClient(settings, self.limiter)
        self.ctx = PushContext(settings, self.client, self.ledger, self.report)
        self.failure: Exception | None = None  # a fatal error met inside dlt's load step
        self.started = now()

    def recover(self) -> int:
        """Finish what an earlier run left open (Bulk uploads Gainsight was still processing)."""
        STOP.enter("the push: Bulk uploads left open by an earlier run")
        return recover_uploads(self.ctx, self._rebuild)

    def deliver(self, outbox: pa.Table) -> None:
        """Push one outbox table (a dlt load file) through all four steps."""
        outbox = self.ledger.still_pending(outbox)
        if not outbox.num_rows:
            log.info("gainsight: every row of this outbox file is already confirmed in the ledger")
            return
        log.info(
            "gainsight: pushing %s outbox rows (%s need the record, %s a Timeline activity)",
            f"{outbox.num_rows:,}",
            f"{_true(outbox, 'needs_response'):,}",
            f"{_true(outbox, 'needs_activity'):,}",
        )
        ctx = self.ctx
        try:
            STOP.enter("the push: companies")
            companies = resolve_companies(ctx, outbox)
            STOP.enter("the push: people")
            upsert_people(ctx, outbox, companies)
            rows, records = pending_responses(ctx, outbox, companies)
            use_bulk = bool(self.settings.response_bulk_job_id) and rows.num_rows >= self.settings.bulk_min_rows
            STOP.enter("the push: Bulk upload" if use_bulk else "the push: sync writes")
            (push_bulk if use_bulk else push_sync)(ctx, rows, records)
            if self.settings.timeline_enabled:
                STOP.enter("the push: Timeline")
                create_activities(ctx, outbox, companies)
        except QuotaExhausted as exhausted:
            # Each step defers its own remainder; this catches a quota hit between steps' loops
            # (e.g. the one metadata call): whatever was not confirmed stays in the outbox, and
            # is counted as deferred like the remainder of a step.
            self.report.defer(exhausted.family, exhausted.window, exhausted.resume_at)
            log.warning("gainsight: %s; the rest of the outbox waits for the next run", exhausted)
            rest = self.ledger.still_pending(outbox)
            for table, flag in (("responses", "needs_response"), ("activities", "needs_activity")):
                keys = rest["response_id"].filter(rest[flag]).to_pylist()
                if keys:
                    ctx.defer(table, keys, exhausted)

    def finish(self) -> PushReport:
        """Persist quota counts and fill the report's call statistics."""
        self.limiter.flush()
        report = self.report
        for table, keys in report.deferred_keys.items():
            report.settle(table, self.ledger.settled_since(table, list(keys), self.started))
        report.calls = dict(self.client.stats.calls)
        report.retries = self.client.stats.retries
        report.token_grants = self.client.token_grants
        report.quota_left = self.limiter.remaining()
        return report

    def close(self) -> None:
        self.client.close()
        self.ledger.close()

    def _rebuild(self, hashes: dict[str, str]) -> tuple[pa.Table, pa.Table]:
        return pending_responses(self.ctx, self.ledger.staged_rows(self.dataset, hashes), self.ledger.company_gsids())


def _true(table: pa.Table, column: str) -> int:
    return sum(1 for value in table[column].to_pylist() if value)
