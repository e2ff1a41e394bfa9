"""The canonical NPS response: every column the connector stages, pushes and maps, declared once.

The source builds its staging tables from these declarations and the destination reads and maps the
same names, so the two sides cannot drift. Everything that used to restate the columns by hand is
derived here:

- `DEFAULT_PROPERTY_MAP` - the columns filled from CustomerGauge `properties`, and their labels
  (the source's `property_map` accepts exactly these keys);
- `RESPONSE_COLUMNS` / `NON_RESPONSE_COLUMNS` - the staging tables' layout and types;
- `PUSHED_FIELDS` - the columns whose change re-sends a response (its `content_hash`);
- `OUTBOX_COLUMNS` - the staged columns the push reads;
- `DEFAULT_RESPONSE_FIELDS` - the response object's default field map; `MAPPABLE` - every column
  the field map may name (the destination's `response_fields` accepts exactly these keys).

Adding a CustomerGauge property is one `Column` in `PROPERTIES` (README "Adding a property").
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")
PROPERTY_PAIRS = pa.list_(pa.struct([("field", pa.string()), ("reference", pa.string())]))

# Gainsight data types a mapped field may have, for `check` (reference §4.4).
TEXT = frozenset({"STRING", "RICHTEXTAREA", "TEXT"})
CHOICE = TEXT | {"PICKLIST"}
NUMBER = frozenset({"NUMBER", "INTEGER", "DOUBLE"})
DATETIME = frozenset({"DATETIME"})


@dataclass(frozen=True)
class Column:
    """One canonical column.

    `pushed`: part of the content hash, so a change re-sends the response to Gainsight.
    `outbox`: read by the push (the field map may name it; people and companies read it).
    `label`: the CustomerGauge property it is filled from (through `property_map`), if any.
    `field`: its default field on the Gainsight response object; None = not mapped by default.
    `accepts` / `min_length`: the Gainsight field types that can hold it and the shortest length
    that holds every value (the push cuts text to the field's length, never a key or an id).
    """

    name: str
    type: pa.DataType = pa.string()
    pushed: bool = True
    outbox: bool = True
    label: str | None = None
    field: str | None = None
    accepts: frozenset[str] = TEXT
    min_length: int = 0
    nullable: bool = True

    @property
    def arrow(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable)


def _property(name: str, label: str, field: str | None = None, accepts: frozenset[str] = CHOICE, min_length: int = 0) -> Column:
    return Column(name, label=label, field=field, accepts=accepts, min_length=min_length)


RESPONSE_KEY = "response_id"
# CustomerGauge ids run up to int64 (19 digits).
KEY = Column(RESPONSE_KEY, pushed=False, field="ResponseId__gc", min_length=20, nullable=False)
SURVEY = (
    Column("score", pa.int64(), field="Score__gc", accepts=NUMBER),
    # Derived from the score, so not hashed on its own; "Detractor" needs 9 characters.
    Column("category", pushed=False, field="NpsCategory__gc", accepts=CHOICE, min_length=9),
    Column("comment", field="Comment__gc"),
)
PERSON = (
    Column("email", field="PersonEmail__gc", accepts=TEXT | {"EMAIL"}),
    Column("first_name"),
    Column("last_name"),
    Column("account_name"),
)
# Filled from CustomerGauge `properties` through the configurable property map. The order is part
# of every content hash: append, never reorder.
PROPERTIES = (
    _property("account_id", "Account Number"),
    _property("touchpoint", "Touchpoint", "Touchpoint__gc"),
    _property("channel", "Channel", "Channel__gc"),
    _property("language", "Language", "Language__gc"),
    _property("country", "Country", "Country__gc"),
    _property("segment", "Segment", "Segment__gc"),
    _property("product", "Product", "Product__gc"),
    _property("survey_id", "Survey ID", "SurveyId__gc", TEXT, 20),
    _property("case_link", "Case Link", "CaseLink__gc", TEXT | {"URL"}),
)
RESPONDED_AT = Column("responded_at", UTC_TS, field="ResponseDatetime__gc", accepts=DATETIME)
CREATED_AT = Column("created_at", UTC_TS, pushed=False, outbox=False)
DRIVERS = Column("drivers", pa.list_(pa.string()), outbox=False)
# The property pairs no column holds, so nothing CustomerGauge sent is lost.
UNMAPPED = Column("properties", PROPERTY_PAIRS, pushed=False, outbox=False)
CONTENT_HASH = Column("content_hash", pushed=False)
FETCHED_AT = Column("fetched_at", UTC_TS, pushed=False, outbox=False)
# Not staged: the ledger's id of the response's Company, sent so the record links to it.
COMPANY_GSID = Column("company_gsid", pushed=False, outbox=False, field="CompanyId__gc", accepts=TEXT | {"GSID", "LOOKUP"}, min_length=36)

RESPONSE_COLUMNS: tuple[Column, ...] = (
    KEY, *SURVEY, *PERSON, *PROPERTIES, RESPONDED_AT, CREATED_AT, DRIVERS, UNMAPPED, CONTENT_HASH, FETCHED_AT
)
NON_RESPONSE_COLUMNS: tuple[Column, ...] = (
    KEY, *PERSON, *PROPERTIES, Column("sent_at", UTC_TS), CREATED_AT, UNMAPPED, FETCHED_AT
)

DEFAULT_PROPERTY_MAP: dict[str, str] = {column.name: column.label for column in PROPERTIES if column.label}
PUSHED_FIELDS: tuple[str, ...] = tuple(column.name for column in RESPONSE_COLUMNS if column.pushed)
OUTBOX_COLUMNS: tuple[str, ...] = tuple(column.name for column in RESPONSE_COLUMNS if column.outbox)
# Columns the response object's field map may name: what the outbox holds, and the Company's id.
MAPPABLE: dict[str, Column] = {
    column.name: column
    for column in (*RESPONSE_COLUMNS, COMPANY_GSID)
    if column.field or (column.outbox and column is not CONTENT_HASH)
}
DEFAULT_RESPONSE_FIELDS: dict[str, str] = {name: column.field for name, column in MAPPABLE.items() if column.field}


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name an unknown one most likely meant (for "did you mean" in config errors)."""
    found = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return found[0] if found else None
