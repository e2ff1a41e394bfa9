"""`--dry-run`: what a run would do, with no side effect on the sync state.

CustomerGauge is read into a throwaway copy of dlt's working folder (extract and normalize, never
load; `stage.preview_stage`): the staging table, the cursor and the pending packages stay as they
were. The outbox is computed over the staged responses overlaid, in memory (a DuckDB temporary
table, which never reaches the file), with the fetched ones; the push's own engine then plans it,
reading Gainsight (queries by key) and writing nothing: no Gainsight write, no ledger change, no
quota count saved. The plan is the one a real run would execute on the same data. Before the first
real run there is no staging file, and the runner hands this an empty store in memory
(`StagingStore.scratch`) instead of creating one: a dry run leaves nothing on disk.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from destinations.gainsight import GainsightSettings, Pusher, PushReport, read_outbox
from sources.customergauge import ExtractReport

from .alerts import quarantine_novelty
from .push import count_given_up
from .settings import RunSettings
from .stage import StageResult, preview_stage
from .staging import QUARANTINE, RESPONSES, StagingStore

log = logging.getLogger("nps.dry_run")

OVERLAY = "temp.main"  # the schema of the in-memory `nps_responses` the dry run plans from


def run_dry(
    settings: RunSettings,
    store: StagingStore,
    report: ExtractReport,
    source_options: dict[str, Any] | None,
    gainsight_settings: GainsightSettings | None,
) -> StageResult:
    """Extract without staging and plan the push without writing; the result counts both."""
    result = StageResult(report=report, dry_run=True, staging_on_disk=store.on_disk)
    with tempfile.TemporaryDirectory(prefix="nps-dry-run-") as scratch:
        files, quarantined = ([], []) if settings.push_only else preview_stage(settings, store, report, source_options, Path(scratch))
        result.changes = store.count_changes(files)
        result.quarantine = quarantine_novelty(store.connection, quarantined)  # what a real run would report
        result.staged_rows, result.quarantine_rows = store.count(RESPONSES), store.count(QUARANTINE)
        if gainsight_settings is not None:
            result.push = plan_push(settings, store, report.run_id, gainsight_settings, files)
    log.info("dry run: nothing was staged, written to Gainsight or booked")
    return result


def plan_push(
    settings: RunSettings, store: StagingStore, run_id: str, gainsight_settings: GainsightSettings, files: list[str]
) -> PushReport:
    """The push's plan for the staged responses as they would be after staging `files`."""
    pusher = Pusher(gainsight_settings, store.connection, settings.dataset_name, run_id, dry_run=True)
    cursor = store.connection.cursor()  # the overlay lives in this cursor's temporary schema only
    try:
        staged = _overlay(cursor, store, settings.dataset_name, files)
        if not staged:
            return PushReport(dry_run=True)
        outbox = read_outbox(cursor, settings.dataset_name, gainsight_settings, staged=OVERLAY).read_all()
        cursor.close()
        pusher.plan(outbox)
        report = pusher.finish()
    finally:
        cursor.close()
        pusher.close()
    needs_response = sum(1 for value in outbox["needs_response"].to_pylist() if value)
    count_given_up(report, store, settings.dataset_name, gainsight_settings, staged, needs_response)
    return report


def _overlay(cursor: Any, store: StagingStore, dataset: str, files: list[str]) -> int:
    """`temp.main.nps_responses`: staged responses, replaced by their fetched versions (the latest
    per response); returns how many."""
    parts = []
    if store.table_exists(RESPONSES):
        parts.append(f'SELECT * FROM "{dataset}".{RESPONSES}')
    if files:
        fetched = (
            "SELECT * FROM read_parquet($files, union_by_name = true) "
            "QUALIFY row_number() OVER (PARTITION BY response_id ORDER BY fetched_at DESC) = 1"
        )
        if parts:
            parts[0] += " WHERE response_id NOT IN (SELECT response_id FROM read_parquet($files, union_by_name = true))"
        parts.append(fetched)
    if not parts:
        return 0
    cursor.execute(
        f"CREATE OR REPLACE TEMP TABLE {RESPONSES} AS {' UNION ALL BY NAME '.join(parts)}",
        {"files": files} if files else {},
    )
    return int(cursor.execute(f"SELECT count(*) FROM {OVERLAY}.{RESPONSES}").fetchone()[0])
