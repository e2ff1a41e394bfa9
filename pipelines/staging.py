"""The DuckDB staging file: the run lock, change counts and the inspection views.

DuckDB lets one process hold a file read-write. The command opens the file once at start and hands
that same connection to dlt, so holding it *is* the run lock: a second run (or a read-write
`duckdb` shell) fails at once with the holder's PID instead of interleaving writes.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from connector_common.memory import empty_duckdb_cache
from connector_common.sql import ensure_views, one_row, table_exists

from .errors import ConfigError, StagingFailed, StagingLocked

log = logging.getLogger("nps.staging")

RESPONSES = "nps_responses"
DEFAULT_MEMORY_LIMIT = "128MB"
QUARANTINE = "quarantine"

# Views are recreated when their statement changes (a run checks); plain SQL so anyone can read them.
NPS_DAILY_VIEW = """
CREATE OR REPLACE VIEW {ds}.nps_daily AS
SELECT
    CAST(responded_at AT TIME ZONE 'UTC' AS DATE)      AS day,
    COUNT(*)                                          AS responses,
    COUNT(*) FILTER (WHERE category = 'promoter')     AS promoters,
    COUNT(*) FILTER (WHERE category = 'passive')      AS passives,
    COUNT(*) FILTER (WHERE category = 'detractor')    AS detractors,
    ROUND(100.0 * (COUNT(*) FILTER (WHERE category = 'promoter')
                 - COUNT(*) FILTER (WHERE category = 'detractor')) / COUNT(*), 1) AS nps
FROM {ds}.nps_responses
GROUP BY ALL
"""

# `status` compares the quarantined version with the staged one (what Gainsight has): `never_staged`
# (no valid version exists), `fixed_upstream` (a valid version was fetched after this one), or
# `invalid_edit_kept_last_valid` (a valid response was edited into this invalid one: the last
# valid version stays staged and in Gainsight until CustomerGauge fixes it).
QUARANTINE_VIEW = """
CREATE OR REPLACE VIEW {ds}.quarantine_report AS
SELECT
    q.quarantined_at AS last_seen_at,
    q.source_table,
    q.response_id,
    {responded_at} AS responded_at,
    {sent_at} AS sent_at,
    q.reason,
    CASE WHEN r.response_id IS NULL THEN 'never_staged'
         WHEN r.fetched_at > q.quarantined_at THEN 'fixed_upstream'
         ELSE 'invalid_edit_kept_last_valid' END AS status,
    coalesce(r.fetched_at > q.quarantined_at, FALSE) AS fixed_upstream,
    q.run_id,
    q.raw
FROM {ds}.quarantine q
LEFT JOIN {ds}.{fixed_in} r ON r.response_id = q.response_id AND q.source_table = '{fixed_in}'
ORDER BY q.quarantined_at DESC
"""

EMPTY_QUARANTINE_VIEW = """
CREATE OR REPLACE VIEW {ds}.quarantine_report AS
SELECT NULL::TIMESTAMPTZ AS last_seen_at, NULL::VARCHAR AS source_table,
       NULL::VARCHAR AS response_id, NULL::TIMESTAMPTZ AS responded_at, NULL::TIMESTAMPTZ AS sent_at,
       NULL::VARCHAR AS reason, NULL::VARCHAR AS status, NULL::BOOLEAN AS fixed_upstream, NULL::VARCHAR AS run_id,
       NULL::VARCHAR AS raw
WHERE FALSE
"""


def megabytes(limit: str) -> int:
    """'128MB', '1GB', '512MiB' -> megabytes (DuckDB's memory_limit notation)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)\s*", limit, re.IGNORECASE)
    if not match:
        raise ConfigError(
            f"nps_to_gainsight.duckdb_memory_limit must look like '128MB' or '1GB', got {limit!r} "
            "(env NPS_TO_GAINSIGHT__DUCKDB_MEMORY_LIMIT)"
        )
    scale = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[match.group(2)[0].upper()]
    return max(1, int(float(match.group(1)) * scale))


@dataclass
class ChangeCounts:
    new: int = 0
    updated: int = 0


# DuckDB folds its write-ahead log into the file when the log passes this size (default 16MB).
# The push commits the ledger in many small batches; with the default, ~100k ledger rows were
# folded in at close, in one checkpoint that was the run's memory peak (+30 MB at 100k responses).
# Small checkpoints along the way cost no measurable time.
CHECKPOINT_THRESHOLD = "4MB"


# While a run holds the file, everything the process creates is private to its user: the DuckDB
# file and its .wal / spill folder, dlt's working folder (load packages) and the Bulk files all
# hold e-mails, names and comments. A umask covers files made by DuckDB and dlt, which take no mode.
PRIVATE_UMASK = 0o077
PRIVATE_FILE = 0o600


class StagingStore:
    """One open DuckDB file for the duration of a run."""

    def __init__(
        self, path: Path, dataset: str, connection: duckdb.DuckDBPyConnection, memory_limit: str, umask: int
    ):
        self.path = path
        self.dataset = dataset
        self.connection = connection
        self.memory_limit = memory_limit
        self._outer_umask = umask
        self.on_disk = True  # False for a `scratch` store: `path` names the file a real run would create

    @classmethod
    def open(
        cls, path: Path, dataset: str, memory_limit: str = DEFAULT_MEMORY_LIMIT, holder: str = "run"
    ) -> StagingStore:
        """Take the file (the run lock) for `holder`: the verb taking it (`run`, `serve`,
        `export-csv`, `forget`), recorded next to the file so whoever finds it held is told by whom."""
        megabytes(memory_limit)  # fail on a malformed limit before touching the file
        path.parent.mkdir(parents=True, exist_ok=True)
        umask = os.umask(PRIVATE_UMASK)  # restored by close()
        try:
            _make_private(path)
            connection = _connect(path, memory_limit, holder)
            _record_holder(path, holder)
        except BaseException:
            os.umask(umask)
            raise
        return cls(path, dataset, connection, memory_limit, umask)

    @classmethod
    def scratch(cls, path: Path, dataset: str, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> StagingStore:
        """An empty store in memory standing in for `path`, which does not exist yet: for a dry run,
        which must leave nothing behind (no file, no folder, no holder record) that a later run would
        find. Nothing is locked: there is no file to guard, and nothing written here is kept."""
        megabytes(memory_limit)
        connection = duckdb.connect(":memory:", config={"memory_limit": memory_limit})
        store = cls(path, dataset, connection, memory_limit, os.umask(PRIVATE_UMASK))
        store.on_disk = False
        return store

    def close(self) -> None:
        try:
            self.connection.close()
            _forget_holder(self.path)
        finally:
            os.umask(self._outer_umask)

    def rewrite(self) -> None:
        """Replace the file with a fresh copy of what it holds now.

        DuckDB marks deleted rows and frees replaced blocks without overwriting them (it has no
        secure delete), so an erased person or a scrubbed e-mail or comment stays readable in the
        file's bytes until the space is reused. A copy of the database (same schemas, tables, keys
        and views; private like the original) replaces it. This connection keeps the old file locked
        until the copy is in place, so no run can start on either in between; the caller closes the
        store right after (later writes through this connection would go to the replaced file).
        """
        db = self.connection
        db.execute("CHECKPOINT")
        (catalog,) = db.execute("SELECT current_database()").fetchone() or ("",)
        fresh = self.path.with_name(self.path.name + ".rewrite-tmp")
        fresh.unlink(missing_ok=True)  # a killed rewrite's partial copy
        db.execute(f"ATTACH '{fresh}' AS rewrite_copy")
        try:
            db.execute(f'COPY FROM DATABASE "{catalog}" TO rewrite_copy')
        finally:
            db.execute("DETACH rewrite_copy")
        os.replace(fresh, self.path)

    def raise_memory_limit(self) -> str:
        """Raise DuckDB's memory limit for the rest of this run (4x, at least 512MB); returns it."""
        self.memory_limit = f"{max(megabytes(self.memory_limit) * 4, 512)}MB"
        self.connection.execute(f"SET memory_limit = '{self.memory_limit}'")
        return self.memory_limit

    @contextmanager
    def one_thread(self) -> Iterator[None]:
        """DuckDB on one thread for a block: each thread of a parallel insert builds its own row
        groups in memory, so two threads cost the 200k-response stage ~45 MB more at its peak (the
        load of a part) for a load that is a small part of the stage's time."""
        self.connection.execute("SET threads = 1")
        try:
            yield
        finally:
            self.connection.execute("RESET threads")

    def release_memory(self) -> None:
        """Fold the write-ahead log into the file, empty DuckDB's buffer pool and hand the freed
        pages back (connector_common.memory): what a load cached would otherwise sit under the next
        part's extract and under the whole push (about 110 MB after a 100k-row part)."""
        empty_duckdb_cache(self.connection)

    def table_exists(self, table: str) -> bool:
        return table_exists(self.connection, self.dataset, table)

    def count(self, table: str) -> int:
        if not self.table_exists(table):
            return 0
        row = one_row(self.connection, f'SELECT count(*) FROM "{self.dataset}"."{table}"')
        return int(row[0]) if row else 0

    def count_changes(self, staged_files: list[str]) -> ChangeCounts:
        """New and changed responses in a run's files, compared with what is staged now.

        Runs on the files dlt is about to load, so the cost follows the run's size, not the
        table's. A response fetched twice in one run counts once, in its latest version.
        """
        if not staged_files:
            return ChangeCounts()
        if not self.table_exists(RESPONSES):
            row = one_row(self.connection, "SELECT count(DISTINCT response_id) FROM read_parquet(?)", [staged_files])
            return ChangeCounts(new=int(row[0]) if row else 0)
        new, updated = one_row(
            self.connection,
            f"""
            WITH incoming AS (
                SELECT response_id, content_hash FROM read_parquet(?)
                QUALIFY row_number() OVER (PARTITION BY response_id ORDER BY fetched_at DESC) = 1
            )
            SELECT count(*) FILTER (WHERE s.response_id IS NULL),
                   count(*) FILTER (WHERE s.response_id IS NOT NULL AND s.content_hash <> i.content_hash)
            FROM incoming i LEFT JOIN "{self.dataset}".{RESPONSES} s USING (response_id)
            """,
            [staged_files],
        )
        return ChangeCounts(new=int(new), updated=int(updated))

    def ensure_views(self) -> None:
        """Create the inspection views once the responses table exists, again when their
        statement changes (`connector_common.sql.ensure_views`).

        The quarantine table gains a date column per feed that ever quarantined something
        (`responded_at`, `sent_at`); the view shows both, null where a feed has none yet.
        """
        if not self.table_exists(RESPONSES):
            return
        ds = f'"{self.dataset}"'
        if self.table_exists(QUARANTINE):
            columns = set(self.connection.table(f'{ds}."{QUARANTINE}"').columns)
            dates = {name: f"q.{name}" if name in columns else "NULL::TIMESTAMPTZ" for name in ("responded_at", "sent_at")}
            quarantine = QUARANTINE_VIEW.format(ds=ds, fixed_in=RESPONSES, **dates)
        else:
            quarantine = EMPTY_QUARANTINE_VIEW.format(ds=ds)
        ensure_views(self.connection, self.dataset, {"nps_daily": NPS_DAILY_VIEW.format(ds=ds), "quarantine_report": quarantine})


def _connect(path: Path, memory_limit: str, verb: str) -> duckdb.DuckDBPyConnection:
    try:
        # DuckDB would otherwise size its buffer pool to 80% of RAM; a merge of a large
        # backfill spills to disk past this limit instead of growing the process.
        return duckdb.connect(
            str(path), config={"memory_limit": memory_limit, "checkpoint_threshold": CHECKPOINT_THRESHOLD}
        )
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise staging_locked(path, verb, exc) from None
        raise StagingFailed(f"cannot open the DuckDB file {path}: {exc}") from None


def require_staging_file(path: Path) -> None:
    """For the verbs that read or erase what runs staged (status, export-csv, forget, check): a
    missing file is a wrong path or a connector that never ran, and opening it would create it."""
    if not path.is_file():
        raise ConfigError(
            f"no staging file at {path}: no run has used it yet, or destination.duckdb.credentials "
            "(DESTINATION__DUCKDB__CREDENTIALS) points elsewhere than the scheduled run's"
        )


def holder_file(path: Path) -> Path:
    """Who holds the staging file: `{"kind", "pid", "since"}`, written by whoever takes the lock."""
    return path.with_name(path.name + ".holder")


def _record_holder(path: Path, kind: str) -> None:
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    holder_file(path).write_text(json.dumps({"kind": kind, "pid": os.getpid(), "since": since}), encoding="utf-8")


def _forget_holder(path: Path) -> None:
    """Remove the holder record if it is this process's (a killed holder's stale one is overwritten
    by the next and ignored when its PID is gone)."""
    record = _holder(path)
    if record and record.get("pid") == os.getpid():
        holder_file(path).unlink(missing_ok=True)


def _holder(path: Path) -> dict[str, object] | None:
    """The recorded holder, or None if there is none or its process is gone (a killed holder)."""
    try:
        record = json.loads(holder_file(path).read_text(encoding="utf-8"))
        os.kill(int(record["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if isinstance(record, dict) else None


def staging_locked(path: Path, verb: str, exc: Exception) -> StagingLocked:
    """The error for `verb` finding the file held: it names the holder, and what to do about it."""
    record = _holder(path)
    if record and record.get("kind") == "serve":
        return StagingLocked(
            f"{path} is held by `serve` (PID {record['pid']}, since {record['since']}), which owns the file "
            f"for as long as it runs: its /healthz and /metrics show its runs and counts. {verb} needs the "
            "file to itself: stop serve, run it, start serve again. Nothing was changed."
        )
    if record:
        return StagingLocked(
            f"{path} is held by `{record['kind']}` (PID {record['pid']}, started {record['since']}); "
            f"{verb} stops without changing anything: run it again when that has finished."
        )
    return StagingLocked(
        f"{path} is in use by another process: a duckdb session on the file (read-only ones too: DuckDB "
        f"lets no writer in while another process has the file open), or a run started by an older "
        f"version; {verb} stops without changing anything. DuckDB says: {exc}"
    )


def _make_private(path: Path) -> None:
    """Tighten a file (and its WAL) an earlier version of the connector created world-readable."""
    for existing in (path, path.with_name(path.name + ".wal")):
        try:
            if existing.exists():
                existing.chmod(PRIVATE_FILE)
        except OSError as exc:
            raise StagingFailed(f"cannot make {existing} private to this user (mode 0600): {exc}") from None
