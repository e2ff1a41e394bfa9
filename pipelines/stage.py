"""Stage: CustomerGauge -> DuckDB, incrementally, through dlt.

The order matters for crash safety. dlt commits the incremental cursor together with the data in
one load package; if a previous run died after extracting but before loading, that package is
still pending and must be loaded first (a plain `run()` would only finish it and not extract).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
import duckdb
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination import Destination
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources import DltSource

from connector_common.dlt_destination import resolved_once
from connector_common.memory import return_freed_memory
from connector_common.stop import STOP, StopRequested
from destinations.gainsight import PushReport
from sources.customergauge import ExtractReport, customergauge
from sources.customergauge.errors import CustomerGaugeError, InvalidSetting

from .alerts import NewAndSeen, quarantine_novelty
from .errors import ConfigError, StagingFailed
from .privacy import PrivacyCounts
from .settings import RunSettings, describe_missing
from .staging import QUARANTINE, RESPONSES, ChangeCounts, StagingStore

log = logging.getLogger("nps.stage")


@dataclass
class StageResult:
    report: ExtractReport
    changes: ChangeCounts = field(default_factory=ChangeCounts)
    quarantine: NewAndSeen = field(default_factory=NewAndSeen)  # this run's quarantined records, new or seen before
    finished_pending: int = 0
    staged_rows: int = 0
    quarantine_rows: int = 0
    push: PushReport | None = None  # None when the run only staged
    dead_letters: dict[str, NewAndSeen] = field(default_factory=dict)  # per object, written by this run's push
    dry_run: bool = False  # fetched and planned only: nothing staged, no cursor moved
    staging_on_disk: bool = True  # False for a dry run before the first real run: no file was created
    privacy: PrivacyCounts | None = None  # what the PII staging rules changed at the end of the run


def make_pipeline(settings: RunSettings, store: StagingStore) -> dlt.Pipeline:
    """A dlt pipeline writing through the store's (locked) connection."""
    pipeline = dlt.pipeline(
        pipeline_name=settings.pipeline_name,
        destination=staging_destination(store),
        dataset_name=settings.dataset_name,
        pipelines_dir=settings.pipelines_dir,
    )
    return without_dlt_signal_handlers(pipeline)


def staging_destination(store: StagingStore) -> Destination[Any, Any]:
    """dlt's DuckDB destination on the store's connection, its configuration resolved once per
    run rather than for each of dlt's ~25 capability lookups (connector_common.dlt_destination)."""
    return resolved_once(dlt.destinations.duckdb(store.connection))


def without_dlt_signal_handlers(pipeline: dlt.Pipeline) -> dlt.Pipeline:
    """Leave SIGINT/SIGTERM to the run's stop request (connector_common.stop).

    dlt swaps in its own handlers around normalize and load and drops the first signal once its
    job pool is empty, so a stop asked for during the push would be forgotten.
    """
    pipeline.runtime_config.intercept_signals = False
    return pipeline


def finish_pending(pipeline: dlt.Pipeline, store: StagingStore) -> int:
    """Load packages an interrupted run left behind; returns how many there were."""
    pending = len(pipeline.list_extracted_load_packages()) + len(pipeline.list_normalized_load_packages())
    if not pending:
        return 0
    log.warning("stage: finishing %d load package(s) left pending by an interrupted run", pending)
    try:
        pipeline.normalize()
        load(pipeline, store)
    except PipelineStepFailed as exc:
        raise unwrap_step_failure(exc) from None
    return pending


def load(pipeline: dlt.Pipeline, store: StagingStore) -> None:
    """Load normalized packages; if DuckDB runs out of its memory budget, retry once with more.
    Freed memory goes back to the system before and after (the next part's extract, or the push,
    would otherwise start on top of it), and DuckDB loads on one thread (`StagingStore.one_thread`).

    The budget keeps a run's memory predictable, but how much a merge needs depends on the data
    (very long comments, many properties). A run that hit the limit would otherwise leave its
    package pending and fail the same way every hour.
    """
    return_freed_memory()  # what the extract freed, before DuckDB allocates
    with store.one_thread():
        _load_or_retry(pipeline, store)
    store.release_memory()


def _load_or_retry(pipeline: dlt.Pipeline, store: StagingStore) -> None:
    try:
        pipeline.load()
    except PipelineStepFailed as exc:
        if not _out_of_memory(exc):
            raise
        previous = store.memory_limit
        raised = store.raise_memory_limit()
        log.warning(
            "stage: DuckDB needed more than %s to merge this part; retrying with %s. Raise "
            "nps_to_gainsight.duckdb_memory_limit (or lower sources.customergauge.rows_per_load) "
            "to avoid the retry",
            previous,
            raised,
        )
        pipeline.load()


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it was raised from, outermost first."""
    cause: BaseException | None = exc
    while cause is not None:
        yield cause
        cause = cause.__cause__ or cause.__context__


def _out_of_memory(exc: BaseException) -> bool:
    return any(
        isinstance(cause, duckdb.OutOfMemoryException) or "Out of Memory Error" in str(cause) for cause in _causes(exc)
    )


def run_stage(
    pipeline: dlt.Pipeline,
    store: StagingStore,
    report: ExtractReport,
    source_options: dict[str, Any] | None = None,
    make_source: Callable[[], DltSource] | None = None,
    restore_state: bool = True,
) -> StageResult:
    """Extract from CustomerGauge, merge into DuckDB, refresh the views.

    `make_source` replaces the scheduled extract by another source of the same tables (serve's
    webhook events), which then goes through exactly the same steps. `restore_state=False` skips
    the state check against DuckDB, for a process whose earlier run this hour already did it.

    The steps are dlt's `run()` spelled out, for two reasons: the run counts new and changed
    responses in the normalized files before they are merged, and a large window is loaded in
    parts (`rows_per_load`), each its own load package, so a merge never needs more memory than
    one part and a crash keeps every part already loaded.
    """
    result = StageResult(report=report)
    # What `pipeline.run()` would do first: restore state and schema from DuckDB when the working
    # folder is new (wiped, new machine), so the cursor survives.
    if restore_state:
        pipeline.sync_destination()
    result.finished_pending = finish_pending(pipeline, store)
    tables: list[str] = []
    while True:
        try:
            if make_source is not None:
                source = make_source()
            else:
                source = customergauge(report=report, load_in_parts=True, **(source_options or {}))
            if tables:
                source = source.with_resources(*tables)
            STOP.enter("the extract from CustomerGauge")
            pipeline.extract(source)
            STOP.enter("normalize")
            pipeline.normalize()
            responses, quarantine = staged_files(pipeline, RESPONSES, QUARANTINE)
            changes = store.count_changes(responses)
            quarantined = quarantine_novelty(store.connection, quarantine)
            STOP.enter("the DuckDB load")
            load(pipeline, store)
        except PipelineStepFailed as exc:
            raise unwrap_step_failure(exc) from None
        except ConfigFieldMissingException as exc:
            raise describe_missing(exc, "sources.customergauge") from None
        result.changes.new += changes.new
        result.changes.updated += changes.updated
        result.quarantine.add(quarantined)
        tables = report.unfinished
        STOP.enter("staging")
        if not tables:
            break
        fetched = sum(feed.fetched for feed in report.feeds.values())
        log.info(
            "stage: part %d loaded (%s rows fetched so far); continuing %s",
            max(feed.loads for feed in report.feeds.values()),
            f"{fetched:,}",
            ", ".join(tables),
            extra={"counts": {"fetched": fetched, "new": result.changes.new, "updated": result.changes.updated}},
        )
    store.ensure_views()
    result.staged_rows = store.count(RESPONSES)
    result.quarantine_rows = store.count(QUARANTINE)
    return result


def preview_stage(
    settings: RunSettings, store: StagingStore, report: ExtractReport, source_options: dict[str, Any] | None, scratch: Path
) -> tuple[list[str], list[str]]:
    """`--dry-run`'s extract: the parquet files of the responses and of the quarantined records a
    run would stage now.

    dlt's working folder is copied to `scratch` and the source is extracted and normalized there,
    part after part, and never loaded: the staging table, the cursor (in DuckDB and in the real
    working folder) and the pending packages stay exactly as they were. A pending package of an
    interrupted run is normalized with the rest, as a real run would load it first.
    """
    working = Path(settings.pipelines_dir or get_dlt_pipelines_dir()) / settings.pipeline_name
    if working.exists():
        shutil.copytree(working, scratch / settings.pipeline_name)
    pipeline = without_dlt_signal_handlers(
        dlt.pipeline(
            pipeline_name=settings.pipeline_name,
            destination=staging_destination(store),
            dataset_name=settings.dataset_name,
            pipelines_dir=str(scratch),
        )
    )
    pipeline.sync_destination()  # reads the cursor from DuckDB when the working folder is new
    tables: list[str] = []
    while True:
        try:
            source = customergauge(report=report, **(source_options or {}))
            STOP.enter("the extract from CustomerGauge (dry run)")
            pipeline.extract(source.with_resources(*tables) if tables else source)
            pipeline.normalize()
        except PipelineStepFailed as exc:
            raise unwrap_step_failure(exc) from None
        except ConfigFieldMissingException as exc:
            raise describe_missing(exc, "sources.customergauge") from None
        tables = report.unfinished
        if not tables:
            responses, quarantine = staged_files(pipeline, RESPONSES, QUARANTINE)
            return responses, quarantine


def staged_files(pipeline: dlt.Pipeline, *tables: str) -> list[list[str]]:
    """Files of each of `tables` in the package normalized for this run and not yet loaded. One
    pass for all of them: each package's info loads its schema (a few ms per table asked)."""
    files: dict[str, list[str]] = {table: [] for table in tables}
    for load_id in pipeline.list_normalized_load_packages():
        for job in pipeline.get_load_package_info(load_id).jobs.get("new_jobs", []):
            if job.job_file_info.table_name in files:
                files[job.job_file_info.table_name].append(job.file_path)
    return [files[table] for table in tables]


def unwrap_step_failure(exc: PipelineStepFailed) -> Exception:
    """Surface the CustomerGauge / config error inside dlt's step wrapper; name load failures."""
    for cause in _causes(exc):
        if isinstance(cause, (CustomerGaugeError, ConfigError, InvalidSetting, StopRequested)):
            return cause
        if isinstance(cause, ConfigFieldMissingException):
            return describe_missing(cause, "sources.customergauge")
    if exc.step in ("load", "normalize"):
        return StagingFailed(
            f"writing to DuckDB failed in the {exc.step} step ({exc.exception}); the load package "
            "stays pending and the next run finishes it before extracting"
        )
    return exc
