"""`status`: what the connector has done and what is waiting, read from the DuckDB file read-only.

It opens the file read-only and changes nothing, so it is safe next to cron. DuckDB lets no other
process read a file while a run holds it read-write: then status says so and exits 4 (LOCKED),
like a second run would.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import duckdb

from connector_common.sql import table_exists, view_exists
from destinations.gainsight import GainsightSettingError, load_settings
from destinations.gainsight.quota import QuotaLimiter
from destinations.gainsight.settings import GainsightSettings
from destinations.gainsight.store import dead_letter_counts, last_cursor, outbox_counts, quota_log_reader

from .errors import ExitCode
from .history import RunRecord, recent
from .settings import RunSettings
from .staging import QUARANTINE, RESPONSES, require_staging_file, staging_locked


def show_status(settings: RunSettings, runs: int, as_json: bool) -> ExitCode:
    """Print the status (text, or one JSON document with `as_json`); raises CommandError."""
    gainsight, why_not = _gainsight_settings()
    with _open_read_only(settings) as db:
        state = collect(db, settings.dataset_name, runs, gainsight, why_not)
    print(json.dumps(state, indent=2, default=str) if as_json else render(state, settings))
    return ExitCode.OK


def _gainsight_settings() -> tuple[GainsightSettings | None, str | None]:
    """The outbox and quota figures depend on them; status still works without them."""
    try:
        return load_settings(), None
    except GainsightSettingError as exc:
        return None, str(exc)


def _open_read_only(settings: RunSettings) -> duckdb.DuckDBPyConnection:
    path = settings.duckdb_path
    require_staging_file(path)
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():  # DuckDB lets nothing else read a file a process holds read-write
            raise staging_locked(path, "status", exc) from None
        raise


def collect(
    db: duckdb.DuckDBPyConnection, dataset: str, runs: int, gainsight: GainsightSettings | None, why_not: str | None
) -> dict[str, Any]:
    """Everything status shows, as plain data (the `--json` document)."""
    cursor = last_cursor(db)
    return {
        "read_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cursor": {"run_id": cursor[0], "feeds": cursor[1]} if cursor else None,
        "runs": [asdict(run) for run in recent(db, runs)],
        "staged_responses": _count(db, dataset, RESPONSES),
        "quarantine": _quarantine(db, dataset),
        "outbox": _outbox(db, dataset, gainsight) if gainsight else {"unknown": why_not},
        "dead_letters": dead_letter_counts(db),
        "quota_left": _quota_left(db, gainsight) if gainsight else {"unknown": why_not},
    }


def _count(db: duckdb.DuckDBPyConnection, schema: str, table: str) -> int:
    return int(db.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchall()[0][0]) if table_exists(db, schema, table) else 0


def _quarantine(db: duckdb.DuckDBPyConnection, dataset: str) -> dict[str, int]:
    if not view_exists(db, dataset, "quarantine_report"):
        return {"records": _count(db, dataset, QUARANTINE), "fixed_upstream": 0}
    total, fixed = db.execute(
        f'SELECT count(*), count(*) FILTER (WHERE fixed_upstream) FROM "{dataset}".quarantine_report'
    ).fetchall()[0]
    return {"records": int(total), "fixed_upstream": int(fixed)}


def _outbox(db: duckdb.DuckDBPyConnection, dataset: str, settings: GainsightSettings) -> dict[str, int]:
    """Responses and Timeline activities waiting for a push (the push's own outbox query, counted)."""
    if not table_exists(db, dataset, RESPONSES):
        return {"responses": 0, "activities": 0}
    counts = outbox_counts(db, dataset, settings)
    if counts is None:  # no push yet: every staged response waits
        return {"responses": _count(db, dataset, RESPONSES), "activities": 0}
    return {"responses": counts[0], "activities": counts[1]}


def _quota_left(db: duckdb.DuckDBPyConnection, settings: GainsightSettings) -> dict[str, dict[str, int]]:
    return QuotaLimiter(settings.quotas, quota_log_reader(db)).remaining()


def render(state: dict[str, Any], settings: RunSettings) -> str:
    """The text form, for a person at a terminal."""
    lines = [f"staging file: {settings.duckdb_path} (read {state['read_at']})"]
    cursor = state["cursor"]
    if cursor:
        feeds = ", ".join(f"{feed} {value or 'none'}" for feed, value in cursor["feeds"].items())
        lines.append(f"cursor: {feeds} (left by run {cursor['run_id']})")
    else:
        lines.append("cursor: none recorded yet (no scheduled run has finished)")
    lines.append(f"last {len(state['runs'])} run(s), newest first:")
    lines += [f"  {_run_line(RunRecord(**run))}" for run in state["runs"]] or ["  none recorded yet"]
    lines.append(f"staged responses: {state['staged_responses']:,}")
    quarantine = state["quarantine"]
    lines.append(
        f"quarantine: {quarantine['records']:,} record(s), {quarantine['fixed_upstream']:,} fixed upstream "
        f"(see {settings.dataset_name}.quarantine_report)"
    )
    outbox = state["outbox"]
    lines.append(
        f"outbox: unknown ({outbox['unknown']})"
        if "unknown" in outbox
        else f"outbox: {outbox['responses']:,} response(s) and {outbox['activities']:,} Timeline activit(y/ies) waiting for a push"
    )
    dead = state["dead_letters"]
    lines.append(
        "dead letters: "
        + (
            "; ".join(
                f"{obj} {d['records']:,}" + (f" ({d['will_retry']:,} will retry)" if d["will_retry"] is not None else "")
                for obj, d in dead.items()
            )
            or "none"
        )
        + (" (see gainsight.dead_letter_report)" if dead else "")
    )
    quota = state["quota_left"]
    lines.append(
        f"quota left: unknown ({quota['unknown']})"
        if "unknown" in quota
        else "quota left: "
        + "; ".join(f"{family} " + ", ".join(f"{left:,}/{window}" for window, left in w.items()) for family, w in quota.items())
    )
    return "\n".join(lines)


def _run_line(run: RunRecord) -> str:
    counts = run.counts or {}
    staged = counts.get("staged", {})
    would = "would be " if "dry-run" in run.mode else ""  # a dry run staged and quarantined nothing
    text = (
        f"{run.run_id} {run.mode}: exit {run.exit_code if run.exit_code is not None else '-'} ({run.outcome}); "
        f"fetched {counts.get('fetched', 0):,}, {would}new {staged.get('new', 0):,}, updated {staged.get('updated', 0):,}, "
        f"{would}quarantined {staged.get('quarantined', 0):,} ({staged.get('quarantined_new', 0):,} new)"
    )
    responses = counts.get("pushed", {}).get("responses")
    if responses and "dry-run" in run.mode:  # a dry run wrote nothing: its counts are a plan
        text += f"; planned, not written: responses to create {responses['created']:,}, to update {responses['updated']:,}"
    elif responses:
        text += (
            f"; responses created {responses['created']:,}, updated {responses['updated']:,}, "
            f"failed {responses['failed']:,}, deferred {responses['deferred']:,}"
        )
    if run.error:
        text += f"; error: {run.error}"
    return text
