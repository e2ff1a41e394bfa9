"""One run of the connector: lock the staging file, stage, push, summarise, record, pick the exit code.

Shared by the scheduled command and `--demo`, so the demo exercises exactly the production path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import duckdb
import pyarrow as pa

from connector_common import no_pandas
from connector_common.memory import limit_arenas
from connector_common.stop import StopRequested, stop_on_signals
from destinations.gainsight import GainsightSettingError, load_settings
from destinations.gainsight.quota import RunBudget
from destinations.gainsight.scheduler import Scheduler
from destinations.gainsight.store import ensure_run_history
from sources.customergauge import ExtractReport

from .alerts import dead_letter_novelty, ensure_reported, remember_reported
from .dry_run import run_dry
from .errors import WARNINGS, CommandError, ExitCode, exit_code_for, outcome_code
from .history import RunRecord, record
from .logs import bind_run_id, redact
from .privacy import apply_staging_rules
from .push import run_push
from .settings import RunSettings
from .stage import StageResult, make_pipeline, run_stage
from .staging import QUARANTINE, RESPONSES, StagingStore
from .summary import format_summary, one_line_summary, run_counts

log = logging.getLogger("nps.run")

# How a run fills staging when it is not the scheduled extract (serve's webhook batches): it gets the
# run's open store and report and returns what it staged.
StageStep = Callable[[StagingStore, ExtractReport], StageResult]


def _return_freed_memory() -> None:
    """Use the system allocator for Arrow buffers.

    Arrow's default pool (mimalloc) keeps freed pages for reuse, about 90 MB after a large
    extract, and that sits on top of DuckDB's buffer pool while the merge runs. The system
    allocator hands them back; measured cost on the extract: about 5%.
    """
    pa.set_memory_pool(pa.system_memory_pool())
    limit_arenas()  # glibc keeps what threads free in their arenas (connector_common.memory)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def execute(
    settings: RunSettings,
    source_options: dict[str, Any] | None = None,
    gainsight_options: dict[str, Any] | None = None,
    dry_run: bool = False,
    scheduler: Scheduler | None = None,
    store: StagingStore | None = None,
    stage: tuple[str, StageStep] | None = None,
) -> tuple[ExitCode, StageResult | None]:
    """Stage, then push; never raises for expected failures, returns the exit code instead.

    SIGINT/SIGTERM stop the run at the next safe point with exit 130/143 (connector_common.stop).
    A long-running caller (`serve`) passes the `store` it holds open for its lifetime (the run then
    leaves it open), and may replace the extract by a named `stage` step (mode, step).
    `scheduler` runs the push and owns its clock (a test passes one with a fake clock); the run's
    time budget (`max_run_minutes`) counts from the start, by that clock.
    """
    no_pandas.install()  # DuckDB and dlt look for pandas ~150 times per run (connector_common/no_pandas.py)
    scheduler = scheduler or Scheduler()
    budget = RunBudget(scheduler.clock() + settings.max_run_minutes * 60, settings.max_run_minutes)
    with stop_on_signals():
        return _execute(settings, source_options, gainsight_options, dry_run, scheduler, budget, store, stage)


def _execute(
    settings: RunSettings,
    source_options: dict[str, Any] | None,
    gainsight_options: dict[str, Any] | None,
    dry_run: bool,
    scheduler: Scheduler,
    budget: RunBudget,
    held_store: StagingStore | None = None,
    stage: tuple[str, StageStep] | None = None,
) -> tuple[ExitCode, StageResult | None]:
    started = time.monotonic()
    report = ExtractReport(run_id=new_run_id())
    bind_run_id(report.run_id)
    log.info("run %s: staging file %s", report.run_id, settings.duckdb_path)
    _return_freed_memory()
    try:
        # Checked before anything is fetched: a typo in the Gainsight settings should not cost an extract.
        destination = None if settings.stage_only else load_settings(gainsight_options).with_pii(settings.pii.push)
        store = held_store or _open_store(settings, dry_run)
    except (CommandError, GainsightSettingError) as exc:
        log.error("%s", exc)
        return exit_code_for(exc), None
    mode = stage[0] if stage else run_mode(settings, source_options, dry_run)
    run = RunRecord(report.run_id, mode, datetime.now(timezone.utc))
    result: StageResult | None = None
    outcome: ExitCode | None = None  # stays None only if the run is interrupted (KeyboardInterrupt, SystemExit)
    try:
        ensure_run_history(store.connection)
        ensure_reported(store.connection, store.dataset)
        if dry_run:
            result = run_dry(settings, store, report, source_options, destination)
        elif settings.push_only:
            result = StageResult(report=report, staged_rows=store.count(RESPONSES), quarantine_rows=store.count(QUARANTINE))
        elif stage is not None:
            result = stage[1](store, report)
        else:
            result = run_stage(make_pipeline(settings, store), store, report, source_options)
        if destination is not None and not dry_run:
            result.push = run_push(settings, store, report.run_id, destination, scheduler, budget)
            result.dead_letters = dead_letter_novelty(store.connection, report.run_id)
        if not dry_run:
            result.privacy = apply_staging_rules(store, settings.pii, destination)
        push = result.push
        # An account that starts waiting for a Company needs an admin once; the same wait is not re-alerted.
        # A dry run quarantines, rejects and defers nothing itself: its summary says what a real run would.
        outcome = ExitCode.OK if dry_run else outcome_code(
            result.quarantine.new,
            sum(n.new for n in result.dead_letters.values()),
            bool(push and (push.deferrals or push.waiting.started)),
        )
        code = ExitCode.OK if settings.warnings_as_success and outcome in WARNINGS else outcome
        run.counts = run_counts(result)
    except StopRequested as stop:
        result = result or StageResult(report=report)
        result.push = stop.push if result.push is None else result.push
        result.staged_rows, result.quarantine_rows = store.count(RESPONSES), store.count(QUARANTINE)
        outcome = code = exit_code_for(stop)
        run.error = str(stop)
        run.counts = run_counts(result)
        log.warning(
            "run %s stopped by %s during %s, at a safe point; the next run resumes from there",
            report.run_id,
            stop.signal_name,
            stop.where,
        )
    except Exception as exc:  # every failure must become a documented exit code
        outcome = code = exit_code_for(exc)
        run.error = redact(str(exc))
        run.counts = run_counts(result or StageResult(report=report))  # what was done before it failed
        if code == ExitCode.INTERNAL_ERROR:
            log.exception("run %s failed unexpectedly", report.run_id)
        else:
            log.error("run %s failed (exit %d): %s", report.run_id, int(code), exc)
        result = None
    finally:
        run.ended_at = datetime.now(timezone.utc)
        run.cursor_before, run.cursor_after = _cursors(report)
        if dry_run:
            run.cursor_after = run.cursor_before  # a dry run moves no cursor
        if outcome is not None:
            run.exit_code, run.outcome = int(code), outcome.name.lower()
        record(store.connection, run)
        remember_reported(store.connection, store.dataset, run)
        if held_store is None:
            if result is not None and result.privacy:
                _rewrite_scrubbed(store)
            store.close()
    if result is None:
        # stdout holds the last run's outcome for schedulers (`> last_run.txt`): never leave it empty.
        print(f"run {report.run_id}: failed, exit {int(code)} ({code.name.lower()}): {run.error}", flush=True)
        return code, None
    duration = time.monotonic() - started
    log.info("%s", one_line_summary(result, duration, code, outcome), extra={"counts": run.counts})
    print(format_summary(result, duration, str(settings.duckdb_path), code, outcome), flush=True)
    return code, result


def _open_store(settings: RunSettings, dry_run: bool) -> StagingStore:
    """The staging file, locked; for a dry run before any real run, an empty store in memory, so
    that the dry run creates no file a later run would open (`StagingStore.scratch`)."""
    if dry_run and not settings.duckdb_path.exists():
        return StagingStore.scratch(settings.duckdb_path, settings.dataset_name, settings.duckdb_memory_limit)
    return StagingStore.open(settings.duckdb_path, settings.dataset_name, settings.duckdb_memory_limit)


def _rewrite_scrubbed(store: StagingStore) -> None:
    """After the staging rules changed values, the file is rewritten (`StagingStore.rewrite`): a
    scrubbed e-mail or comment would otherwise stay in its freed blocks. The run's outcome stands if
    this fails: the values are out of every table, and the next scrubbing run rewrites again."""
    try:
        store.rewrite()
    except (OSError, duckdb.Error) as exc:
        log.warning("privacy: the staging file could not be rewritten, so scrubbed values may linger in its free space: %s", exc)


def run_mode(settings: RunSettings, source_options: dict[str, Any] | None, dry_run: bool) -> str:
    """How the run was asked to work, for run_history: scheduled, backfill, stage-only, push-only, dry-run."""
    labels = ["backfill" if (source_options or {}).get("backfill_start") else "scheduled"]
    if settings.push_only:
        labels = ["push-only"]
    labels += [label for label, on in (("stage-only", settings.stage_only), ("dry-run", dry_run)) if on]
    return ", ".join(labels)


def _cursors(report: ExtractReport) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Each feed's cursor before and after the run (feeds a backfill left alone are omitted)."""
    feeds = [feed for feed in report.feeds.values() if feed.cursor_before or feed.cursor_after]
    return (
        {feed.table: _iso(feed.cursor_before) for feed in feeds},
        {feed.table: _iso(feed.cursor_after) for feed in feeds},
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
