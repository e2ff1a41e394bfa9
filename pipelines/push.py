"""Push: DuckDB staging -> Gainsight, through dlt's custom destination.

The push pipeline's extract is the outbox (staged responses whose current version Gainsight does
not hold yet), read from DuckDB as Arrow; its load hands the file to the Gainsight destination.
Order for crash safety: first finish Bulk uploads an earlier run left open, then load any push
package an interrupted run left pending, then extract and load a fresh outbox. Everything is
idempotent against the ledger, so re-delivering a package never duplicates anything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import dlt
import pyarrow as pa
from dlt.pipeline.exceptions import PipelineStepFailed

from connector_common.memory import evict_duckdb_cache
from connector_common.pii import KEEP
from connector_common.stop import StopRequested
from destinations.gainsight import (
    GainsightError,
    GainsightSettingError,
    GainsightSettings,
    Pusher,
    PushReport,
    gainsight,
    read_outbox,
)
from destinations.gainsight.errors import LocalWriteFailed
from destinations.gainsight.quota import RunBudget
from destinations.gainsight.scheduler import Scheduler
from destinations.gainsight.store import ensure_views, given_up, resend_for_new_rules

from .logs import DLT_LOGGER
from .settings import RunSettings
from .stage import without_dlt_signal_handlers
from .staging import RESPONSES, StagingStore
from .summary import UNTRIED

log = logging.getLogger("nps.push")


def run_push(
    settings: RunSettings,
    store: StagingStore,
    run_id: str,
    gainsight_settings: GainsightSettings,
    scheduler: Scheduler | None = None,
    budget: RunBudget | None = None,
) -> PushReport:
    staged = store.count(RESPONSES)
    if not staged:
        log.info("push: nothing staged yet; no call made, so %s", UNTRIED)
        return PushReport()
    log.info("push: to Gainsight at %s", gainsight_settings.base_url)
    with store.one_thread():
        return _push(settings, store, run_id, gainsight_settings, staged, scheduler, budget)


def _push(
    settings: RunSettings,
    store: StagingStore,
    run_id: str,
    gainsight_settings: GainsightSettings,
    staged: int,
    scheduler: Scheduler | None,
    budget: RunBudget | None,
) -> PushReport:
    """The push, with DuckDB on one thread (`run_push`)."""
    pusher = Pusher(gainsight_settings, store.connection, settings.dataset_name, run_id, scheduler=scheduler, budget=budget)
    resent = resend_for_new_rules(store.connection, gainsight_settings.pii.fingerprint(), KEEP.fingerprint())
    if any(resent):
        log.warning(
            "push: the PII rules for Gainsight changed: %d responses and %d Timeline entries are sent again in the new form",
            *resent,
        )
    try:
        if pusher.recover():
            log.info("push: finished %d Bulk upload(s) left open by an earlier run", pusher.report.recovered_uploads)
        pipeline = dlt.pipeline(
            pipeline_name=f"{settings.pipeline_name}_push",
            destination=gainsight(pusher),
            pipelines_dir=settings.pipelines_dir,
        )
        without_dlt_signal_handlers(pipeline)
        pending = len(pipeline.list_extracted_load_packages()) + len(pipeline.list_normalized_load_packages())
        if pending:
            log.warning("push: re-delivering %d package(s) an interrupted run left pending", pending)
            _load(pipeline)
        outbox = _Outbox(store, settings.dataset_name, gainsight_settings)
        if not outbox.empty:  # an empty extract gives the sink nothing to deliver: dlt's three steps skipped
            pipeline.extract(dlt.resource(outbox, name="outbox"))
        store.release_memory()  # the scan of every staged response filled DuckDB's block cache: not needed again
        if not outbox.empty:
            _load(pipeline)
        report = pusher.finish()
    except StopRequested as stop:
        stop.push = pusher.finish()  # what this run did, for the summary of the stopped run
        raise
    finally:
        pusher.close()
    ensure_views(store.connection, settings.dataset_name, gainsight_settings)
    count_given_up(report, store, settings.dataset_name, gainsight_settings, staged, outbox.needs_response)
    if not outbox.rows:
        untried = "" if report.calls else f"; no call made, so {UNTRIED}"
        log.info("push: Gainsight is up to date (%s staged responses, none to push)%s", f"{staged:,}", untried)
    return report


def count_given_up(
    report: PushReport, store: StagingStore, dataset: str, settings: GainsightSettings, staged: int, needs_response: int
) -> None:
    """Given-up counts from the rule that picks what is retried (for every object), and the
    responses Gainsight holds as staged."""
    for name, count in (given_up(store.connection, dataset, settings) if store.table_exists(RESPONSES) else {}).items():
        report[name].given_up = count
    responses = report["responses"]
    responses.unchanged += max(0, staged - needs_response - responses.given_up)


class _FailedJobLines(logging.Filter):
    """dlt logs a failed job twice, with its traceback; the run reports the push's failure itself,
    once, as the cause (and a stop as a stop, not as a traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("Terminal exception in job" in text or "failed terminally in load" in text)


def _load(pipeline: dlt.Pipeline) -> None:
    """Normalize and load what is extracted; a failed push surfaces as its own error (the sink
    raised it as terminal, so the package stays pending for the next run)."""
    dlt_log, quiet = logging.getLogger(DLT_LOGGER), _FailedJobLines()
    dlt_log.addFilter(quiet)
    try:
        pipeline.normalize()
        pipeline.load()
    except PipelineStepFailed as exc:
        raise _push_failure(exc) from None
    finally:
        dlt_log.removeFilter(quiet)


def _push_failure(exc: PipelineStepFailed) -> Exception:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, (GainsightError, GainsightSettingError, LocalWriteFailed, StopRequested)):
            return cause
        cause = getattr(cause, "client_exception", None) or cause.__cause__ or cause.__context__
    return exc


class _Outbox:
    """The extract of the push pipeline, read from DuckDB as Arrow tables; counts what it yielded.

    Its first batch is read at once, so a run with nothing to push (most hourly runs) skips dlt's
    extract, normalize and load, which would deliver nothing (~0.2 CPU-s). It is an iterator, not
    a generator: for a generator dlt looks up the module of its frame (`inspect.getmodule`, a scan
    of every loaded module, ~10% of the push's CPU).
    """

    def __init__(self, store: StagingStore, dataset: str, settings: GainsightSettings) -> None:
        self._store = store
        self._dataset = dataset
        self._settings = settings
        self.rows = 0
        self.needs_response = 0
        self._batches = self._read()
        self._first = next(self._batches, None)
        self.empty = self._first is None

    def __iter__(self) -> Iterator[pa.Table]:
        return self

    def __next__(self) -> pa.Table:
        first, self._first = self._first, None
        return first if first is not None else next(self._batches)

    def _read(self) -> Iterator[pa.Table]:
        """The outbox a batch at a time. DuckDB's cache is evicted after each batch: the scan reads
        every staged response once, and DuckDB would keep each block it passed, up to its memory
        limit (+110 MB at 1M responses, under everything the process already holds)."""
        cursor = self._store.connection.cursor()
        try:
            for batch in read_outbox(cursor, self._dataset, self._settings):
                self.rows += batch.num_rows
                self.needs_response += sum(1 for value in batch.column("needs_response").to_pylist() if value)
                yield pa.Table.from_batches([batch])
                evict_duckdb_cache(self._store.connection)
        finally:
            cursor.close()
