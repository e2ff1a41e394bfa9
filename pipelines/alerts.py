"""Which warnings of a run are new, so that exit codes 10 and 11 alert once per problem.

A bad record inside the lookback window is re-read, and re-quarantined, by every run for days; a
record Gainsight rejects is retried and rejected again on later runs. Alerting on each of those
runs pages someone every hour for a problem already reported. A quarantined record or dead letter
is *seen before* when an earlier run that reported it recorded the same record with the same
reason; only the others are *new* and raise the exit code. "Reported" means that run completed
(its outcome in run_history is ok/quarantined/dead_lettered/deferred) or ran before the history
existed (the previous version alerted on every run); a run that failed or was killed reported
nothing, so what it recorded is still new to the operator.

What was reported is kept in its own table, `gainsight.reported_problems`, written at the end of a
reported run from the rows it recorded. It cannot be read off the quarantine and dead-letter rows:
those are merged on the record (raw-payload hash; object and record key), so a later run that fails
or is stopped re-saves a reported record under its own run_id, and every run after it would take
the record for new again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import duckdb

from connector_common.sql import one_row, table_exists
from destinations.gainsight.ledger import SCHEMA as LEDGER_SCHEMA

from .history import REPORTED_OUTCOMES, RunRecord
from .history import TABLE as RUN_HISTORY
from .staging import QUARANTINE

log = logging.getLogger("nps.alerts")

REPORTED = f"{LEDGER_SCHEMA}.reported_problems"

# kind 'quarantine': record_key is the quarantine_id, object is NULL; kind 'dead_letter': the
# dead letter's object and record key. reason is the quarantine reason or the error code.
DDL = f"""
CREATE TABLE {REPORTED} (
    kind VARCHAR, object VARCHAR, record_key VARCHAR, reason VARCHAR, first_reported_run_id VARCHAR)
"""


@dataclass
class NewAndSeen:
    """Records with a problem in this run: first reported now, or already reported by an earlier run."""

    new: int = 0
    seen_before: int = 0

    def add(self, other: "NewAndSeen") -> None:
        self.new += other.new
        self.seen_before += other.seen_before


def _recorded(db: duckdb.DuckDBPyConnection, dataset: str) -> str:
    """SQL: every quarantined record and dead letter in the file, with the run that last recorded it."""
    parts = ["SELECT NULL::VARCHAR AS kind, NULL::VARCHAR AS object, NULL::VARCHAR AS record_key, "
             "NULL::VARCHAR AS reason, NULL::VARCHAR AS run_id WHERE FALSE"]
    if table_exists(db, dataset, QUARANTINE):
        parts.append(f"""SELECT 'quarantine', NULL, quarantine_id, reason, run_id FROM "{dataset}".{QUARANTINE}""")
    if table_exists(db, LEDGER_SCHEMA, "dead_letters"):
        parts.append(f"SELECT 'dead_letter', object, record_key, error_code, run_id FROM {LEDGER_SCHEMA}.dead_letters")
    return " UNION ALL ".join(parts)


def _remember(db: duckdb.DuckDBPyConnection, dataset: str, which: str, params: list[Any]) -> None:
    """Add the recorded problems matching the SQL condition `which` (on `r`) to the reported ones."""
    db.execute(
        f"""
        INSERT INTO {REPORTED}
        SELECT DISTINCT r.kind, r.object, r.record_key, r.reason, r.run_id FROM ({_recorded(db, dataset)}) r
        WHERE ({which}) AND NOT EXISTS (
            SELECT 1 FROM {REPORTED} p WHERE p.kind = r.kind AND p.object IS NOT DISTINCT FROM r.object
                AND p.record_key = r.record_key AND p.reason IS NOT DISTINCT FROM r.reason)
        """,
        params,
    )


def ensure_reported(db: duckdb.DuckDBPyConnection, dataset: str) -> None:
    """At the start of a run (after `history.ensure`): create the reported-problems table, and forget
    problems whose record is no longer quarantined or dead-lettered (delivered, cleared), so that
    the same failure coming back later alerts again. A file from a version without the table starts
    with what that version counted as reported: rows last recorded by a completed run, or older
    than the history."""
    if table_exists(db, LEDGER_SCHEMA, "reported_problems"):
        db.execute(
            f"""DELETE FROM {REPORTED} p WHERE NOT EXISTS (SELECT 1 FROM ({_recorded(db, dataset)}) r
                WHERE r.kind = p.kind AND r.object IS NOT DISTINCT FROM p.object AND r.record_key = p.record_key)"""
        )
        return
    outcomes = ", ".join(f"'{outcome}'" for outcome in REPORTED_OUTCOMES)
    db.execute(DDL)
    _remember(
        db,
        dataset,
        f"""r.run_id IN (SELECT run_id FROM {RUN_HISTORY} WHERE outcome IN ({outcomes}))
            OR r.run_id < coalesce((SELECT min(run_id) FROM {RUN_HISTORY}), '~')""",
        [],
    )


def remember_reported(db: duckdb.DuckDBPyConnection, dataset: str, run: RunRecord) -> None:
    """At the end of a run that reported what it found, keep the problems it recorded as reported.
    A failure is logged, never raised: the run's outcome stands, its problems alert once more."""
    if run.outcome not in REPORTED_OUTCOMES:
        return
    try:
        _remember(db, dataset, "r.run_id = ?", [run.run_id])
    except duckdb.Error as exc:
        log.warning("could not note what run %s reported in %s: %s", run.run_id, REPORTED, exc)


def quarantine_novelty(db: duckdb.DuckDBPyConnection, staged_files: list[str]) -> NewAndSeen:
    """Distinct quarantined records in this run's not-yet-loaded files: new, or already reported
    with the same reason. Runs on the files only, like the change counts. Needs `ensure_reported` first."""
    if not staged_files:
        return NewAndSeen()
    new, seen = one_row(
        db,
        f"""
        WITH incoming AS (SELECT DISTINCT quarantine_id, reason FROM read_parquet(?))
        SELECT count(*) FILTER (WHERE p.record_key IS NULL), count(*) FILTER (WHERE p.record_key IS NOT NULL)
        FROM incoming i
        LEFT JOIN {REPORTED} p ON p.kind = 'quarantine' AND p.record_key = i.quarantine_id
            AND p.reason IS NOT DISTINCT FROM i.reason
        """,
        [staged_files],
    )
    return NewAndSeen(new=int(new), seen_before=int(seen))


def dead_letter_novelty(db: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, NewAndSeen]:
    """Per object, the dead letters this run wrote: new, or the same record already reported with
    the same error code. Needs `ensure_reported` first."""
    if not table_exists(db, LEDGER_SCHEMA, "dead_letters"):
        return {}
    rows = db.execute(
        f"""
        SELECT d.object, count(*) FILTER (WHERE p.record_key IS NULL), count(*) FILTER (WHERE p.record_key IS NOT NULL)
        FROM {LEDGER_SCHEMA}.dead_letters d
        LEFT JOIN {REPORTED} p ON p.kind = 'dead_letter' AND p.object = d.object AND p.record_key = d.record_key
            AND p.reason IS NOT DISTINCT FROM d.error_code
        WHERE d.run_id = ?
        GROUP BY d.object
        """,
        [run_id],
    ).fetchall()
    return {obj: NewAndSeen(new=int(new), seen_before=int(seen)) for obj, new, seen in rows}
