"""The Gainsight sync state, kept in the staging DuckDB file (schema `gainsight`).

The ledger is what makes the push idempotent and resumable: it says, per response, company,
person and Timeline activity, which content was last confirmed in Gainsight (content hash and
Gainsight id), what failed and why, and how often. The outbox is computed from it, so deleting
dlt's working folder never causes a re-push. Beside it: the Bulk upload log (every upload, its
statusId and final counts), the quota log (calls per family and window, so limits hold across
runs) and the dead letters (records Gainsight rejected, with its error code).

Every write here is one SQL statement over a whole batch, committed at once: a run killed between
two statements loses at most the knowledge of one batch, which the next run re-derives by key.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import duckdb
import pyarrow as pa

from connector_common.sql import one_row

SCHEMA = "gainsight"

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.companies (
    account_id VARCHAR PRIMARY KEY, name VARCHAR, gsid VARCHAR, pushed_hash VARCHAR,
    status VARCHAR, attempts INTEGER DEFAULT 0, failed_hash VARCHAR, last_error_code VARCHAR,
    last_error VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS {SCHEMA}.people (
    email VARCHAR PRIMARY KEY, gsid VARCHAR, company_gsid VARCHAR, pushed_hash VARCHAR,
    status VARCHAR, attempts INTEGER DEFAULT 0, failed_hash VARCHAR, last_error_code VARCHAR,
    last_error VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS {SCHEMA}.responses (
    response_id VARCHAR PRIMARY KEY, gsid VARCHAR, pushed_hash VARCHAR, via VARCHAR,
    status VARCHAR, attempts INTEGER DEFAULT 0, failed_hash VARCHAR, last_error_code VARCHAR,
    last_error VARCHAR, bulk_upload_id VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS {SCHEMA}.activities (
    response_id VARCHAR PRIMARY KEY, external_id VARCHAR, activity_id VARCHAR,
    status VARCHAR, attempts INTEGER DEFAULT 0, failed_hash VARCHAR, last_error_code VARCHAR,
    last_error VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ);
-- pushed_hash: hash of the activity as Gainsight holds it; source_hash: the response content it shows.
ALTER TABLE {SCHEMA}.activities ADD COLUMN IF NOT EXISTS pushed_hash VARCHAR;
ALTER TABLE {SCHEMA}.activities ADD COLUMN IF NOT EXISTS source_hash VARCHAR;
CREATE TABLE IF NOT EXISTS {SCHEMA}.bulk_uploads (
    upload_id VARCHAR PRIMARY KEY, job_id VARCHAR, status_id VARCHAR, file_name VARCHAR,
    file_sha256 VARCHAR, rows INTEGER, bytes BIGINT, status VARCHAR, total_count INTEGER,
    success_count INTEGER, failure_count INTEGER, landed INTEGER, not_landed INTEGER,
    run_id VARCHAR, uploaded_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, reconciled_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS {SCHEMA}.bulk_upload_rows (
    upload_id VARCHAR, response_id VARCHAR, content_hash VARCHAR);
CREATE TABLE IF NOT EXISTS {SCHEMA}.quota_log (
    family VARCHAR, "window" VARCHAR, window_start TIMESTAMPTZ, calls INTEGER,
    PRIMARY KEY (family, "window", window_start));
CREATE TABLE IF NOT EXISTS {SCHEMA}.company_waits (
    account_id VARCHAR PRIMARY KEY, account_name VARCHAR, reason VARCHAR, candidates VARCHAR,
    first_waited_at TIMESTAMPTZ, last_checked_at TIMESTAMPTZ, run_id VARCHAR);
CREATE TABLE IF NOT EXISTS {SCHEMA}.dead_letters (
    object VARCHAR, record_key VARCHAR, error_code VARCHAR, error_message VARCHAR, payload VARCHAR,
    attempts INTEGER, first_failed_at TIMESTAMPTZ, last_failed_at TIMESTAMPTZ, run_id VARCHAR,
    PRIMARY KEY (object, record_key));
"""

# What each object's ledger table is keyed on (`dead_letters.object` uses the same names).
KEYS = {"companies": "account_id", "people": "email", "responses": "response_id", "activities": "response_id"}


# Ledger statuses of a record Gainsight holds (`confirm` writes them; `mark`/`fail` others).
CONFIRMED = ("synced", "created", "exists")


def now() -> datetime:
    return datetime.now(timezone.utc)


class Ledger:
    """Reads and writes of the `gainsight` schema through one DuckDB cursor of the run's connection."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, run_id: str, max_attempts: int) -> None:
        self.db = connection.cursor()  # its own handle: the sink runs in dlt's loader thread
        self.run_id = run_id
        self.max_attempts = max_attempts
        self.db.execute(DDL)

    def close(self) -> None:
        self.db.close()

    # --- reading state ------------------------------------------------------------------------

    def state(self, table: str, keys: Sequence[str], columns: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Ledger rows of `table` for `keys`, by key."""
        if not keys:
            return {}
        key = KEYS[table]
        self.db.register("_keys", pa.table({"k": pa.array(list(keys), pa.string())}))
        try:
            rows = self.db.execute(
                f"SELECT {key}, {', '.join(columns)} FROM {SCHEMA}.{table} WHERE {key} IN (SELECT k FROM _keys)"
            ).fetchall()
        finally:
            self.db.unregister("_keys")
        return {row[0]: dict(zip(columns, row[1:])) for row in rows}

    def settled_since(self, table: str, keys: Sequence[str], since: datetime) -> list[str]:
        """Which of `keys` were confirmed in Gainsight at or after `since`."""
        state = self.state(table, keys, ["status", "updated_at"])
        return [key for key, row in state.items() if row["status"] in CONFIRMED and row["updated_at"] >= since]

    def gives_up(self, row: dict[str, Any] | None, content_hash: str) -> bool:
        """True when this exact content already failed `max_attempts` times: stop resending it."""
        return bool(row and row.get("failed_hash") == content_hash and (row.get("attempts") or 0) >= self.max_attempts)

    # --- recording outcomes ---------------------------------------------------------------------

    def confirm(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        """Record confirmed writes: each row carries the key, `gsid`/`pushed_hash`-like columns and
        `status`. Clears the failure state and any dead letter of those records."""
        rows = list(rows)
        if not rows:
            return
        key = KEYS[table]
        stamp = now()
        data = pa.Table.from_pylist([{**row, "updated_at": stamp} for row in rows])
        columns = [c for c in data.column_names if c != key]
        assignments = ", ".join(f"{c} = excluded.{c}" for c in columns)
        self.db.register("_rows", data)
        try:
            self.db.execute("BEGIN")
            self.db.execute(
                f"""INSERT INTO {SCHEMA}.{table} ({key}, {', '.join(columns)}, created_at, attempts)
                    SELECT {key}, {', '.join(columns)}, updated_at, 0 FROM _rows
                    ON CONFLICT ({key}) DO UPDATE SET {assignments}, attempts = 0, failed_hash = NULL,
                        last_error_code = NULL, last_error = NULL"""
            )
            self.db.execute(
                f"DELETE FROM {SCHEMA}.dead_letters WHERE object = ? AND record_key IN (SELECT {key} FROM _rows)",
                [table],
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        finally:
            self.db.unregister("_rows")

    def mark(self, table: str, keys: Iterable[str], status: str) -> None:
        """Set a status (e.g. `deferred`) without touching what is known to be in Gainsight."""
        keys = list(keys)
        if not keys:
            return
        key = KEYS[table]
        # One statement over an Arrow table: `executemany` costs ~50 ms a row here (minutes for a
        # deferred backfill).
        self.db.register("_marked", pa.table({"k": pa.array(list(dict.fromkeys(keys)), pa.string())}))
        try:
            self.db.execute(
                f"""INSERT INTO {SCHEMA}.{table} ({key}, status, created_at, updated_at, attempts)
                    SELECT k, $status, $stamp, $stamp, 0 FROM _marked
                    ON CONFLICT ({key}) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at""",
                {"status": status, "stamp": now()},
            )
        finally:
            self.db.unregister("_marked")

    def fail(self, table: str, key_value: str, content_hash: str, code: str | None, message: str, payload: Any) -> None:
        """Dead-letter one record: count the attempt (per content version) and keep the reason."""
        key = KEYS[table]
        stamp = now()
        text = json.dumps(payload, ensure_ascii=False, default=str)
        self.db.execute("BEGIN")
        try:
            self.db.execute(
                f"""INSERT INTO {SCHEMA}.{table} ({key}, status, attempts, failed_hash, last_error_code,
                        last_error, created_at, updated_at)
                    VALUES (?, 'failed', 1, ?, ?, ?, ?, ?)
                    ON CONFLICT ({key}) DO UPDATE SET status = 'failed',
                        attempts = CASE WHEN {table}.failed_hash = excluded.failed_hash
                                        THEN {table}.attempts + 1 ELSE 1 END,
                        failed_hash = excluded.failed_hash, last_error_code = excluded.last_error_code,
                        last_error = excluded.last_error, updated_at = excluded.updated_at""",
                [key_value, content_hash, code, message, stamp, stamp],
            )
            (attempts,) = one_row(self.db, f"SELECT attempts FROM {SCHEMA}.{table} WHERE {key} = ?", [key_value])
            self.db.execute(
                f"""INSERT INTO {SCHEMA}.dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (object, record_key) DO UPDATE SET error_code = excluded.error_code,
                        error_message = excluded.error_message, payload = excluded.payload,
                        attempts = excluded.attempts, last_failed_at = excluded.last_failed_at,
                        run_id = excluded.run_id""",
                [table, key_value, code, message, text, attempts, stamp, stamp, self.run_id],
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # --- accounts without a Company -----------------------------------------------------------------

    def wait_for_company(self, rows: list[dict[str, Any]]) -> int:
        """Book accounts that have no Company to reference yet (account_id, account_name, reason,
        candidates); returns how many started waiting in this run (the others already waited)."""
        if not rows:
            return 0
        stamp = now()
        data = pa.Table.from_pylist(
            [{**row, "stamp": stamp, "run_id": self.run_id} for row in rows],
            pa.schema(
                [
                    ("account_id", pa.string()),
                    ("account_name", pa.string()),
                    ("reason", pa.string()),
                    ("candidates", pa.string()),
                    ("stamp", pa.timestamp("us", tz="UTC")),
                    ("run_id", pa.string()),
                ]
            ),
        )
        self.db.register("_waits", data)
        try:
            (known,) = one_row(
                self.db,
                f"SELECT count(*) FROM {SCHEMA}.company_waits WHERE account_id IN (SELECT account_id FROM _waits)",
            )
            self.db.execute(
                f"""INSERT INTO {SCHEMA}.company_waits
                    SELECT account_id, account_name, reason, candidates, stamp, stamp, run_id FROM _waits
                    ON CONFLICT (account_id) DO UPDATE SET account_name = excluded.account_name,
                        reason = excluded.reason, candidates = excluded.candidates,
                        last_checked_at = excluded.last_checked_at, run_id = excluded.run_id"""
            )
        finally:
            self.db.unregister("_waits")
        return len(rows) - int(known)

    def stop_waiting(self, account_ids: Iterable[str]) -> None:
        """The accounts have a confirmed Company now."""
        keys = list(account_ids)
        if keys:
            self.db.execute(f"DELETE FROM {SCHEMA}.company_waits WHERE list_contains(?::VARCHAR[], account_id)", [keys])

    # --- Bulk upload log ----------------------------------------------------------------------------

    def start_upload(self, upload_id: str, job_id: str, file_name: str, sha256: str, rows: pa.Table, size: int) -> None:
        """Log an upload *before* sending it, with the rows it carries, so a crash leaves a trace."""
        self.db.register("_upload_rows", rows)
        try:
            self.db.execute("BEGIN")
            self.db.execute(
                f"""INSERT INTO {SCHEMA}.bulk_uploads (upload_id, job_id, file_name, file_sha256, rows, bytes,
                        status, run_id, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, 'SENDING', ?, ?)""",
                [upload_id, job_id, file_name, sha256, rows.num_rows, size, self.run_id, now()],
            )
            self.db.execute(
                f"INSERT INTO {SCHEMA}.bulk_upload_rows SELECT ?, response_id, content_hash FROM _upload_rows",
                [upload_id],
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        finally:
            self.db.unregister("_upload_rows")

    def update_upload(self, upload_id: str, **values: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)
        self.db.execute(f"UPDATE {SCHEMA}.bulk_uploads SET {assignments} WHERE upload_id = ?", [*values.values(), upload_id])

    def open_uploads(self) -> list[dict[str, Any]]:
        """Uploads not yet reconciled (a run died or timed out while Gainsight was processing)."""
        cursor = self.db.execute(
            f"SELECT * FROM {SCHEMA}.bulk_uploads WHERE reconciled_at IS NULL ORDER BY uploaded_at"
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def upload_rows(self, upload_id: str) -> dict[str, str]:
        rows = self.db.execute(
            f"SELECT response_id, content_hash FROM {SCHEMA}.bulk_upload_rows WHERE upload_id = ?", [upload_id]
        ).fetchall()
        return dict(rows)

    # --- quota log (QuotaStore) ---------------------------------------------------------------------

    def load_quota_counts(self, since: float) -> dict[tuple[str, str, int], int]:
        rows = self.db.execute(
            f"""SELECT family, "window", epoch(window_start)::BIGINT, calls FROM {SCHEMA}.quota_log
                WHERE window_start >= to_timestamp(?)""",
            [since],
        ).fetchall()
        return {(family, window, int(start)): int(calls) for family, window, start, calls in rows}

    def save_quota_counts(self, counts: dict[tuple[str, str, int], int]) -> None:
        self.db.executemany(
            f"""INSERT INTO {SCHEMA}.quota_log VALUES (?, ?, to_timestamp(?), ?)
                ON CONFLICT (family, "window", window_start) DO UPDATE SET calls = excluded.calls""",
            [(family, window, start, calls) for (family, window, start), calls in counts.items()],
        )
