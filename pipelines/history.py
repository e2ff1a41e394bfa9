"""The run history: one row per run that got the lock, in the DuckDB file (`gainsight.run_history`).

Orchestrators keep exit codes for a while at best; the history keeps, next to the data it is about,
what each run did: when, in which mode, how it ended (the real outcome even when
`warnings_as_success` turned a warning into exit 0), the counts and the cursor before and after.
`status` reads it read-only. Its table and SQL are the state store's (`destinations/gainsight/store.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from destinations.gainsight.store import (
    RUN_HISTORY,
    Connection,
    StateError,
    recent_runs,
    record_run,
)

log = logging.getLogger("nps.history")

# Outcomes of runs that completed and so told the operator what they found (summary, exit code).
REPORTED_OUTCOMES = ("ok", "quarantined", "dead_lettered", "deferred")


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


def record(db: Connection, run: RunRecord) -> None:
    """Write the run's row. A failure here is logged, never raised: the run's own outcome stands."""
    try:
        record_run(db, vars(run))
    except StateError as exc:
        log.warning("could not record run %s in %s: %s", run.run_id, RUN_HISTORY, exc)


def recent(db: Connection, limit: int) -> list[RunRecord]:
    """The last `limit` runs, newest first (none when no run was recorded yet)."""
    return [RunRecord(**row) for row in recent_runs(db, limit)]
