"""Pages straight into Arrow: the fast path for clean pages.

pyarrow's JSON reader parses a 1000-record page about twice as fast as `json.loads`, in C++ and
without holding the GIL, so pages can be parsed on several threads while the main thread fetches
and feeds dlt. It only *accepts* a page when every record passes checks that are a strict subset of
what the pydantic schema in `models.py` accepts (exact documented date format, ints that are JSON
integers, no null records or property names, ...). Anything unusual makes it decline, and the page
goes through pydantic, which stays the single authority on what is invalid and why.

Both paths end in the same raw Arrow layout (`raw_record_type`), so the canonical mapping in
`mapping.py` is one function whichever path a page took.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

# The one timestamp format CustomerGauge documents for its payloads.
CG_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"

_PAIR = pa.struct([("field", pa.string()), ("reference", pa.string())])
_PERSON = [
    ("number_customergauge", pa.int64()),
    ("email", pa.string()),
    ("contact", pa.struct([("first_name", pa.string()), ("last_name", pa.string())])),
    ("account", pa.struct([("name", pa.string())])),
    ("properties", pa.list_(_PAIR)),
]
_FIELDS: dict[str, list[tuple[str, pa.DataType]]] = {
    "response": [
        *_PERSON,
        ("nps", pa.int64()),
        ("comment", pa.string()),
        ("date_survey_response", pa.timestamp("us")),
        ("date_creation", pa.timestamp("us")),
        ("drivers", pa.list_(pa.struct([("label", pa.string())]))),
    ],
    "non_response": [
        *_PERSON,
        ("date_email_sent", pa.timestamp("us")),
        ("date_creation", pa.timestamp("us")),
    ],
}
REQUIRED_DATE = {"response": "date_survey_response", "non_response": "date_email_sent"}


def raw_record_type(record_kind: str, dates_as_text: bool = False) -> pa.StructType:
    """Arrow layout of a raw record; dates are naive timestamps (or text, as read from JSON)."""
    return pa.struct(
        [
            (name, pa.string() if dates_as_text and pa.types.is_timestamp(kind) else kind)
            for name, kind in _FIELDS[record_kind]
        ]
    )


@dataclass
class RawPage:
    records: pa.Table  # columns of raw_record_type(record_kind)
    next_cursor: int


def read_page(body: bytes, record_kind: str) -> RawPage | None:
    """Parse a clean page into Arrow, or return None to send it through pydantic instead."""
    page_schema = _page_schema(record_kind)
    try:
        page = pa_json.read_json(
            io.BytesIO(body),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=max(len(body) + 1, 1 << 20)),
            parse_options=pa_json.ParseOptions(explicit_schema=page_schema, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if page.num_rows != 1:
        return None
    cursor = page.column("cursor")[0]
    if not cursor.is_valid or not cursor["next"].is_valid:
        return None
    data = page.column("data").combine_chunks()
    if data.null_count:
        return None
    records = pc.list_flatten(data)
    if records.null_count:
        return None
    table = pa.Table.from_batches([pa.RecordBatch.from_struct_array(records)])
    table = _parse_dates(table, record_kind)
    if table is None or not _acceptable(table, record_kind):
        return None
    return RawPage(table, cursor["next"].as_py())


def records_to_arrow(records: Sequence[Mapping[str, Any]], record_kind: str, tenant_tz: str) -> pa.Table:
    """pydantic-validated records in the same raw layout the fast path produces."""
    dates = [name for name, kind in _FIELDS[record_kind] if pa.types.is_timestamp(kind)]
    zone = ZoneInfo(tenant_tz)
    rows = [{**record, **{name: tenant_wall_time(record.get(name), zone) for name in dates}} for record in records]
    return pa.Table.from_pylist(rows, schema=pa.schema(list(raw_record_type(record_kind))))


def tenant_wall_time(value: datetime | None, zone: ZoneInfo) -> datetime | None:
    """A naive datetime in the tenant's zone. Payload datetimes are naive already; one that
    carries an explicit offset is converted, because the offset wins over the tenant setting."""
    if value is not None and value.tzinfo is not None:
        return value.astimezone(zone).replace(tzinfo=None)
    return value


def _page_schema(record_kind: str) -> pa.Schema:
    return pa.schema(
        [
            ("data", pa.list_(raw_record_type(record_kind, dates_as_text=True))),
            ("cursor", pa.struct([("next", pa.int64())])),
        ]
    )


def _parse_dates(table: pa.Table, record_kind: str) -> pa.Table | None:
    """Text dates -> naive timestamps; None if any present date is not in the documented format."""
    for index, (name, kind) in enumerate(_FIELDS[record_kind]):
        if not pa.types.is_timestamp(kind):
            continue
        text = table.column(name)
        parsed = pc.strptime(text, format=CG_DATETIME_FORMAT, unit="s", error_is_null=True)
        if parsed.null_count != text.null_count:
            return None
        # strptime rolls impossible dates over (2024-02-30 -> 2024-03-01); only exact round trips pass.
        if parsed.null_count != len(parsed) and not pc.all(
            pc.equal(pc.strftime(parsed, format=CG_DATETIME_FORMAT), text)
        ).as_py():
            return None
        table = table.set_column(index, name, parsed.cast(pa.timestamp("us")))
    return table


def _acceptable(table: pa.Table, record_kind: str) -> bool:
    """Checks that make the fast path accept only what pydantic would accept."""
    ids = table.column("number_customergauge")
    required_date = table.column(REQUIRED_DATE[record_kind])
    if ids.null_count or required_date.null_count or pc.any(pc.less_equal(ids, 0)).as_py():
        return False
    if not _list_of_structs_ok(table.column("properties"), "field"):
        return False
    if record_kind == "response":
        score = table.column("nps")
        if score.null_count or not pc.all(pc.and_(pc.greater_equal(score, 0), pc.less_equal(score, 10))).as_py():
            return False
        if not _list_of_structs_ok(table.column("drivers"), "label"):
            return False
    return True


def _list_of_structs_ok(column: pa.ChunkedArray, required: str) -> bool:
    """No null elements and no null `required` member inside any list."""
    items = pc.list_flatten(column)
    return items.null_count == 0 and pc.struct_field(items, required).null_count == 0
