"""The export state: which version of each response the CSV export last wrote, and every file it wrote.

Every SQL statement on it lives here (the export is not part of the Gainsight push, which it never
calls, so its state is not `destinations/gainsight/store.py`'s; it reads the ledger's Company ids
only through `store.company_gsids_sql`). The tables sit in the `gainsight` schema, the connector's
own state beside the ledger and the run history: outside dlt's dataset, which dlt may migrate or
drop, and without a new schema name that could clash with the DuckDB file's name.

- `gainsight.csv_exports`: one row per published file (absolute path, rows, mode, range, guard).
- `gainsight.csv_exported`: per response, the content hash and Company id it was last exported
  with. A response is due again when it is new, its content changed (an edited comment), or its
  Company id became known or changed. No e-mail or name is kept here.

Booking happens only after the file's rename, in one transaction: an export killed before it
leaves the state as it was, and the next export writes those rows again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import duckdb

from connector_common.sql import table_exists
from destinations.gainsight.store import SCHEMA, company_gsids_sql

from .columns import COLUMNS
from .csv_file import guarded_sql

STATE_TABLES = ("csv_exports", "csv_exported")
EXPORTS, EXPORTED = (f"{SCHEMA}.{table}" for table in STATE_TABLES)
RESPONSES = "nps_responses"

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {EXPORTS} (
    export_id VARCHAR PRIMARY KEY, file_path VARCHAR, rows INTEGER, mode VARCHAR,
    since DATE, until DATE, formula_guard BOOLEAN, written_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS {EXPORTED} (
    response_id VARCHAR PRIMARY KEY, content_hash VARCHAR, company_gsid VARCHAR,
    export_id VARCHAR, exported_at TIMESTAMPTZ);
"""

BATCH_ROWS = 5_000


@dataclass(frozen=True)
class Selection:
    """Which staged responses an export writes: all of them or the due ones, by UTC response day."""

    everything: bool = False
    since: date | None = None
    until: date | None = None

    @property
    def mode(self) -> str:
        return "all" if self.everything else "incremental"

    def parameters(self) -> dict[str, object]:
        start = datetime.combine(self.since, time(), timezone.utc) if self.since else None
        end = datetime.combine(self.until + timedelta(days=1), time(), timezone.utc) if self.until else None
        return {"everything": self.everything, "start": start, "end": end}


@dataclass(frozen=True)
class ExportFile:
    export_id: str
    path: Path
    formula_guard: bool


def ensure_state(db: duckdb.DuckDBPyConnection) -> None:
    db.execute(DDL)


def has_state(db: duckdb.DuckDBPyConnection) -> bool:
    return all(table_exists(db, SCHEMA, table) for table in STATE_TABLES)


def has_responses(db: duckdb.DuckDBPyConnection, dataset: str) -> bool:
    return table_exists(db, dataset, RESPONSES)


def _selection_sql(db: duckdb.DuckDBPyConnection, dataset: str, formula_guard: bool = False) -> str:
    """The responses an export writes as CSV cells (guarded if asked), then what booking needs."""
    cells = ", ".join(
        f'{guarded_sql(text) if formula_guard else text} AS "{column.name}"'
        for column, text in ((column, f"coalesce({column.sql}, '')") for column in COLUMNS)
    )
    return f"""
    SELECT {cells}, r.response_id AS booked_response_id, r.content_hash AS booked_hash, c.gsid AS booked_gsid,
        r.responded_at AS sort_at
    FROM "{dataset}".{RESPONSES} r
    LEFT JOIN ({company_gsids_sql(db)}) c ON c.account_id = r.account_id
    LEFT JOIN {EXPORTED} e ON e.response_id = r.response_id
    WHERE ($everything OR e.response_id IS NULL OR e.content_hash IS DISTINCT FROM r.content_hash
           OR e.company_gsid IS DISTINCT FROM c.gsid)
      AND ($start::TIMESTAMPTZ IS NULL OR r.responded_at >= $start::TIMESTAMPTZ)
      AND ($end::TIMESTAMPTZ IS NULL OR r.responded_at < $end::TIMESTAMPTZ)
    """


def selected_rows(
    db: duckdb.DuckDBPyConnection, dataset: str, selection: Selection, formula_guard: bool
) -> Iterator[list[tuple[str, ...]]]:
    """The CSV cells of the selected responses, in batches, ordered by response time then id.

    Read through a cursor of its own and to the end (an unfinished result would pin DuckDB's
    old row versions; connector_common/sql.py)."""
    cursor = db.cursor()
    try:
        cursor.execute(
            f"SELECT * EXCLUDE (booked_response_id, booked_hash, booked_gsid, sort_at) "
            f"FROM ({_selection_sql(db, dataset, formula_guard)}) ORDER BY sort_at, booked_response_id",
            selection.parameters(),
        )
        while batch := cursor.fetchmany(BATCH_ROWS):
            yield batch
    finally:
        cursor.close()


def book(
    db: duckdb.DuckDBPyConnection,
    dataset: str,
    selection: Selection,
    export: ExportFile,
    rows: int,
    written_at: datetime,
) -> None:
    """Record a published file and the response versions it holds, at once.

    The same selection as the file's: nothing changed in between, since the export holds the
    staging file's lock from selecting to booking."""
    db.execute("BEGIN")
    try:
        db.execute(
            f"INSERT INTO {EXPORTS} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [export.export_id, str(export.path), rows, selection.mode, selection.since, selection.until,
             export.formula_guard, written_at],
        )
        db.execute(
            f"""INSERT OR REPLACE INTO {EXPORTED}
                SELECT booked_response_id, booked_hash, booked_gsid, $export_id, $written_at
                FROM ({_selection_sql(db, dataset)})""",
            {**selection.parameters(), "export_id": export.export_id, "written_at": written_at},
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


# --- erasing a person (pipelines/export/erase.py) ------------------------------------------------


def staged_response_ids(db: duckdb.DuckDBPyConnection, dataset: str, email: str) -> set[str]:
    """Ids of the staged responses of `email` (staging keeps e-mails trimmed and lower-cased)."""
    if not has_responses(db, dataset):
        return set()
    rows = db.execute(
        f'SELECT response_id FROM "{dataset}".{RESPONSES} WHERE lower(trim(email)) = ?', [email]
    ).fetchall()
    return {row[0] for row in rows}


def exported_count(db: duckdb.DuckDBPyConnection, response_ids: Sequence[str]) -> int:
    rows = db.execute(f"SELECT count(*) FROM {EXPORTED} WHERE list_contains(?, response_id)", [list(response_ids)])
    return int(rows.fetchall()[0][0])


def forget_exported(db: duckdb.DuckDBPyConnection, response_ids: Sequence[str]) -> None:
    db.execute(f"DELETE FROM {EXPORTED} WHERE list_contains(?, response_id)", [list(response_ids)])


def export_files(db: duckdb.DuckDBPyConnection) -> list[ExportFile]:
    """Every file the export published, oldest first."""
    rows = db.execute(f"SELECT export_id, file_path, formula_guard FROM {EXPORTS} ORDER BY written_at").fetchall()
    return [ExportFile(export_id, Path(path), bool(guard)) for export_id, path, guard in rows]


def recount(db: duckdb.DuckDBPyConnection, export: ExportFile, rows: int) -> None:
    db.execute(f"UPDATE {EXPORTS} SET rows = ? WHERE export_id = ?", [rows, export.export_id])
