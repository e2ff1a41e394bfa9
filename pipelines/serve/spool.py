"""The durable spool: every accepted webhook event, committed before the call is answered 2xx.

A table in the staging DuckDB file (`webhooks.spool`) rather than a file of its own, because:
- DuckDB's commit writes and syncs its write-ahead log, so a committed event survives kill -9 and a
  power cut, without a second file format, its own fsync and compaction code;
- the file already holds everything the connector knows, is private to its user (0600) and is
  locked by the one process that owns it; the spool inherits all three, and an operator reads it
  with the same SQL (`SELECT * FROM webhooks.spool`) as the rest;
- a row leaves the spool only after its record is merged into staging, so the spool holds personal
  data for seconds, not for as long as a log file would.

Delivery is at least once into staging (a crash between the merge and the delete stages the same
record again, which the content hash makes a no-op) and exactly once into Gainsight (the ledger).
All statements run on one cursor under a lock: request threads append, the worker reads and deletes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import duckdb

SCHEMA = "webhooks"
TABLE = f"{SCHEMA}.spool"
_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE SEQUENCE IF NOT EXISTS {SCHEMA}.spool_seq;
CREATE TABLE IF NOT EXISTS {TABLE} (
    seq BIGINT NOT NULL DEFAULT nextval('{SCHEMA}.spool_seq'),
    received_at TIMESTAMPTZ NOT NULL,
    response_id BIGINT NOT NULL,
    record VARCHAR,               -- the raw record (JSON); NULL for an id-only event
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_at TIMESTAMPTZ NOT NULL -- not taken before this (an id not found yet waits)
);
"""
_CONFLICT_RETRIES = 5  # DuckDB's optimistic concurrency may refuse a commit racing the worker's


@dataclass(frozen=True)
class Event:
    """One event as accepted: the response id and, unless the event carried only the id, its record."""

    response_id: int
    record: bytes | None


@dataclass(frozen=True)
class Spooled:
    seq: int
    received_at: datetime
    response_id: int
    record: bytes | None
    attempts: int


class Spool:
    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self._db = connection.cursor()
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute(_DDL)

    def append(self, events: Sequence[Event]) -> None:
        """Store the events in one committed transaction (all or nothing)."""
        now = datetime.now(timezone.utc)
        rows = [(now, event.response_id, None if event.record is None else event.record.decode(), now) for event in events]
        for attempt in range(_CONFLICT_RETRIES):
            with self._lock:
                try:
                    self._db.execute("BEGIN TRANSACTION")
                    self._db.executemany(
                        f"INSERT INTO {TABLE} (received_at, response_id, record, retry_at) VALUES (?, ?, ?, ?)", rows
                    )
                    self._db.execute("COMMIT")
                    return
                except duckdb.TransactionException:
                    self._db.execute("ROLLBACK")
                    if attempt == _CONFLICT_RETRIES - 1:
                        raise

    def ready(self, limit: int) -> list[Spooled]:
        """The oldest events due now, in arrival order."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, received_at, response_id, record, attempts FROM {TABLE} "
                "WHERE retry_at <= now() ORDER BY seq LIMIT ?",
                [limit],
            ).fetchall()
        return [Spooled(seq, at, number, None if raw is None else raw.encode(), n) for seq, at, number, raw, n in rows]

    def remove(self, seqs: Iterable[int]) -> None:
        self._write(f"DELETE FROM {TABLE} WHERE list_contains(?, seq)", list(seqs))

    def retry_later(self, seqs: Iterable[int], delay: timedelta) -> None:
        """Count a failed attempt and hold the events back for `delay`."""
        until = datetime.now(timezone.utc) + delay
        self._write(f"UPDATE {TABLE} SET attempts = attempts + 1, retry_at = ? WHERE list_contains(?, seq)", list(seqs), until)

    def depth(self) -> int:
        with self._lock:
            row = self._db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        return int(row[0]) if row else 0

    def next_due(self) -> datetime | None:
        """When the earliest held-back event becomes due (None: the spool is empty)."""
        with self._lock:
            row = self._db.execute(f"SELECT min(retry_at) FROM {TABLE}").fetchone()
        return row[0] if row else None

    def _write(self, sql: str, seqs: list[int], *first: object) -> None:
        if not seqs:
            return
        for attempt in range(_CONFLICT_RETRIES):
            with self._lock:
                try:
                    self._db.execute(sql, [*first, seqs])
                    return
                except duckdb.TransactionException:
                    if attempt == _CONFLICT_RETRIES - 1:
                        raise
