"""The run history: one row per run that got the lock, in the DuckDB file (`gainsight.run_history`).

Orchestrators keep exit codes for a while at best; the history keeps, next to the data it is about,
what each run did: when, in which mode, how it ended (the real outcome even when
`warnings_as_success` turned a warning into exit 0), the counts and the cursor before and after.
`status` reads it read-only.

It lives in the `gainsight` schema, the connector's own state beside the ledger and quota log:
outside dlt's dataset (dlt never migrates, drops or refreshes it) and without adding a schema
name that could collide with the DuckDB file's name (DuckDB cannot tell a catalog from a schema of
the same name).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from connector_common.sql import table_exists
from destinations.gainsight.ledger import SCHEMA

log = logging.getLogger("nps.history")

TABLE = f"{SCHEMA}.run_history"

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {TABLE} (
    run_id VARCHAR PRIMARY KEY, mode VARCHAR, started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ,
    exit_code INTEGER, outcome VARCHAR, counts JSON, cursor_before JSON, cursor_after JSON, error VARCHAR);
"""

# Outcomes of runs that completed and so told the operator what they found (summary, exit code).
REPORTED_OUTCOMES = ("ok", "quarantined", "dead_lettered", "deferred")

COLUMNS = ("run_id", "mode", "started_at", "ended_at", "exit_code", "outcome", "counts", "cursor_before", "cursor_after", "error")


@dataclass
class RunRecord:
    """One row of the history; `counts` and the cursors (feed -> ISO timestamp) are stored as JSON."""

    run_id: str
    mode: str
    started_at: datetime
    ended_at: datetime | None = None
    exit_code: int | None = None  # what the process exited with
    outcome: str = "interrupted"  # what really happened (ok, quarantined, deferred, source_api_error, ...)
    counts: dict[str, Any] = field(default_factory=dict)
    cursor_before: dict[str, str | None] = field(default_factory=dict)
    cursor_after: dict[str, str | None] = field(default_factory=dict)
    error: str | None = None


def ensure(db: duckdb.DuckDBPyConnection) -> None:
    """Create the table if needed (at the start of a run: alerts.py reads it during the run)."""
    db.execute(DDL)


def record(db: duckdb.DuckDBPyConnection, run: RunRecord) -> None:
    """Write the run's row. A failure here is logged, never raised: the run's own outcome stands."""
    values = [getattr(run, name) for name in COLUMNS]
    values = [json.dumps(v, default=str) if isinstance(v, dict) else v for v in values]
    try:
        ensure(db)
        db.execute(
            f"INSERT OR REPLACE INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", values
        )
    except duckdb.Error as exc:
        log.warning("could not record run %s in %s: %s", run.run_id, TABLE, exc)


def recent(db: duckdb.DuckDBPyConnection, limit: int) -> list[RunRecord]:
    """The last `limit` runs, newest first (none when no run was recorded yet)."""
    if not table_exists(db, SCHEMA, "run_history"):
        return []
    rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY started_at DESC LIMIT ?", [limit]).fetchall()
    runs = []
    for row in rows:
        values = dict(zip(COLUMNS, row))
        for name in ("counts", "cursor_before", "cursor_after"):
            values[name] = json.loads(values[name]) if values[name] else {}
        runs.append(RunRecord(**values))
    return runs


def last_cursor(db: duckdb.DuckDBPyConnection) -> tuple[str, dict[str, str | None]] | None:
    """The cursor the last run that moved or kept one left (backfills leave it alone): run id, cursor."""
    if not recent(db, 1):
        return None
    # A run that failed before its extract finished records its feeds with no cursor: it left the
    # stored cursor as it was, so the one to show is the last run's that actually named one.
    rows = db.execute(
        f"""SELECT run_id, cursor_after FROM {TABLE}
            WHERE cursor_after IS NOT NULL AND cursor_after <> '{{}}' ORDER BY started_at DESC"""
    ).fetchall()
    for run_id, cursor in rows:
        feeds = json.loads(cursor)
        if any(value is not None for value in feeds.values()):
            return run_id, feeds
    return None
