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

from connector_common.stop import StopRequested
from destinations.gainsight import (
    GainsightSettings,
    Pusher,
    PushReport,
    gainsight,
    read_outbox,
)
from destinations.gainsight.plan import plan_push
from destinations.gainsight.store import ensure_views, given_up

from .settings import RunSettings
from .stage import without_dlt_signal_handlers
from .staging import RESPONSES, StagingStore

log = logging.getLogger("nps.push")


def run_push(
    settings: RunSettings, store: StagingStore, run_id: str, gainsight_settings: GainsightSettings, dry_run: bool = False
) -> PushReport:
    staged = store.count(RESPONSES)
    if not staged:
        log.info("push: nothing staged yet")
        return PushReport(dry_run=dry_run)
    log.info("push: %s", "planning (dry run)" if dry_run else f"to Gainsight at {gainsight_settings.base_url}")
    if dry_run:
        report = plan_push(store.connection, settings.dataset_name, gainsight_settings, staged)
        log.info("push: dry run planned from the ledger; nothing was sent to Gainsight")
        return report
    pusher = Pusher(gainsight_settings, store.connection, settings.dataset_name, run_id)
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
            pipeline.normalize()
            pipeline.load()
        outbox = _Outbox(store, settings.dataset_name, gainsight_settings)
        if pusher.failure is None:
            pipeline.extract(dlt.resource(outbox.batches(), name="outbox"))
            pipeline.normalize()
            pipeline.load()
        if pusher.failure is not None:
            raise pusher.failure
        report = pusher.finish()
    except StopRequested as stop:
        stop.push = pusher.finish()  # what this run did, for the summary of the stopped run
        raise
    finally:
        pusher.close()
    ensure_views(store.connection, settings.dataset_name, gainsight_settings)
    for name, count in given_up(store.connection, settings.dataset_name, gainsight_settings).items():
        report[name].given_up = count  # from the rule that picks what is retried, for every object
    responses = report["responses"]
    responses.unchanged += max(0, staged - outbox.needs_response - responses.given_up)
    if not outbox.rows:
        log.info("push: Gainsight is up to date (%s staged responses, none to push)", f"{staged:,}")
    return report


class _Outbox:
    """The extract of the push pipeline; counts what it yielded for the summary."""

    def __init__(self, store: StagingStore, dataset: str, settings: GainsightSettings) -> None:
        self._store = store
        self._dataset = dataset
        self._settings = settings
        self.rows = 0
        self.needs_response = 0

    def batches(self) -> Iterator[pa.Table]:
        cursor = self._store.connection.cursor()
        try:
            for batch in read_outbox(cursor, self._dataset, self._settings):
                self.rows += batch.num_rows
                self.needs_response += sum(1 for value in batch.column("needs_response").to_pylist() if value)
                yield pa.Table.from_batches([batch])
        finally:
            cursor.close()
