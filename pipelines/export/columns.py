"""The survey-import CSV's columns: their order, header names and where each value comes from.

The header names are the canonical column names of `connector_common/schema.py`, so the CSV, the
staging table and the Gainsight field map speak of the same things by the same names. The order is
part of the interface (a "Load to Survey" rule maps by header, a spreadsheet macro by position):
new columns are only ever appended.

Every value is text by the time it leaves SQL: the CSV has no types, and formatting in one place
(here) keeps the file identical whichever DuckDB or Python version reads the timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector_common.schema import COMPANY_GSID, RESPONSE_COLUMNS

_STAGED = {column.name for column in RESPONSE_COLUMNS}


@dataclass(frozen=True)
class ExportColumn:
    """One CSV column: its header and the SQL giving its text over staged `r` and ledger companies `c`
    (NULL where staging holds nothing: the cell is empty; CSV cannot tell empty from missing)."""

    name: str
    sql: str


def _staged(name: str) -> ExportColumn:
    """A staged column as it is (text columns are written byte for byte)."""
    if name not in _STAGED:  # a renamed canonical column must fail at import, not write empty cells
        raise KeyError(f"{name} is not a staged column (connector_common/schema.py)")
    return ExportColumn(name, f"r.{name}")


COLUMNS: tuple[ExportColumn, ...] = (
    _staged("response_id"),
    # The ledger's id of the response's Company: empty until a push has created or matched it.
    ExportColumn(COMPANY_GSID.name, "c.gsid"),
    _staged("account_id"),
    _staged("account_name"),
    _staged("email"),
    _staged("first_name"),
    _staged("last_name"),
    ExportColumn("score", "CAST(r.score AS VARCHAR)"),
    _staged("category"),
    _staged("comment"),
    _staged("survey_id"),
    # CustomerGauge's v7 response carries no survey name (customergauge-api.md §3.3): nothing is
    # staged, so the column stays empty rather than guessed; it is there so a rule mapped today
    # keeps working if a name is ever staged.
    ExportColumn("survey_name", "NULL"),
    _staged("touchpoint"),
    # ISO 8601 in UTC, to the second (CustomerGauge's own precision).
    ExportColumn("responded_at", "strftime(timezone('UTC', r.responded_at), '%Y-%m-%dT%H:%M:%SZ')"),
    _staged("language"),
    _staged("channel"),
)

HEADER: tuple[str, ...] = tuple(column.name for column in COLUMNS)
EMAIL_COLUMN = HEADER.index("email")
RESPONSE_ID_COLUMN = HEADER.index("response_id")
