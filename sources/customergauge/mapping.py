"""Pure mapping from validated CustomerGauge records to canonical staging rows (DESIGN §4).

No I/O here: these functions turn lists of validated records into Arrow tables, so they are
unit-testable without a server and cheap enough for the hot path (columns are built once per page,
not one dict per row through dlt's normalizer).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import TypeAdapter, ValidationError

from connector_common import schema
from connector_common.schema import DEFAULT_PROPERTY_MAP, PROPERTY_PAIRS, PUSHED_FIELDS, UTC_TS

from .arrow_pages import tenant_wall_time
from .models import Reject

# Segment columns filled from `properties` through the configurable property map.
SEGMENT_COLUMNS: tuple[str, ...] = tuple(DEFAULT_PROPERTY_MAP)

RESPONSE_SCHEMA = pa.schema([column.arrow for column in schema.RESPONSE_COLUMNS])
NON_RESPONSE_SCHEMA = pa.schema([column.arrow for column in schema.NON_RESPONSE_COLUMNS])


def quarantine_schema(cursor_column: str) -> pa.Schema:
    """Quarantine rows carry the record's date under the feed's cursor column (`responded_at` or
    `sent_at`), because dlt's incremental cursor reads every table its resource yields."""
    return pa.schema(
        [
            pa.field("quarantine_id", pa.string(), nullable=False),
            pa.field("source_table", pa.string()),
            pa.field("response_id", pa.string()),
            pa.field(cursor_column, UTC_TS),
            pa.field("reason", pa.string()),
            pa.field("raw", pa.string()),
            pa.field("run_id", pa.string()),
            pa.field("quarantined_at", UTC_TS),
        ]
    )


def responses_table(raw: pa.Table, property_map: Mapping[str, str], tenant_tz: str, fetched_at: datetime) -> pa.Table:
    """Canonical `nps_responses` rows from raw records (layout: `arrow_pages.raw_record_type`).

    Column-wise with Arrow kernels: per-row Python was the slowest step of the extract.
    """
    scores = raw.column("nps").combine_chunks()
    columns = {
        **_person_columns(raw, property_map),
        "score": scores,
        "category": _categories(scores),
        "comment": raw.column("comment").combine_chunks(),
        "responded_at": _utc(raw.column("date_survey_response"), tenant_tz),
        "created_at": _utc(raw.column("date_creation"), tenant_tz),
        "drivers": _labels(raw.column("drivers")),
        "fetched_at": pa.array([fetched_at] * raw.num_rows, UTC_TS),
    }
    columns["content_hash"] = content_hashes(columns)
    return pa.Table.from_pydict({name: columns[name] for name in RESPONSE_SCHEMA.names}, schema=RESPONSE_SCHEMA)


def non_responses_table(raw: pa.Table, property_map: Mapping[str, str], tenant_tz: str, fetched_at: datetime) -> pa.Table:
    """Canonical `nps_non_responses` rows from raw invitation records."""
    columns = {
        **_person_columns(raw, property_map),
        "sent_at": _utc(raw.column("date_email_sent"), tenant_tz),
        "created_at": _utc(raw.column("date_creation"), tenant_tz),
        "fetched_at": pa.array([fetched_at] * raw.num_rows, UTC_TS),
    }
    return pa.Table.from_pydict({name: columns[name] for name in NON_RESPONSE_SCHEMA.names}, schema=NON_RESPONSE_SCHEMA)


def content_hashes(columns: Mapping[str, pa.Array]) -> pa.Array:
    """Stable digest per row of the pushed fields (`PUSHED_FIELDS`)."""
    parts = []
    for name in PUSHED_FIELDS:
        column = columns[name]
        if pa.types.is_list(column.type):
            column = pc.binary_join(column, "\x1e")
        elif pa.types.is_timestamp(column.type):
            column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S")
        parts.append(pc.fill_null(pc.cast(column, pa.string()), "\x00"))
    joined = pc.binary_join_element_wise(*parts, "\x1f")
    return pa.array(
        [hashlib.blake2b(text.encode(), digest_size=16).hexdigest() for text in joined.to_pylist()],
        pa.string(),
    )


def _person_columns(raw: pa.Table, property_map: Mapping[str, str]) -> dict[str, pa.Array]:
    """Identity, contact, account and segment columns shared by responses and non-responses."""
    contact = raw.column("contact").combine_chunks()
    properties = _pairs(raw.column("properties"))
    columns = {
        "response_id": pc.cast(raw.column("number_customergauge").combine_chunks(), pa.string()),
        "email": _emails(raw.column("email").combine_chunks()),
        "first_name": pc.struct_field(contact, "first_name"),
        "last_name": pc.struct_field(contact, "last_name"),
        "account_name": pc.struct_field(raw.column("account").combine_chunks(), "name"),
        "properties": unmapped_properties(properties, [property_map[column] for column in SEGMENT_COLUMNS]),
    }
    for column in SEGMENT_COLUMNS:
        columns[column] = property_values(properties, property_map[column])
    return columns


def unmapped_properties(properties: pa.ListArray, mapped_labels: list[str]) -> pa.ListArray:
    """The property pairs no canonical column holds, so nothing CustomerGauge sent is lost.

    Pairs already mapped to a column are not repeated here: they were more than half of every
    staged row's bytes, and writing them twice roughly doubled the DuckDB load time and file.
    """
    pairs = pc.list_flatten(properties)
    keep = pc.invert(pc.is_in(pc.struct_field(pairs, "field"), value_set=pa.array(mapped_labels, pa.string())))
    before = _offsets(pc.list_value_length(properties))
    kept_before = _offsets(keep)
    offsets = pc.cast(pc.take(kept_before, before), pa.int32())
    return pa.ListArray.from_arrays(offsets, pairs.filter(keep), type=PROPERTY_PAIRS)


def _offsets(lengths: pa.Array) -> pa.Array:
    """List offsets (n + 1 values, starting at 0) from list lengths."""
    return pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(pc.cast(lengths, pa.int64()))])


def property_values(properties: pa.ListArray, label: str) -> pa.Array:
    """Per record, the reference of the property named `label`; the first non-null one wins
    when a label repeats, null when the record has none."""
    pairs = pc.list_flatten(properties)
    owners = pc.list_parent_indices(properties)
    references = pc.struct_field(pairs, "reference")
    wanted = pc.and_(pc.equal(pc.struct_field(pairs, "field"), label), pc.is_valid(references))
    owners, references = owners.filter(wanted), references.filter(wanted)
    rows = pa.array(range(len(properties)), owners.type)
    return pc.take(references, pc.index_in(rows, value_set=owners))


def _emails(values: pa.Array) -> pa.Array:
    """Lower-cased and trimmed: emails match case-insensitively downstream; blank means absent."""
    cleaned = pc.utf8_lower(pc.utf8_trim_whitespace(values))
    return pc.if_else(pc.equal(cleaned, ""), pa.scalar(None, pa.string()), cleaned)


def _categories(scores: pa.Array) -> pa.Array:
    """Standard NPS buckets: 9–10 promoter, 7–8 passive, 0–6 detractor."""
    return pc.if_else(
        pc.greater_equal(scores, 9),
        "promoter",
        pc.if_else(pc.greater_equal(scores, 7), "passive", "detractor"),
    )


def _pairs(column: pa.ChunkedArray) -> pa.ListArray:
    """Raw property pairs; a record without any gets an empty list."""
    return _empty_lists_for_nulls(column.combine_chunks().cast(PROPERTY_PAIRS))


def _labels(column: pa.ChunkedArray) -> pa.ListArray:
    """[{"label": ...}, ...] -> ["...", ...]."""
    lists = _empty_lists_for_nulls(column.combine_chunks())
    return pa.ListArray.from_arrays(lists.offsets, pc.struct_field(lists.values, "label"))


def _empty_lists_for_nulls(lists: pa.ListArray) -> pa.ListArray:
    if lists.null_count == 0:
        return lists
    return pc.if_else(pc.is_null(lists), pa.scalar([], lists.type), lists)


def _utc(naive: pa.ChunkedArray, tenant_tz: str) -> pa.Array:
    """CustomerGauge sends naive datetimes in the tenant's zone; store them as UTC instants."""
    local = pc.assume_timezone(naive.combine_chunks(), tenant_tz, ambiguous="earliest", nonexistent="earliest")
    return local.cast(UTC_TS)


_lenient_datetime = TypeAdapter(datetime)


def quarantine_table(
    rejects: Sequence[Reject],
    source_table: str,
    run_id: str,
    at: datetime,
    tenant_tz: str,
    date_key: str,
    cursor_column: str,
) -> pa.Table:
    """Arrow rows for records that failed validation, raw payload kept verbatim.

    `quarantine_id` hashes the table and the raw payload, so the same bad record seen again in a
    lookback window updates its row instead of piling up duplicates. The record's date (from
    `date_key`, when readable) lands in `cursor_column`.
    """
    zone = ZoneInfo(tenant_tz)
    raws = [raw_json(reject.raw) for reject in rejects]
    payloads = [reject.raw if isinstance(reject.raw, dict) else {} for reject in rejects]
    columns = {
        "quarantine_id": pa.array(
            [hashlib.blake2b(f"{source_table}\x1f{raw}".encode(), digest_size=16).hexdigest() for raw in raws]
        ),
        "source_table": pa.array([source_table] * len(rejects), pa.string()),
        "response_id": pa.array([_id_or_none(p.get("number_customergauge")) for p in payloads], pa.string()),
        cursor_column: _utc(
            pa.chunked_array(
                [pa.array([tenant_wall_time(_date_or_none(p.get(date_key)), zone) for p in payloads], pa.timestamp("us"))]
            ),
            tenant_tz,
        ),
        "reason": pa.array([reject.reason for reject in rejects], pa.string()),
        "raw": pa.array(raws, pa.string()),
        "run_id": pa.array([run_id] * len(rejects), pa.string()),
        "quarantined_at": pa.array([at] * len(rejects), UTC_TS),
    }
    return pa.Table.from_pydict(columns, schema=quarantine_schema(cursor_column))


def raw_json(raw: Any) -> str:
    """The record as JSON text, verbatim. A text holding a lone surrogate cannot be UTF-8, so
    such a record is kept with every non-ASCII character as a JSON escape: still lossless."""
    text = json.dumps(raw, ensure_ascii=False, sort_keys=True, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(raw, ensure_ascii=True, sort_keys=True, default=str)
    return text


def day_in(moment: datetime, tenant_tz: str) -> date:
    """The calendar day CustomerGauge's period filter sees for a UTC instant."""
    return moment.astimezone(ZoneInfo(tenant_tz)).date()


def _id_or_none(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        return str(int(value))
    return None


def _date_or_none(value: Any) -> datetime | None:
    try:
        return _lenient_datetime.validate_python(value) if value is not None else None
    except ValidationError:
        return None
