"""The Gainsight sync state, kept in the staging DuckDB file (schema `gainsight`): every SQL statement on it.

The ledger is what makes the push idempotent and resumable: it says, per response, company,
person and Timeline activity, which content was last confirmed in Gainsight (content hash and
Gainsight id), what failed and why, and how often. The outbox is computed from it, so deleting
dlt's working folder never causes a re-push. Beside it: the Bulk upload log (every upload, its
statusId and final counts), the quota log (calls per family and window, so limits hold across
runs), the dead letters (records Gainsight rejected, with its error code), the accounts waiting
for a Company, the inspection views, the run history and the problems already reported.

Every write here is one SQL statement over a whole batch, committed at once: a run killed between
two statements loses at most the knowledge of one batch, which the next run re-derives by key.

This is the only module of the destination that talks to DuckDB. `Ledger` is one run's read-write
handle (the push); the module functions serve whoever holds a connection of the staging file:
the push pipeline (outbox, views), the run's bookkeeping (history, reported problems) and the
read-only `status`. A DuckDB I/O error (a full disk, typically) inside the ledger leaves it as
`LocalWriteFailed`, the run's own documented failure, so no caller needs to know DuckDB's errors.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar, cast

import duckdb
import pyarrow as pa

from connector_common.memory import empty_duckdb_cache, read_once
from connector_common.schema import OUTBOX_COLUMNS
from connector_common.sql import ensure_views as shared_ensure_views
from connector_common.sql import one_row, table_exists, view_exists

from .errors import LocalWriteFailed
from .settings import GainsightSettings
from .specs import KEYS, SPECS, ledger_ddl

# A connection to the staging file, as the other modules hold it (they never call it themselves).
Connection = duckdb.DuckDBPyConnection

SCHEMA = "gainsight"
# Object tables (`specs.ledger_ddl`) may lack columns added after their first release: a ledger of
# an earlier version gets them here.
_ADDED_COLUMNS = "".join(
    f"ALTER TABLE {SCHEMA}.{spec.name} ADD COLUMN IF NOT EXISTS {column} VARCHAR;\n"
    for spec in SPECS
    for column in spec.ledger_column_names
)

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
{ledger_ddl(SCHEMA)}{_ADDED_COLUMNS}CREATE TABLE IF NOT EXISTS {SCHEMA}.bulk_uploads (
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
CREATE TABLE IF NOT EXISTS {SCHEMA}.people_bulk_calls (
    call_id VARCHAR PRIMARY KEY, path VARCHAR, status_id VARCHAR, status VARCHAR, persons INTEGER,
    landed INTEGER, failed INTEGER, run_id VARCHAR, submitted_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
    reconciled_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS {SCHEMA}.people_bulk_call_rows (
    call_id VARCHAR, position INTEGER, email VARCHAR, failed_hash VARCHAR, payload VARCHAR);
CREATE TABLE IF NOT EXISTS {SCHEMA}.tenant_facts (
    fact VARCHAR PRIMARY KEY, value VARCHAR, learned_at TIMESTAMPTZ, run_id VARCHAR);
"""



# Ledger statuses of a record Gainsight holds (`confirm` writes them; `mark`/`fail` others).
CONFIRMED = ("synced", "created", "exists")


def now() -> datetime:
    return datetime.now(timezone.utc)


# --- the retry rule -------------------------------------------------------------------------------
#
# When a record Gainsight rejected is sent again: one definition for the push and for the report.
# A dead-lettered company, person, response or Timeline activity is retried by every later run until
# the same content has failed `max_attempts` times; content that changed starts counting again. The
# outbox (what the next run sends) and `dead_letter_report.will_retry` (what an operator is told)
# are both built from the SQL here, so they cannot disagree. Responses and activities are compared
# with the staged `content_hash`; companies and people with the hashes of `records.company_hash` and
# `records.person_hash`, recomputed in SQL from their latest staged response (a unit test keeps the
# two spellings equal).


def given_up_sql(ledger: str, content_hash: str, max_attempts: str) -> str:
    """SQL: this content of the `ledger` row already failed `max_attempts` times (stop sending it)."""
    return f"coalesce({ledger}.failed_hash = {content_hash} AND {ledger}.attempts >= {max_attempts}, FALSE)"


def needs_response(max_attempts: str) -> str:
    """SQL over staged `r` and ledger `l`: Gainsight lacks this version and it is not given up."""
    return (
        f"((l.response_id IS NULL OR l.pushed_hash IS DISTINCT FROM r.content_hash) "
        f"AND NOT {given_up_sql('l', 'r.content_hash', max_attempts)})"
    )


# An activity exists in Gainsight (an edit then updates it, whatever the response's age).
ACTIVITY_BOOKED = "coalesce(a.status IN ('created', 'exists', 'updated') OR a.pushed_hash IS NOT NULL, FALSE)"


def needs_activity(max_attempts: str, timeline: str, activity_since: str) -> str:
    """SQL over staged `r` and activity ledger `a`: a recent response without its Timeline entry,
    or one whose entry shows an older version of it."""
    return (
        f"({timeline} AND r.account_id IS NOT NULL "
        f"AND CASE WHEN {ACTIVITY_BOOKED} THEN a.source_hash IS DISTINCT FROM r.content_hash "
        f"ELSE r.responded_at >= {activity_since} END "
        f"AND NOT {given_up_sql('a', 'r.content_hash', max_attempts)})"
    )


# records.company_hash(account_id, name) and records.person_hash(email, first, last, company gsid):
# sha1 of the parts joined by \x1f, a missing part spelled \x00.
COMPANY_HASH = "sha1(x.account_id || chr(31) || coalesce(nullif(x.account_name, ''), x.account_id))"
PERSON_HASH = (
    "sha1(x.email || chr(31) || coalesce(x.first_name, chr(0)) || chr(31) || coalesce(x.last_name, chr(0)) "
    "|| chr(31) || coalesce(c.gsid, chr(0)))"
)


def retry_sql(dataset: str, max_attempts: str, timeline: str, activity_since: str) -> str:
    """SQL: (object, record_key, will_retry) for every dead letter whose record is still staged.

    Arguments are SQL text: `$parameters` in the outbox query, literals in the report's view.
    """
    dead = f"SELECT record_key FROM {SCHEMA}.dead_letters WHERE object = "
    return f"""
    SELECT 'companies' AS object, x.account_id AS record_key,
        NOT {given_up_sql('l', COMPANY_HASH, max_attempts)} AS will_retry
    FROM (SELECT account_id, arg_max(account_name, responded_at) AS account_name FROM {dataset}.nps_responses
          WHERE account_id IN ({dead}'companies') GROUP BY account_id) x
    JOIN {SCHEMA}.companies l USING (account_id)
    UNION ALL
    SELECT 'people', x.email, NOT {given_up_sql('l', PERSON_HASH, max_attempts)}
    FROM (SELECT email, arg_max(first_name, responded_at) AS first_name, arg_max(last_name, responded_at) AS last_name,
                 arg_max(account_id, responded_at) AS account_id
          FROM {dataset}.nps_responses WHERE email IN ({dead}'people') GROUP BY email) x
    JOIN {SCHEMA}.people l USING (email)
    LEFT JOIN {SCHEMA}.companies c ON c.account_id = x.account_id
    UNION ALL
    SELECT 'responses', r.response_id, {needs_response(max_attempts)}
    FROM {dataset}.nps_responses r JOIN {SCHEMA}.responses l USING (response_id)
    WHERE r.response_id IN ({dead}'responses')
    UNION ALL
    SELECT 'activities', r.response_id, {needs_activity(max_attempts, timeline, activity_since)}
    FROM {dataset}.nps_responses r JOIN {SCHEMA}.activities a USING (response_id)
    WHERE r.response_id IN ({dead}'activities')
    """


# --- the outbox -----------------------------------------------------------------------------------
#
# The outbox: staged responses Gainsight does not hold in their current version yet. It is computed
# from the staging table and the ledger, never remembered: a response is in it when its content hash
# differs from the hash last confirmed in Gainsight (`needs_response`), when its Timeline activity is
# missing (recent responses only) or shows an older version of it (`needs_activity`), or when its
# person or company was dead-lettered and is due for another attempt (`needs_retry`). Content that
# already failed `max_attempts` times stays out until it changes (the retry rule above).

def _staged_columns(alias: str) -> str:
    """SQL: the outbox's staged columns (connector_common/schema.py) of the `alias`ed staging table."""
    return ", ".join(f"{alias}.{column}" for column in OUTBOX_COLUMNS)


def person_unsettled(email: str) -> str:
    """SQL: the person `email` has no ledger row yet, or a run deferred them. People are written
    last (value order), so a used-up quota, the run's time budget, a kill or a failure can leave a
    person behind responses Gainsight already holds: `needs_retry` brings them back.

    An uncorrelated `NOT IN`, not `NOT EXISTS (... WHERE p.email = {email})`: DuckDB runs a
    correlated subquery as a delim join, which buffers every row of the outer query (all staged
    columns of every response: +140 MB at 200k, growing with the backfill) before the first row
    comes out; `IN` is a hash join on the ledger's e-mails that streams the outer rows."""
    return (
        f"coalesce({email} NOT IN (SELECT p.email FROM {SCHEMA}.people p "
        f"WHERE p.status IS DISTINCT FROM 'deferred'), FALSE)"
    )


def outbox_sql(dataset: str, people: bool = True) -> str:
    """The outbox query over `dataset`; flags per row say which steps it needs. `needs_retry`
    brings back a dead-lettered person or company whose responses Gainsight already holds, and a
    person no run has settled yet (`person_unsettled`) when the push writes `people`."""
    retry = retry_sql(dataset, "$max_attempts", "$timeline", "$activity_since")
    people_sql = str(bool(people)).upper()
    return f"""
WITH retry AS ({retry})
SELECT * FROM (
    SELECT {_staged_columns('r')},
        {needs_response('$max_attempts')} AS needs_response,
        {needs_activity('$max_attempts', '$timeline', '$activity_since')} AS needs_activity,
        (r.email IN (SELECT record_key FROM retry WHERE object = 'people' AND will_retry)
            OR r.account_id IN (SELECT record_key FROM retry WHERE object = 'companies' AND will_retry)
            OR ({people_sql} AND {person_unsettled('r.email')}))
            AS needs_retry
    FROM {dataset}.nps_responses r
    LEFT JOIN {SCHEMA}.responses l USING (response_id)
    LEFT JOIN {SCHEMA}.activities a USING (response_id)
) WHERE needs_response OR needs_activity OR needs_retry
"""


def outbox_parameters(settings: GainsightSettings) -> dict[str, object]:
    return {
        "max_attempts": settings.max_attempts,
        "timeline": settings.timeline_enabled,
        "activity_since": datetime.now(timezone.utc) - timedelta(days=max(settings.timeline_max_age_days, 0)),
    }


def read_outbox(
    db: Connection, dataset: str, settings: GainsightSettings, batch_rows: int = 10_000, staged: str | None = None
) -> pa.RecordBatchReader:
    """The whole outbox as a stream of Arrow batches (the push pipeline's extract). `staged`: the
    SQL name of the schema holding `nps_responses` when it is not the dataset (the dry run's
    in-memory overlay of staged and freshly fetched responses)."""
    sql = outbox_sql(staged or f'"{dataset}"', settings.people_enabled)
    # `execute` streams the result a batch at a time; a relation's `to_arrow_reader` would first
    # materialize it (+160 MB at 100k responses).
    return db.execute(sql, outbox_parameters(settings)).to_arrow_reader(batch_rows)


def given_up(db: Connection, dataset: str, settings: GainsightSettings) -> dict[str, int]:
    """Per object, the staged records Gainsight rejected that no run sends again until they change."""
    retry = retry_sql(f'"{dataset}"', "$max_attempts", "$timeline", "$activity_since")
    rows = db.execute(
        f"SELECT object, count(*) FROM ({retry}) WHERE NOT will_retry GROUP BY object", outbox_parameters(settings)
    ).fetchall()
    return {name: int(count) for name, count in rows}


def staged_accounts(db: Connection, dataset: str) -> dict[str, str | None]:
    """account_id -> its most recent name, over every staged response."""
    rows = db.execute(
        f'SELECT account_id, arg_max(account_name, responded_at) FROM "{dataset}".nps_responses '
        "WHERE account_id IS NOT NULL GROUP BY account_id"
    ).fetchall()
    return dict(rows)


def _dead(table: str, key: str, condition: str) -> str:
    """SQL: the record `key` of `table` has a dead letter (CTE `dead`) meeting `condition`
    (uncorrelated, as in `person_unsettled`: no delim join buffering the outbox)."""
    return f"coalesce({key} IN (SELECT record_key FROM dead WHERE object = '{table}' AND {condition}), FALSE)"


# --- the ledger of one run ------------------------------------------------------------------------

Method = TypeVar("Method", bound=Callable[..., Any])


def _local_state(method: Method) -> Method:
    """A DuckDB I/O error (a full disk, typically) becomes `LocalWriteFailed`; other DuckDB errors
    are bugs and stay as they are. DuckDB reports a write-ahead log it cannot write (the usual
    form of a full disk) when the statement commits, as a `TransactionException` "Failed to commit:
    Could not write file ...", not as an `IOException`."""

    @functools.wraps(method)
    def translated(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (duckdb.IOException, duckdb.TransactionException) as exc:
            if isinstance(exc, duckdb.TransactionException) and "Failed to commit" not in str(exc):
                raise
            raise LocalWriteFailed(f"writing the ledger in DuckDB failed: {exc}") from exc

    return cast(Method, translated)  # functools.wraps keeps the signature; mypy cannot follow it


class Ledger:
    """Reads and writes of the `gainsight` schema through one DuckDB cursor of the run's connection."""

    @_local_state
    def __init__(self, connection: Connection, run_id: str, max_attempts: int) -> None:
        self._db = connection.cursor()  # its own handle: the sink runs in dlt's loader thread
        self.run_id = run_id
        self.max_attempts = max_attempts
        self._outbox = ""  # SQL naming the delivered outbox (`load_outbox`)
        self._db.execute(DDL)

    def close(self) -> None:
        self._db.close()

    def release_cache(self) -> None:
        """Between pages and Bulk reconciliation chunks: DuckDB's cached blocks and freed memory
        back to the system (`connector_common.memory.empty_duckdb_cache`)."""
        empty_duckdb_cache(self._db)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """The statements inside commit at once or not at all. A COMMIT that fails has ended the
        transaction already: it is not rolled back, which would only hide why it failed."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- reading state ------------------------------------------------------------------------

    @_local_state
    def state(self, table: str, keys: Sequence[str], columns: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Ledger rows of `table` for `keys`, by key."""
        if not keys:
            return {}
        key = KEYS[table]
        self._db.register("_keys", pa.table({"k": pa.array(list(keys), pa.string())}))
        try:
            rows = self._db.execute(
                f"SELECT {key}, {', '.join(columns)} FROM {SCHEMA}.{table} WHERE {key} IN (SELECT k FROM _keys)"
            ).fetchall()
        finally:
            self._db.unregister("_keys")
        return {row[0]: dict(zip(columns, row[1:], strict=True)) for row in rows}

    def settled_since(self, table: str, keys: Sequence[str], since: datetime) -> list[str]:
        """Which of `keys` were confirmed in Gainsight at or after `since`."""
        state = self.state(table, keys, ["status", "updated_at"])
        return [key for key, row in state.items() if row["status"] in CONFIRMED and row["updated_at"] >= since]

    def gives_up(self, row: dict[str, Any] | None, content_hash: str) -> bool:
        """True when this exact content already failed `max_attempts` times: stop resending it."""
        return bool(row and row.get("failed_hash") == content_hash and (row.get("attempts") or 0) >= self.max_attempts)

    @_local_state
    def company_gsids(self) -> dict[str, str]:
        """account_id -> Gsid of every Company the ledger knows in Gainsight."""
        return dict(self._db.execute(f"SELECT account_id, gsid FROM {SCHEMA}.companies WHERE gsid IS NOT NULL").fetchall())

    # --- the outbox of one delivery -----------------------------------------------------------------
    #
    # The engine reads each object's items a page at a time, straight from the delivered outbox file
    # (DuckDB scans the parquet file dlt wrote): the push holds one page of Arrow rows per object,
    # never the whole outbox, so its memory does not grow with the push. Only the recomputed flags
    # (`temp.push_flags`: position and three booleans per row) live in DuckDB's memory.

    @_local_state
    def load_outbox(self, source: str | pa.Table, people: bool) -> int:
        """Take an outbox (a parquet file's path, or a table) for `outbox_page`, without the rows the
        ledger has confirmed or given up on since it was written; returns how many rows remain.

        A package a killed run left pending is delivered again by the next run, after other work
        (a recovered Bulk upload, say) may already have confirmed its rows or failed them for the last
        time: without this check they would be sent again, at the price of calls and quota. A record
        Gainsight rejected in this run (`run_id`) is not sent again before the next run either, so a
        re-delivered package and the fresh outbox count one attempt, not two. `people`: the push
        writes people (`person_unsettled` brings their rows back).
        """
        with contextlib.suppress(duckdb.Error):
            self._db.unregister("_delivered")
        if isinstance(source, str):
            path = source.replace("'", "''")
            self._outbox = (
                "(SELECT * EXCLUDE (file_row_number), file_row_number AS _position "
                f"FROM read_parquet('{path}', file_row_number = true))"
            )
        else:
            self._db.register("_delivered", source.append_column("_position", pa.array(range(source.num_rows), pa.int64())))
            self._outbox = "_delivered"
        columns = {row[0] for row in self._db.execute(f"DESCRIBE SELECT * FROM {self._outbox}").fetchall()}
        # A package written before retries were flagged has no `needs_retry`.
        retry = "o.needs_retry" if "needs_retry" in columns else "FALSE"
        self._db.execute(
            f"""CREATE OR REPLACE TEMP TABLE push_flags AS
                WITH dead AS (SELECT object, record_key, run_id = $run_id AS now FROM {SCHEMA}.dead_letters),
                fresh AS (
                    SELECT o._position,
                        o.needs_response AND l.pushed_hash IS DISTINCT FROM o.content_hash
                            AND NOT {given_up_sql('l', 'o.content_hash', '$max_attempts')}
                            AND NOT {_dead('responses', 'o.response_id', 'now')} AS needs_response,
                        o.needs_activity AND a.source_hash IS DISTINCT FROM o.content_hash
                            AND NOT {given_up_sql('a', 'o.content_hash', '$max_attempts')}
                            AND NOT {_dead('activities', 'o.response_id', 'now')} AS needs_activity,
                        coalesce({retry}, FALSE)
                            AND ({_dead('people', 'o.email', 'NOT now')} OR {_dead('companies', 'o.account_id', 'NOT now')}
                                 OR ($people AND {person_unsettled('o.email')}))
                            AS needs_retry
                    FROM {self._outbox} o
                    LEFT JOIN {SCHEMA}.responses l USING (response_id)
                    LEFT JOIN {SCHEMA}.activities a USING (response_id))
                SELECT * FROM fresh WHERE needs_response OR needs_activity OR needs_retry""",
            {"max_attempts": self.max_attempts, "run_id": self.run_id, "people": people},
        )
        (rows,) = one_row(self._db, "SELECT count(*) FROM push_flags")
        return int(rows)

    def _pending(self, columns: Sequence[str], flags: Sequence[str]) -> str:
        """SQL: `columns` and `_position` of the loaded outbox's rows flagged with any of `flags`
        (none: every row), the flags as recomputed by `load_outbox`."""
        picks = ", ".join([*(f"o.{column}" for column in columns), "f._position"])
        where = " OR ".join(f"f.{flag}" for flag in flags) or "TRUE"
        return f"SELECT {picks} FROM {self._outbox} o JOIN push_flags f USING (_position) WHERE {where}"

    @_local_state
    def outbox_page(
        self, key: str, columns: Sequence[str], flags: Sequence[str], latest: bool, after: int, rows: int
    ) -> pa.Table:
        """Up to `rows` items of one object from the loaded outbox, after position `after` (the
        `_position` column says where the page ends; -1 for the first page). `flags`: the rows the object is written for
        (any of them; none = every row). `latest`: one item per key, from its most recent response
        (names and accounts drift), grouped in DuckDB so only a page becomes Python objects."""
        if latest:
            source = f"latest_{key}"
            if after < 0:  # the first page
                picks = ", ".join(f"arg_max({column}, responded_at) AS {column}" for column in columns)
                # Joins every outbox row with its flags: at 1M responses DuckDB built an 84-89 MB hash
                # table for it under its full limit (RSS +92 MB on the Companies' first page), so
                # under `read_once`'s small one, which it exceeds only for many distinct keys.
                read_once(
                    self._db,
                    lambda: self._db.execute(
                        f"""CREATE OR REPLACE TEMP TABLE {source} AS
                            SELECT {key}, {picks}, row_number() OVER (ORDER BY min(_position)) AS _position
                            FROM ({self._pending([key, 'responded_at', *columns], flags)}) WHERE {key} IS NOT NULL GROUP BY {key}"""
                    ),
                )
        else:
            # The page's positions first (from the small flags table), then its rows from the outbox
            # file: the join then holds one page, not the whole outbox sorted once per page.
            where = " OR ".join(flags) or "TRUE"
            return self._db.execute(
                f"""WITH page AS (SELECT _position FROM push_flags WHERE ({where}) AND _position > ?
                                  ORDER BY _position LIMIT ?)
                    SELECT {', '.join([*(f'o.{column}' for column in [key, *columns]), 'page._position'])}
                    FROM page JOIN {self._outbox} o USING (_position) ORDER BY page._position""",
                [after, rows],
            ).to_arrow_table()
        return self._db.execute(
            f"SELECT {', '.join([key, *columns, '_position'])} FROM {source} WHERE _position > ? ORDER BY _position LIMIT ?",
            [after, rows],
        ).to_arrow_table()

    @_local_state
    def outbox_count(self, flags: Sequence[str]) -> int:
        """Rows of the loaded outbox flagged with any of `flags` (none: every row)."""
        (count,) = one_row(self._db, f"SELECT count(*) FROM push_flags WHERE {' OR '.join(flags) or 'TRUE'}")
        return int(count)

    @_local_state
    def outbox_responses_of(self, account_ids: Sequence[str]) -> int:
        """Responses of the loaded outbox that need their record and belong to `account_ids`."""
        (count,) = one_row(
            self._db,
            f"SELECT count(*) FROM ({self._pending(['account_id'], ['needs_response'])}) WHERE list_contains(?::VARCHAR[], account_id)",
            [list(account_ids)],
        )
        return int(count)

    @_local_state
    def staged_rows(self, dataset: str, hashes: dict[str, str]) -> pa.Table:
        """Staged rows of `hashes`' response ids whose content still has that hash (Bulk recovery)."""
        self._db.register("_uploaded", pa.table({"response_id": list(hashes), "content_hash": list(hashes.values())}))
        try:
            sql = f"""SELECT {_staged_columns('r')}, TRUE AS needs_response, FALSE AS needs_activity, FALSE AS needs_retry
                      FROM "{dataset}".nps_responses r JOIN _uploaded u USING (response_id, content_hash)"""
            # The join reads every staged response: not worth caching (`read_once`).
            return read_once(self._db, lambda: self._db.sql(sql).to_arrow_table())
        finally:
            self._db.unregister("_uploaded")

    # --- recording outcomes ---------------------------------------------------------------------

    @_local_state
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
        self._db.register("_rows", data)
        try:
            with self._transaction():
                self._db.execute(
                    f"""INSERT INTO {SCHEMA}.{table} ({key}, {', '.join(columns)}, created_at, attempts)
                        SELECT {key}, {', '.join(columns)}, updated_at, 0 FROM _rows
                        ON CONFLICT ({key}) DO UPDATE SET {assignments}, attempts = 0, failed_hash = NULL,
                            last_error_code = NULL, last_error = NULL"""
                )
                self._db.execute(
                    f"DELETE FROM {SCHEMA}.dead_letters WHERE object = ? AND record_key IN (SELECT {key} FROM _rows)",
                    [table],
                )
        finally:
            self._db.unregister("_rows")

    @_local_state
    def mark(self, table: str, keys: Iterable[str], status: str) -> None:
        """Set a status (e.g. `deferred`) without touching what is known to be in Gainsight."""
        keys = list(keys)
        if not keys:
            return
        key = KEYS[table]
        # One statement over an Arrow table: `executemany` costs ~50 ms a row here (minutes for a
        # deferred backfill).
        self._db.register("_marked", pa.table({"k": pa.array(list(dict.fromkeys(keys)), pa.string())}))
        try:
            self._db.execute(
                f"""INSERT INTO {SCHEMA}.{table} ({key}, status, created_at, updated_at, attempts)
                    SELECT k, $status, $stamp, $stamp, 0 FROM _marked
                    ON CONFLICT ({key}) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at""",
                {"status": status, "stamp": now()},
            )
        finally:
            self._db.unregister("_marked")

    @_local_state
    def fail(self, table: str, key_value: str, content_hash: str, code: str | None, message: str, payload: Any) -> None:
        """Dead-letter one record: count the attempt (per content version) and keep the reason."""
        key = KEYS[table]
        stamp = now()
        text = json.dumps(payload, ensure_ascii=False, default=str)
        with self._transaction():
            self._db.execute(
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
            (attempts,) = one_row(self._db, f"SELECT attempts FROM {SCHEMA}.{table} WHERE {key} = ?", [key_value])
            self._db.execute(
                f"""INSERT INTO {SCHEMA}.dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (object, record_key) DO UPDATE SET error_code = excluded.error_code,
                        error_message = excluded.error_message, payload = excluded.payload,
                        attempts = excluded.attempts, last_failed_at = excluded.last_failed_at,
                        run_id = excluded.run_id""",
                [table, key_value, code, message, text, attempts, stamp, stamp, self.run_id],
            )

    # --- accounts without a Company -----------------------------------------------------------------

    @_local_state
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
        self._db.register("_waits", data)
        try:
            (known,) = one_row(
                self._db,
                f"SELECT count(*) FROM {SCHEMA}.company_waits WHERE account_id IN (SELECT account_id FROM _waits)",
            )
            self._db.execute(
                f"""INSERT INTO {SCHEMA}.company_waits
                    SELECT account_id, account_name, reason, candidates, stamp, stamp, run_id FROM _waits
                    ON CONFLICT (account_id) DO UPDATE SET account_name = excluded.account_name,
                        reason = excluded.reason, candidates = excluded.candidates,
                        last_checked_at = excluded.last_checked_at, run_id = excluded.run_id"""
            )
        finally:
            self._db.unregister("_waits")
        return len(rows) - int(known)

    @_local_state
    def stop_waiting(self, account_ids: Iterable[str]) -> None:
        """The accounts have a confirmed Company now."""
        keys = list(account_ids)
        if keys:
            self._db.execute(f"DELETE FROM {SCHEMA}.company_waits WHERE list_contains(?::VARCHAR[], account_id)", [keys])

    # --- Bulk upload log ----------------------------------------------------------------------------

    @_local_state
    def open_upload(self, upload_id: str, job_id: str, file_name: str) -> None:
        """Log an upload while its file is being written, *before* anything is sent, so a crash
        leaves a trace (`recover_uploads` finds it without a statusId and leaves its rows to the outbox)."""
        self._db.execute(
            f"""INSERT INTO {SCHEMA}.bulk_uploads (upload_id, job_id, file_name, rows, status, run_id, uploaded_at)
                VALUES (?, ?, ?, 0, 'PREPARING', ?, ?)""",
            [upload_id, job_id, file_name, self.run_id, now()],
        )

    @_local_state
    def add_upload_rows(self, upload_id: str, rows: pa.Table) -> None:
        """The responses (`response_id`, `content_hash`) just written into an upload's file."""
        self._db.register("_upload_rows", rows)
        try:
            self._db.execute(
                f"INSERT INTO {SCHEMA}.bulk_upload_rows SELECT ?, response_id, content_hash FROM _upload_rows",
                [upload_id],
            )
        finally:
            self._db.unregister("_upload_rows")

    @_local_state
    def drop_upload_rows(self, upload_id: str, response_ids: Sequence[str]) -> None:
        """Rows written into a file that then proved too large for them (they go into the next file)."""
        self._db.execute(
            f"DELETE FROM {SCHEMA}.bulk_upload_rows WHERE upload_id = ? AND list_contains(?::VARCHAR[], response_id)",
            [upload_id, list(response_ids)],
        )

    @_local_state
    def update_upload(self, upload_id: str, **values: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)
        self._db.execute(f"UPDATE {SCHEMA}.bulk_uploads SET {assignments} WHERE upload_id = ?", [*values.values(), upload_id])

    @_local_state
    def open_uploads(self) -> list[dict[str, Any]]:
        """Uploads not yet reconciled (a run died or timed out while Gainsight was processing)."""
        cursor = self._db.execute(
            f"SELECT * FROM {SCHEMA}.bulk_uploads WHERE reconciled_at IS NULL ORDER BY uploaded_at"
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @_local_state
    def upload_rows(self, upload_id: str, after: str = "", rows: int = 1 << 62) -> dict[str, str]:
        """response_id -> content_hash of an upload's rows, in key order from after `after`, at most `rows`."""
        found = self._db.execute(
            f"""SELECT response_id, content_hash FROM {SCHEMA}.bulk_upload_rows
                WHERE upload_id = ? AND response_id > ? ORDER BY response_id LIMIT ?""",
            [upload_id, after, rows],
        ).fetchall()
        return dict(found)

    @_local_state
    def unsettled_upload_keys(self, upload_id: str) -> list[str]:
        """An upload's responses whose sent version the ledger has not confirmed (to defer)."""
        found = self._db.execute(
            f"""SELECT u.response_id FROM {SCHEMA}.bulk_upload_rows u
                LEFT JOIN {SCHEMA}.responses l USING (response_id)
                WHERE u.upload_id = ? AND l.pushed_hash IS DISTINCT FROM u.content_hash""",
            [upload_id],
        ).fetchall()
        return [row[0] for row in found]

    # --- quota log (QuotaStore) ---------------------------------------------------------------------

    @_local_state
    def load_quota_counts(self, since: float) -> dict[tuple[str, str, int], int]:
        return _quota_counts(self._db, since)

    @_local_state
    def save_quota_counts(self, counts: dict[tuple[str, str, int], int]) -> None:
        self._db.executemany(
            f"""INSERT INTO {SCHEMA}.quota_log VALUES (?, ?, to_timestamp(?), ?)
                ON CONFLICT (family, "window", window_start) DO UPDATE SET calls = excluded.calls""",
            [(family, window, start, calls) for (family, window, start), calls in counts.items()],
        )

    # --- async People API calls (people_bulk.py) ------------------------------------------------------
    #
    # Each call is logged with its persons *before* it is sent, and its statusId as soon as it is
    # answered, so a run killed while Gainsight processes it polls it in the next run instead of
    # sending the persons again.

    @_local_state
    def start_people_call(self, call_id: str, path: str, persons: list[dict[str, Any]]) -> None:
        """Log a call about to be sent: its persons (`email`, `failed_hash`, `payload`), in order."""
        rows = pa.Table.from_pylist(
            [
                {"position": n, "email": p["email"], "failed_hash": p["failed_hash"], "payload": json.dumps(p["payload"], default=str)}
                for n, p in enumerate(persons)
            ],
            pa.schema([("position", pa.int32()), ("email", pa.string()), ("failed_hash", pa.string()), ("payload", pa.string())]),
        )
        self._db.register("_call_rows", rows)
        try:
            with self._transaction():
                self._db.execute(
                    f"""INSERT INTO {SCHEMA}.people_bulk_calls (call_id, path, status, persons, run_id, submitted_at)
                        VALUES (?, ?, 'SENDING', ?, ?, ?)""",
                    [call_id, path, rows.num_rows, self.run_id, now()],
                )
                self._db.execute(
                    f"INSERT INTO {SCHEMA}.people_bulk_call_rows SELECT ?, position, email, failed_hash, payload FROM _call_rows",
                    [call_id],
                )
        finally:
            self._db.unregister("_call_rows")

    @_local_state
    def update_people_call(self, call_id: str, **values: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)
        self._db.execute(
            f"UPDATE {SCHEMA}.people_bulk_calls SET {assignments} WHERE call_id = ?", [*values.values(), call_id]
        )

    @_local_state
    def open_people_calls(self) -> list[dict[str, Any]]:
        """Calls not reconciled yet (a run died or stopped waiting while Gainsight processed them),
        oldest first, each with its `persons` (email, failed_hash, payload) in order."""
        cursor = self._db.execute(
            f"SELECT call_id, path, status_id, status FROM {SCHEMA}.people_bulk_calls "
            "WHERE reconciled_at IS NULL ORDER BY submitted_at"
        )
        calls = [dict(zip(("call_id", "path", "status_id", "status"), row, strict=True)) for row in cursor.fetchall()]
        for call in calls:
            rows = self._db.execute(
                f"SELECT email, failed_hash, payload FROM {SCHEMA}.people_bulk_call_rows WHERE call_id = ? ORDER BY position",
                [call["call_id"]],
            ).fetchall()
            call["persons"] = [{"email": e, "failed_hash": h, "payload": json.loads(p)} for e, h, p in rows]
        return calls

    @_local_state
    def tenant_fact(self, fact: str, learned_after: datetime | None = None) -> str | None:
        """What an earlier run learned about this tenant (e.g. that it lacks an API), or None;
        with `learned_after`, only a fact learned since then."""
        row = self._db.execute(
            f"SELECT value FROM {SCHEMA}.tenant_facts WHERE fact = ? AND (? IS NULL OR learned_at > ?)",
            [fact, learned_after, learned_after],
        ).fetchone()
        return None if row is None else str(row[0])

    @_local_state
    def remember_tenant_fact(self, fact: str, value: str) -> None:
        self._db.execute(
            f"""INSERT INTO {SCHEMA}.tenant_facts VALUES (?, ?, ?, ?)
                ON CONFLICT (fact) DO UPDATE SET value = excluded.value, learned_at = excluded.learned_at,
                    run_id = excluded.run_id""",
            [fact, value, now(), self.run_id],
        )


def _quota_counts(db: Connection, since: float) -> dict[tuple[str, str, int], int]:
    rows = db.execute(
        f"""SELECT family, "window", epoch(window_start)::BIGINT, calls FROM {SCHEMA}.quota_log
            WHERE window_start >= to_timestamp(?)""",
        [since],
    ).fetchall()
    return {(family, window, int(start)): int(calls) for family, window, start, calls in rows}


# --- inspection views -----------------------------------------------------------------------------
#
# Recreated when their statement changes (checked after every push). `gainsight.response_status` answers "did Jane's detractor response
# reach Gainsight?" in one query; `gainsight.dead_letter_report` lists what Gainsight rejected, why,
# and whether it is still retried; `gainsight.accounts_waiting` lists the accounts that have no
# Company to reference yet, and why.

RESPONSE_STATUS_VIEW = """
CREATE OR REPLACE VIEW {schema}.response_status AS
SELECT
    r.response_id, r.email, r.score, r.category, r.account_id, r.responded_at,
    CASE
        WHEN l.pushed_hash = r.content_hash THEN 'in gainsight'
        WHEN l.status = 'failed' AND l.failed_hash = r.content_hash AND l.attempts >= {max_attempts}
            THEN 'rejected (given up)'
        WHEN l.status = 'failed' THEN 'rejected (will retry)'
        WHEN l.pushed_hash IS NOT NULL THEN 'older version in gainsight'
        WHEN w.account_id IS NOT NULL THEN 'waiting for its company'
        WHEN l.status = 'deferred' THEN 'deferred to next run'
        ELSE 'not pushed yet'
    END AS gainsight_status,
    l.gsid AS gainsight_gsid, l.via, l.updated_at AS pushed_at,
    l.last_error_code, l.last_error,
    c.gsid AS company_gsid,
    a.status AS timeline_status, a.external_id AS timeline_external_id, a.last_error_code AS timeline_error_code
FROM {dataset}.nps_responses r
LEFT JOIN {schema}.responses l USING (response_id)
LEFT JOIN {schema}.activities a USING (response_id)
LEFT JOIN {schema}.companies c ON c.account_id = r.account_id
LEFT JOIN {schema}.company_waits w ON w.account_id = r.account_id
"""

ACCOUNTS_WAITING_VIEW = """
CREATE OR REPLACE VIEW {schema}.accounts_waiting AS
SELECT
    w.account_id, w.account_name, w.reason, w.candidates,
    count(r.response_id) FILTER (WHERE l.pushed_hash IS DISTINCT FROM r.content_hash) AS responses_waiting,
    w.first_waited_at, w.last_checked_at
FROM {schema}.company_waits w
LEFT JOIN {dataset}.nps_responses r ON r.account_id = w.account_id
LEFT JOIN {schema}.responses l USING (response_id)
GROUP BY ALL
ORDER BY responses_waiting DESC, w.account_id
"""

# `will_retry` is the outbox's own rule (`retry_sql`), evaluated with the run's settings:
# true exactly when the next run sends the record again.
DEAD_LETTER_VIEW = """
CREATE OR REPLACE VIEW {schema}.dead_letter_report AS
SELECT
    d.object, d.record_key, d.error_code, d.error_message, d.attempts,
    coalesce(retry.will_retry, FALSE) AS will_retry,
    d.first_failed_at, d.last_failed_at, d.run_id, d.payload
FROM {schema}.dead_letters d
LEFT JOIN ({retry}) retry USING (object, record_key)
ORDER BY d.last_failed_at DESC
"""


def ensure_views(db: Connection, dataset: str, settings: GainsightSettings) -> None:
    """The inspection views for these settings, created where missing or different
    (`connector_common.sql.ensure_views`)."""
    max_attempts = int(settings.max_attempts)
    names = {"schema": SCHEMA, "dataset": f'"{dataset}"', "max_attempts": max_attempts}
    since = f"now() - INTERVAL {max(int(settings.timeline_max_age_days), 0)} DAY"
    retry = retry_sql(str(names["dataset"]), str(max_attempts), str(bool(settings.timeline_enabled)).upper(), since)
    statements = {
        "response_status": RESPONSE_STATUS_VIEW.format(**names),
        "dead_letter_report": DEAD_LETTER_VIEW.format(retry=retry, **names),
        "accounts_waiting": ACCOUNTS_WAITING_VIEW.format(**names),
    }
    shared_ensure_views(db, SCHEMA, statements)


# --- run history ----------------------------------------------------------------------------------
#
# One row per run that got the lock (`pipelines/history.py` says what it is for). It lives in the
# `gainsight` schema, the connector's own state beside the ledger and quota log: outside dlt's
# dataset (dlt never migrates, drops or refreshes it) and without adding a schema name that could
# collide with the DuckDB file's name (DuckDB cannot tell a catalog from a schema of the same name).

RUN_HISTORY = f"{SCHEMA}.run_history"

RUN_HISTORY_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {RUN_HISTORY} (
    run_id VARCHAR PRIMARY KEY, mode VARCHAR, started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ,
    exit_code INTEGER, outcome VARCHAR, counts JSON, cursor_before JSON, cursor_after JSON, error VARCHAR);
"""

RUN_COLUMNS = (
    "run_id", "mode", "started_at", "ended_at", "exit_code", "outcome", "counts", "cursor_before", "cursor_after", "error"
)
_JSON_COLUMNS = ("counts", "cursor_before", "cursor_after")

# Errors a caller may log and carry on from (a run's bookkeeping never decides its outcome).
StateError = duckdb.Error


def ensure_run_history(db: Connection) -> None:
    """Create the table if needed (at the start of a run: the reported problems are read during the run)."""
    db.execute(RUN_HISTORY_DDL)


def record_run(db: Connection, run: dict[str, Any]) -> None:
    """Write a run's row (`RUN_COLUMNS`; the dicts are stored as JSON). Raises `StateError`."""
    values = [json.dumps(v, default=str) if isinstance(v, dict) else v for v in (run[name] for name in RUN_COLUMNS)]
    ensure_run_history(db)
    db.execute(
        f"INSERT OR REPLACE INTO {RUN_HISTORY} ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})",
        values,
    )


def recent_runs(db: Connection, limit: int) -> list[dict[str, Any]]:
    """The last `limit` runs' rows, newest first (none when no run was recorded yet)."""
    if not table_exists(db, SCHEMA, "run_history"):
        return []
    rows = db.execute(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM {RUN_HISTORY} ORDER BY started_at DESC LIMIT ?", [limit]
    ).fetchall()
    runs = []
    for row in rows:
        values = dict(zip(RUN_COLUMNS, row, strict=True))
        for name in _JSON_COLUMNS:
            values[name] = json.loads(values[name]) if values[name] else {}
        runs.append(values)
    return runs


def last_cursor(db: Connection) -> tuple[str, dict[str, str | None]] | None:
    """The cursor the last run that moved or kept one left (backfills leave it alone): run id, cursor."""
    if not recent_runs(db, 1):
        return None
    # A run that failed before its extract finished records its feeds with no cursor: it left the
    # stored cursor as it was, so the one to show is the last run's that actually named one.
    rows = db.execute(
        f"""SELECT run_id, cursor_after FROM {RUN_HISTORY}
            WHERE cursor_after IS NOT NULL AND cursor_after <> '{{}}' ORDER BY started_at DESC"""
    ).fetchall()
    for run_id, cursor in rows:
        feeds = json.loads(cursor)
        if any(value is not None for value in feeds.values()):
            return run_id, feeds
    return None


# --- problems already reported --------------------------------------------------------------------
#
# What the alerts (`pipelines/alerts.py`) count as reported, kept in its own table. kind
# 'quarantine': record_key is the quarantine_id, object is NULL; kind 'dead_letter': the dead
# letter's object and record key. reason is the quarantine reason or the error code.

REPORTED = f"{SCHEMA}.reported_problems"

REPORTED_DDL = f"""
CREATE TABLE {REPORTED} (
    kind VARCHAR, object VARCHAR, record_key VARCHAR, reason VARCHAR, first_reported_run_id VARCHAR)
"""


def _recorded(db: Connection, dataset: str, quarantine: str) -> str:
    """SQL: every quarantined record and dead letter in the file, with the run that last recorded it."""
    nothing = (
        "SELECT NULL::VARCHAR AS kind, NULL::VARCHAR AS object, NULL::VARCHAR AS record_key, "
        "NULL::VARCHAR AS reason, NULL::VARCHAR AS run_id WHERE FALSE"
    )
    parts = [nothing]
    if table_exists(db, dataset, quarantine):
        parts.append(f"""SELECT 'quarantine', NULL, quarantine_id, reason, run_id FROM "{dataset}".{quarantine}""")
    if table_exists(db, SCHEMA, "dead_letters"):
        parts.append(f"SELECT 'dead_letter', object, record_key, error_code, run_id FROM {SCHEMA}.dead_letters")
    return " UNION ALL ".join(parts)


def _remember(db: Connection, dataset: str, quarantine: str, which: str, params: list[Any]) -> None:
    """Add the recorded problems matching the SQL condition `which` (on `r`) to the reported ones."""
    db.execute(
        f"""
        INSERT INTO {REPORTED}
        SELECT DISTINCT r.kind, r.object, r.record_key, r.reason, r.run_id FROM ({_recorded(db, dataset, quarantine)}) r
        WHERE ({which}) AND NOT EXISTS (
            SELECT 1 FROM {REPORTED} p WHERE p.kind = r.kind AND p.object IS NOT DISTINCT FROM r.object
                AND p.record_key = r.record_key AND p.reason IS NOT DISTINCT FROM r.reason)
        """,
        params,
    )


def ensure_reported(db: Connection, dataset: str, quarantine: str, reported_outcomes: Sequence[str]) -> None:
    """Create the reported-problems table, or forget problems whose record is no longer quarantined
    (in `dataset`.`quarantine`) or dead-lettered (delivered, cleared). A file from a version without
    the table starts with what that version counted as reported: rows last recorded by a run whose
    outcome is one of `reported_outcomes`, or older than the history (needs `ensure_run_history`)."""
    if table_exists(db, SCHEMA, "reported_problems"):
        db.execute(
            f"""DELETE FROM {REPORTED} p WHERE NOT EXISTS (SELECT 1 FROM ({_recorded(db, dataset, quarantine)}) r
                WHERE r.kind = p.kind AND r.object IS NOT DISTINCT FROM p.object AND r.record_key = p.record_key)"""
        )
        return
    outcomes = ", ".join(f"'{outcome}'" for outcome in reported_outcomes)
    db.execute(REPORTED_DDL)
    _remember(
        db,
        dataset,
        quarantine,
        f"""r.run_id IN (SELECT run_id FROM {RUN_HISTORY} WHERE outcome IN ({outcomes}))
            OR r.run_id < coalesce((SELECT min(run_id) FROM {RUN_HISTORY}), '~')""",
        [],
    )


def remember_reported(db: Connection, dataset: str, quarantine: str, run_id: str) -> None:
    """Keep the problems run `run_id` recorded as reported. Raises `StateError`."""
    _remember(db, dataset, quarantine, "r.run_id = ?", [run_id])


def quarantine_novelty(db: Connection, staged_files: list[str]) -> tuple[int, int]:
    """Distinct quarantined records in the parquet `staged_files`: (new, already reported with the
    same reason). Needs `ensure_reported` first."""
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
    return int(new), int(seen)


def dead_letter_novelty(db: Connection, run_id: str) -> dict[str, tuple[int, int]]:
    """Per object, the dead letters run `run_id` wrote: (new, the same record already reported with
    the same error code). Needs `ensure_reported` first."""
    if not table_exists(db, SCHEMA, "dead_letters"):
        return {}
    rows = db.execute(
        f"""
        SELECT d.object, count(*) FILTER (WHERE p.record_key IS NULL), count(*) FILTER (WHERE p.record_key IS NOT NULL)
        FROM {SCHEMA}.dead_letters d
        LEFT JOIN {REPORTED} p ON p.kind = 'dead_letter' AND p.object = d.object AND p.record_key = d.record_key
            AND p.reason IS NOT DISTINCT FROM d.error_code
        WHERE d.run_id = ?
        GROUP BY d.object
        """,
        [run_id],
    ).fetchall()
    return {obj: (int(new), int(seen)) for obj, new, seen in rows}


# --- read-only figures (status) -------------------------------------------------------------------


def outbox_counts(db: Connection, dataset: str, settings: GainsightSettings) -> tuple[int, int] | None:
    """Responses and Timeline activities waiting for a push (the push's own outbox query, counted);
    None before a push created the ledger."""
    if not (table_exists(db, SCHEMA, "responses") and table_exists(db, SCHEMA, "activities")):
        return None
    sql = outbox_sql(f'"{dataset}"', settings.people_enabled)
    responses, activities = db.sql(
        f"SELECT count(*) FILTER (WHERE needs_response), count(*) FILTER (WHERE needs_activity) FROM ({sql})",
        params=outbox_parameters(settings),
    ).fetchall()[0]
    return int(responses), int(activities)


def dead_letter_counts(db: Connection) -> dict[str, dict[str, int | None]]:
    """Dead letters per object; `will_retry` from `gainsight.dead_letter_report`, the view every
    push recreates from the one retry rule the push itself follows (so status cannot disagree)."""
    if not table_exists(db, SCHEMA, "dead_letters"):
        return {}
    if view_exists(db, SCHEMA, "dead_letter_report"):
        source, retry = f"{SCHEMA}.dead_letter_report", "count(*) FILTER (WHERE will_retry)"
    else:  # the push never finished with a view yet: whether they retry is not known
        source, retry = f"{SCHEMA}.dead_letters", "NULL"
    rows = db.execute(f"SELECT object, count(*), {retry} FROM {source} GROUP BY object ORDER BY object").fetchall()
    return {obj: {"records": int(n), "will_retry": None if will is None else int(will)} for obj, n, will in rows}


class QuotaLogReader:
    """The quota log, read only: what `QuotaLimiter` loads, without the ledger's DDL (status)."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    def load_quota_counts(self, since: float) -> dict[tuple[str, str, int], int]:
        return _quota_counts(self._db, since)

    def save_quota_counts(self, counts: dict[tuple[str, str, int], int]) -> None:
        raise RuntimeError("status never writes the quota log")


def quota_log_reader(db: Connection) -> QuotaLogReader | None:
    """A reader of the quota log; None when no run has kept one yet."""
    return QuotaLogReader(db) if table_exists(db, SCHEMA, "quota_log") else None


# --- readers outside the push (the survey CSV export) ----------------------------------------------


def company_gsids_sql(db: Connection) -> str:
    """SQL: (account_id, gsid) of every Company whose Gainsight id the ledger knows; no rows before a
    first push. `pipelines/export` joins it so the CSV names the Company id without knowing the ledger."""
    if not table_exists(db, SCHEMA, "companies"):
        return "SELECT NULL::VARCHAR AS account_id, NULL::VARCHAR AS gsid WHERE FALSE"
    return f"SELECT account_id, gsid FROM {SCHEMA}.companies WHERE gsid IS NOT NULL"


# --- PII and GDPR (README "PII and GDPR controls") --------------------------------------------------

PII_RULES_DDL = f"CREATE TABLE IF NOT EXISTS {SCHEMA}.pii_rules (id INTEGER PRIMARY KEY, fingerprint VARCHAR, since TIMESTAMPTZ)"


def resend_for_new_rules(db: Connection, fingerprint: str, keep_all: str) -> tuple[int, int]:
    """When the push's PII rules changed since Gainsight's copies were written, forget the versions the
    ledger confirmed (their Gainsight ids stay), so every response and its Timeline entry is sent once
    more, in the new form: Gainsight should not keep what the current rules forbid. A ledger that
    never recorded rules was written keeping everything (`keep_all`). Returns (responses, activities)."""
    db.execute(PII_RULES_DDL)
    row = db.execute(f"SELECT fingerprint FROM {SCHEMA}.pii_rules WHERE id = 1").fetchone()
    if (row[0] if row else keep_all) == fingerprint:
        if row is None:
            db.execute(f"INSERT INTO {SCHEMA}.pii_rules VALUES (1, ?, ?)", [fingerprint, now()])
        return 0, 0
    db.execute("BEGIN")
    try:
        (responses,) = one_row(db, f"SELECT count(*) FROM {SCHEMA}.responses WHERE pushed_hash IS NOT NULL")
        (activities,) = one_row(db, f"SELECT count(*) FROM {SCHEMA}.activities WHERE source_hash IS NOT NULL")
        db.execute(f"UPDATE {SCHEMA}.responses SET pushed_hash = NULL WHERE pushed_hash IS NOT NULL")
        db.execute(f"UPDATE {SCHEMA}.activities SET source_hash = NULL WHERE source_hash IS NOT NULL")
        db.execute(
            f"INSERT INTO {SCHEMA}.pii_rules VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, since = excluded.since",
            [fingerprint, now()],
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return int(responses), int(activities)


def pending_responses(db: Connection, dataset: str, settings: GainsightSettings) -> pa.Table:
    """`response_id` of every staged response the push still needs as staged (the outbox's rows):
    the staging scrub leaves them alone."""
    sql = outbox_sql(f'"{dataset}"', settings.people_enabled)
    return db.sql(f"SELECT response_id FROM ({sql})", params=outbox_parameters(settings)).to_arrow_table()


# What the ledger holds of one person: ledger table -> its key column; the dead letters of each.
_PERSON_LEDGER = {"responses": "response_id", "activities": "response_id", "bulk_upload_rows": "response_id", "people": "email"}


def person_in_ledger(db: Connection, response_ids: Sequence[str], emails: Sequence[str]) -> dict[str, int]:
    """Rows of the person in each ledger table and in the dead letters (what `forget` erases)."""
    return _person_rows(db, response_ids, emails, "SELECT count(*) FROM")


def erase_person_from_ledger(db: Connection, response_ids: Sequence[str], emails: Sequence[str]) -> dict[str, int]:
    """Delete the person's ledger rows and dead letters (inside the caller's transaction, which also
    erases their staged rows); returns the counts."""
    return _person_rows(db, response_ids, emails, "DELETE FROM")


def _person_rows(db: Connection, response_ids: Sequence[str], emails: Sequence[str], verb: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    ids, addresses = list(response_ids), list(emails)
    for table, key in _PERSON_LEDGER.items():
        if table_exists(db, SCHEMA, table):
            values = addresses if key == "email" else ids
            (counts[table],) = one_row(db, f"{verb} {SCHEMA}.{table} WHERE list_contains(?::VARCHAR[], {key})", [values])
    if table_exists(db, SCHEMA, "dead_letters"):
        (counts["dead_letters"],) = one_row(
            db,
            f"""{verb} {SCHEMA}.dead_letters WHERE (object = 'people' AND list_contains(?::VARCHAR[], record_key))
                OR (object IN ('responses', 'activities') AND list_contains(?::VARCHAR[], record_key))""",
            [addresses, ids],
        )
    if table_exists(db, SCHEMA, "reported_problems"):  # dead letters already alerted on, by record key
        (counts["reported_problems"],) = one_row(
            db, f"{verb} {REPORTED} WHERE kind = 'dead_letter' AND list_contains(?::VARCHAR[], record_key)", [addresses + ids]
        )
    return {table: int(count) for table, count in counts.items()}
