"""Which warnings of a run are new, so that exit codes 10 and 11 alert once per problem.

A bad record inside the lookback window is re-read, and re-quarantined, by every run for days; a
record Gainsight rejects is retried and rejected again on later runs. Alerting on each of those
runs pages someone every hour for a problem already reported. A quarantined record or dead letter
is *seen before* when an earlier run that reported it recorded the same record with the same
reason; only the others are *new* and raise the exit code. "Reported" means that run completed
(its outcome in run_history is ok/quarantined/dead_lettered/deferred) or ran before the history
existed (the previous version alerted on every run); a run that failed or was killed reported
nothing, so what it recorded is still new to the operator.

Quarantine rows are merged on a hash of the raw payload, so a re-read overwrites the earlier row:
what was seen before is read from the table *before* this run's rows are loaded into it. Dead
letters are keyed on (object, record key) and overwritten the same way: their state before the push
is noted in a temporary table on the run's connection and compared afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from connector_common.sql import one_row, table_exists
from destinations.gainsight.ledger import SCHEMA as LEDGER_SCHEMA

from .history import REPORTED_OUTCOMES
from .history import TABLE as RUN_HISTORY
from .staging import QUARANTINE

DEAD_LETTERS_BEFORE = "dead_letters_before_push"


@dataclass
class NewAndSeen:
    """Records with a problem in this run: first reported now, or already reported by an earlier run."""

    new: int = 0
    seen_before: int = 0

    def add(self, other: "NewAndSeen") -> None:
        self.new += other.new
        self.seen_before += other.seen_before


def _reported(alias: str) -> str:
    """SQL: the row `alias` was recorded by a run that reported it (see the module docstring)."""
    outcomes = ", ".join(f"'{outcome}'" for outcome in REPORTED_OUTCOMES)
    return f"""({alias}.run_id IN (SELECT run_id FROM {RUN_HISTORY} WHERE outcome IN ({outcomes}))
        OR {alias}.run_id < coalesce((SELECT min(run_id) FROM {RUN_HISTORY}), '~'))"""


def quarantine_novelty(db: duckdb.DuckDBPyConnection, dataset: str, staged_files: list[str]) -> NewAndSeen:
    """Distinct quarantined records in this run's not-yet-loaded files: new, or already quarantined
    with the same reason by a run that reported it. Runs before the load, on the files only, like
    the change counts. Needs run_history to exist (`history.ensure`)."""
    if not staged_files:
        return NewAndSeen()
    if not table_exists(db, dataset, QUARANTINE):
        row = one_row(db, "SELECT count(DISTINCT quarantine_id) FROM read_parquet(?)", [staged_files])
        return NewAndSeen(new=int(row[0]) if row else 0)
    new, seen = one_row(
        db,
        f"""
        WITH incoming AS (SELECT DISTINCT quarantine_id, reason FROM read_parquet(?))
        SELECT count(*) FILTER (WHERE q.quarantine_id IS NULL), count(*) FILTER (WHERE q.quarantine_id IS NOT NULL)
        FROM incoming i
        LEFT JOIN "{dataset}".{QUARANTINE} q ON q.quarantine_id = i.quarantine_id
            AND q.reason IS NOT DISTINCT FROM i.reason AND {_reported("q")}
        """,
        [staged_files],
    )
    return NewAndSeen(new=int(new), seen_before=int(seen))


def note_dead_letters(db: duckdb.DuckDBPyConnection) -> None:
    """Remember which dead letters (and their error codes) reported runs left, before the push writes any."""
    source = (
        f"SELECT object, record_key, error_code FROM {LEDGER_SCHEMA}.dead_letters d WHERE {_reported('d')}"
        if table_exists(db, LEDGER_SCHEMA, "dead_letters")
        else "SELECT NULL::VARCHAR AS object, NULL::VARCHAR AS record_key, NULL::VARCHAR AS error_code WHERE FALSE"
    )
    db.execute(f"CREATE OR REPLACE TEMP TABLE {DEAD_LETTERS_BEFORE} AS {source}")


def dead_letter_novelty(db: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, NewAndSeen]:
    """Per object, the dead letters this run wrote: new, or the same record already dead-lettered
    with the same error code by a reported run. Needs `note_dead_letters` first."""
    if not table_exists(db, LEDGER_SCHEMA, "dead_letters"):
        return {}
    rows = db.execute(
        f"""
        SELECT d.object, count(*) FILTER (WHERE b.record_key IS NULL), count(*) FILTER (WHERE b.record_key IS NOT NULL)
        FROM {LEDGER_SCHEMA}.dead_letters d
        LEFT JOIN {DEAD_LETTERS_BEFORE} b
            ON b.object = d.object AND b.record_key = d.record_key AND b.error_code IS NOT DISTINCT FROM d.error_code
        WHERE d.run_id = ?
        GROUP BY d.object
        """,
        [run_id],
    ).fetchall()
    db.execute(f"DROP TABLE IF EXISTS {DEAD_LETTERS_BEFORE}")
    return {obj: NewAndSeen(new=int(new), seen_before=int(seen)) for obj, new, seen in rows}
