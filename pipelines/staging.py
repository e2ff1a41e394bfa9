"""The DuckDB staging file: the run lock, change counts and the inspection views.

DuckDB lets one process hold a file read-write. The command opens the file once at start and hands
that same connection to dlt, so holding it *is* the run lock: a second run (or a read-write
`duckdb` shell) fails at once with the holder's PID instead of interleaving writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .errors import StagingFailed, StagingLocked

log = logging.getLogger("nps.staging")

RESPONSES = "nps_responses"
QUARANTINE = "quarantine"

# Views are recreated after every run; they are plain SQL so anyone can read and change them.
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

QUARANTINE_VIEW = """
CREATE OR REPLACE VIEW {ds}.quarantine_report AS
SELECT
    q.quarantined_at AS last_seen_at,
    q.source_table,
    q.response_id,
    q.responded_at,
    q.reason,
    r.response_id IS NOT NULL AS fixed_upstream,
    q.run_id,
    q.raw
FROM {ds}.quarantine q
LEFT JOIN {ds}.nps_responses r ON r.response_id = q.response_id
"""

EMPTY_QUARANTINE_VIEW = """
CREATE OR REPLACE VIEW {ds}.quarantine_report AS
SELECT NULL::TIMESTAMPTZ AS last_seen_at, NULL::VARCHAR AS source_table,
       NULL::VARCHAR AS response_id, NULL::TIMESTAMPTZ AS responded_at, NULL::VARCHAR AS reason,
       NULL::BOOLEAN AS fixed_upstream, NULL::VARCHAR AS run_id, NULL::VARCHAR AS raw
WHERE FALSE
"""


@dataclass
class ChangeCounts:
    new: int = 0
    updated: int = 0


class StagingStore:
    """One open DuckDB file for the duration of a run."""

    def __init__(self, path: Path, dataset: str, connection: duckdb.DuckDBPyConnection):
        self.path = path
        self.dataset = dataset
        self.connection = connection

    @classmethod
    def open(cls, path: Path, dataset: str) -> "StagingStore":
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StagingLocked(
                    f"{path} is in use by another process, most likely a run still in progress or "
                    f"an open read-write duckdb session; this run stops without changing anything. "
                    f"DuckDB says: {exc}"
                ) from None
            raise StagingFailed(f"cannot open the DuckDB file {path}: {exc}") from None
        return cls(path, dataset, connection)

    def close(self) -> None:
        self.connection.close()

    def table_exists(self, table: str) -> bool:
        found = self.connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [self.dataset, table],
        ).fetchone()
        return bool(found and found[0])

    def count(self, table: str) -> int:
        if not self.table_exists(table):
            return 0
        row = self.connection.execute(f'SELECT count(*) FROM "{self.dataset}"."{table}"').fetchone()
        return int(row[0]) if row else 0

    def snapshot_response_hashes(self) -> None:
        """Remember (response_id, content_hash) before loading, to count new and changed rows."""
        self.connection.execute("DROP TABLE IF EXISTS temp.run_before")
        if self.table_exists(RESPONSES):
            self.connection.execute(
                f'CREATE TEMP TABLE run_before AS SELECT response_id, content_hash FROM "{self.dataset}".{RESPONSES}'
            )
        else:
            self.connection.execute("CREATE TEMP TABLE run_before (response_id VARCHAR, content_hash VARCHAR)")

    def changes_since_snapshot(self) -> ChangeCounts:
        if not self.table_exists(RESPONSES):
            return ChangeCounts()
        new, updated = self.connection.execute(
            f"""
            SELECT count(*) FILTER (WHERE b.response_id IS NULL),
                   count(*) FILTER (WHERE b.response_id IS NOT NULL AND b.content_hash <> r.content_hash)
            FROM "{self.dataset}".{RESPONSES} r
            LEFT JOIN temp.run_before b USING (response_id)
            """
        ).fetchone()
        return ChangeCounts(new=int(new), updated=int(updated))

    def ensure_views(self) -> None:
        """(Re)create the inspection views once the responses table exists."""
        if not self.table_exists(RESPONSES):
            return
        ds = f'"{self.dataset}"'
        self.connection.execute(NPS_DAILY_VIEW.format(ds=ds))
        quarantine_sql = QUARANTINE_VIEW if self.table_exists(QUARANTINE) else EMPTY_QUARANTINE_VIEW
        self.connection.execute(quarantine_sql.format(ds=ds))
