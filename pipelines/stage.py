"""Stage: CustomerGauge -> DuckDB, incrementally, through dlt.

The order matters for crash safety. dlt commits the incremental cursor together with the data in
one load package; if a previous run died after extracting but before loading, that package is
still pending and must be loaded first (a plain `run()` would only finish it and not extract).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.customergauge import ExtractReport, customergauge
from sources.customergauge.errors import CustomerGaugeError, InvalidSetting

from .errors import ConfigError, StagingFailed
from .settings import RunSettings, describe_missing
from .staging import QUARANTINE, RESPONSES, ChangeCounts, StagingStore

log = logging.getLogger("nps.stage")


@dataclass
class StageResult:
    report: ExtractReport
    changes: ChangeCounts = field(default_factory=ChangeCounts)
    finished_pending: int = 0
    staged_rows: int = 0
    quarantine_rows: int = 0


def make_pipeline(settings: RunSettings, store: StagingStore) -> dlt.Pipeline:
    """A dlt pipeline writing through the store's (locked) connection."""
    return dlt.pipeline(
        pipeline_name=settings.pipeline_name,
        destination=dlt.destinations.duckdb(store.connection),
        dataset_name=settings.dataset_name,
        pipelines_dir=settings.pipelines_dir,
    )


def finish_pending(pipeline: dlt.Pipeline) -> int:
    """Load packages an interrupted run left behind; returns how many there were."""
    pending = len(pipeline.list_extracted_load_packages()) + len(pipeline.list_normalized_load_packages())
    if not pending:
        return 0
    log.warning("stage: finishing %d load package(s) left pending by an interrupted run", pending)
    try:
        pipeline.normalize()
        pipeline.load()
    except PipelineStepFailed as exc:
        raise _unwrap(exc) from None
    return pending


def run_stage(
    pipeline: dlt.Pipeline,
    store: StagingStore,
    report: ExtractReport,
    source_options: dict[str, Any] | None = None,
) -> StageResult:
    """Extract from CustomerGauge, merge into DuckDB, refresh the views."""
    result = StageResult(report=report)
    result.finished_pending = finish_pending(pipeline)
    try:
        source = customergauge(report=report, **(source_options or {}))
    except ConfigFieldMissingException as exc:
        raise describe_missing(exc, "sources.customergauge") from None
    store.snapshot_response_hashes()
    try:
        pipeline.run(source)
    except PipelineStepFailed as exc:
        raise _unwrap(exc) from None
    except ConfigFieldMissingException as exc:
        raise describe_missing(exc, "sources.customergauge") from None
    result.changes = store.changes_since_snapshot()
    store.ensure_views()
    result.staged_rows = store.count(RESPONSES)
    result.quarantine_rows = store.count(QUARANTINE)
    return result


def _unwrap(exc: PipelineStepFailed) -> Exception:
    """Surface the CustomerGauge / config error inside dlt's step wrapper; name load failures."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, (CustomerGaugeError, ConfigError, InvalidSetting)):
            return cause  # type: ignore[return-value]
        if isinstance(cause, ConfigFieldMissingException):
            return describe_missing(cause, "sources.customergauge")
        cause = cause.__cause__ or cause.__context__
    if exc.step in ("load", "normalize"):
        return StagingFailed(
            f"writing to DuckDB failed in the {exc.step} step ({exc.exception}); the load package "
            "stays pending and the next run finishes it before extracting"
        )
    return exc
