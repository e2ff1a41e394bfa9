"""The Company / Custom Object data API (reference §4.1–§4.5): insert, update by keys, query, get
and delete by GSID.

Writes are all-or-nothing: every record of a call is validated (lookups resolved, values checked,
update keys matched) before anything is written, and one bad record fails the whole call with 400
and per-record ``data.errors``. There is deliberately no upsert: Gainsight's sync API has none.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.common.server import Request, Response
from sandbox.gainsight.envelope import bad_request, json_body, ok
from sandbox.gainsight.query import parse_query, run_query
from sandbox.gainsight.records import RecordPreparer, field_error, parse_lookups, reject_records
from sandbox.gainsight.schema import ObjectSpec
from sandbox.gainsight.store import Store, Table
from sandbox.gainsight.values import to_json
from sandbox.gainsight.variants import Variants

MAX_RECORDS = 50  # per insert/update call [documented]
MAX_KEYS = 3  # per update [observed]
KEY_TYPES = frozenset(("STRING", "EMAIL", "NUMBER", "GSID"))  # [assumed]
_BATCH_KEYS = frozenset(("records", "lookups"))
GSID = re.compile(r"[0-9A-Z]{36}")  # keyPrefix + 32 uppercase alphanumerics (reference §3.2)


class DataApi:
    def __init__(self, store: Store, preparer: RecordPreparer, variants: Variants) -> None:
        self._store = store
        self._preparer = preparer
        self._variants = variants

    def insert(self, request: Request, name: str) -> Response:
        table = self._writable(name)
        records, lookups_raw = _batch(request)
        lookups = parse_lookups(lookups_raw, table.spec, self._store)
        prepared = []
        errors: dict[int, list[dict[str, Any]]] = {}
        for index, record in enumerate(records):
            values, echo, record_errors = self._preparer.prepare(table.spec, record, lookups)
            if record_errors:
                errors[index] = record_errors
            prepared.append((values, echo))
        if errors:
            raise reject_records(errors)
        written = [{"Gsid": self._store.insert(table, values), **echo} for values, echo in prepared]
        return ok({"count": len(written), "errors": None, "records": written})

    def update(self, request: Request, name: str) -> Response:
        """``PUT ?keys=F1[,F2,F3]``: every record matching all keys gets the record's other fields;
        a record matching nothing fails the call with GSOBJ_1011 [assumed, reference §4.2]."""
        table = self._writable(name)
        keys = _keys(request, table.spec)
        records, lookups_raw = _batch(request)
        lookups = parse_lookups(lookups_raw, table.spec, self._store)
        planned = []
        errors: dict[int, list[dict[str, Any]]] = {}
        for index, record in enumerate(records):
            values, echo, record_errors = self._preparer.prepare(table.spec, record, lookups, partial=True, keys=keys)
            matched: list[str] = []
            if not record_errors:
                missing = [k for k in keys if values.get(k) is None]
                record_errors = [field_error("GSOBJ_1007", "Key field is missing or null", k, None) for k in missing]
            if not record_errors:
                matched = table.match(keys, values)
                if not matched:
                    given = [echo[k] for k in keys]
                    record_errors = [field_error("GSOBJ_1011", "No entity matches the given criteria", ",".join(keys), given)]
            if record_errors:
                errors[index] = record_errors
            planned.append((matched, values, echo))
        if errors:
            raise reject_records(errors)
        written = []
        for matched, values, echo in planned:
            for gsid in matched:
                self._store.update(table, gsid, values)
                written.append({**echo, "Gsid": gsid})
        return ok({"count": len(written), "errors": None, "records": written})

    def query(self, request: Request, name: str) -> Response:
        table = self._store.table(name)
        query = parse_query(json_body(request), table.spec, self._store.schema)
        return self._variants.query_answer(run_query(query, table, self._store, self._variants.date_value))

    def get(self, request: Request, name: str, gsid: str) -> Response:
        table = self._store.table(name)
        row = table.rows.get(gsid) if gsid else None
        if row is None:
            raise bad_request("GSOBJ_1004")
        return ok({"records": [{f.name: to_json(f, row[f.name]) for f in table.spec.fields}]})

    def delete(self, request: Request, name: str, gsid: str) -> Response:
        """`DELETE /v1/data/objects/{obj}/{gsid}` [observed]: a blank or malformed GSID is `GSOBJ_1004`
        [documented]; a well-formed one matching no record (deleted already) as ``missing_record`` says."""
        table = self._writable(name)
        if not GSID.fullmatch(gsid or ""):
            raise bad_request("GSOBJ_1004")
        if gsid not in table.rows:
            raise self._variants.missing(f"{table.spec.name} record {gsid}")
        table.remove(gsid)
        return ok({"count": 1, "errors": None, "records": [{"Gsid": gsid}]})

    def _writable(self, name: str) -> Table:
        table = self._store.table(name)
        if not table.spec.data_api_writable:
            raise bad_request(
                "GSOBJ_1023",
                f"Invalid API called, please refer to API documentation ({table.spec.name} is not writable through this API)",
            )
        return table


def _batch(request: Request) -> tuple[list[Any], Any]:
    body = json_body(request)
    if not isinstance(body, dict) or "records" not in body or set(body) - _BATCH_KEYS:
        raise bad_request("GSOBJ_1008", 'The body must be {"records": [...], "lookups": {...}}')
    records = body["records"]
    if not isinstance(records, list) or not records:
        raise bad_request("GSOBJ_1008", "records must be a non-empty list")
    if len(records) > MAX_RECORDS:
        raise bad_request("GSOBJ_1008", f"At most {MAX_RECORDS} records per call, got {len(records)}")
    return records, body.get("lookups")


def _keys(request: Request, spec: ObjectSpec) -> tuple[str, ...]:
    """The ``keys`` query parameter; missing, more than three, or not key-able fields -> GSOBJ_1002 [assumed]."""
    given = request.query.get("keys", [])
    names = tuple(k.strip() for k in given[0].split(",")) if len(given) == 1 else ()
    if not names or len(names) > MAX_KEYS or len(set(names)) != len(names):
        raise bad_request("GSOBJ_1002", f"keys must name 1 to {MAX_KEYS} distinct fields, once")
    for name in names:
        field = spec.field(name)
        if field is None or field.type not in KEY_TYPES or (field.system and name != "Gsid"):
            raise bad_request("GSOBJ_1002", f"Invalid key field ({name})")
    return names
