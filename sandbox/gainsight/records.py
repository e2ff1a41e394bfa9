"""Turning a submitted record into stored values: ``lookups`` resolution, then field validation.

Shared by the data API, People, Timeline and Bulk so each enforces the same rules and reports the
same per-field errors (``{errorMessage, errorCode, fieldName, invalidValue}``, reference §4.2).
Nothing here writes: callers validate every record of a call first and write only if all pass
(all-or-nothing, reference §6.2), or, for Timeline and Bulk, skip the failing records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.gainsight.envelope import GainsightError, bad_request
from sandbox.gainsight.schema import FieldSpec, ObjectSpec
from sandbox.gainsight.store import Store
from sandbox.gainsight.values import Invalid, filter_value, writer

MULTI_MATCH_OPTIONS = ("FIRSTMATCH", "MARKASERROR")  # FIRSTMATCH [documented], MARKASERROR [assumed]
NO_MATCH_OPTIONS = ("ERROR", "NULLABLE")  # ERROR [documented], NULLABLE [assumed]; DEFAULTVALUE unsupported
_LOOKUP_KEYS = frozenset(("fields", "lookupField", "objectName", "multiMatchOption", "onNoMatch"))


def field_error(code: str, message: str, field: str | None, value: Any) -> dict[str, Any]:
    return {"errorMessage": message, "errorCode": code, "fieldName": field, "invalidValue": value}


@dataclass(frozen=True)
class Lookup:
    """One entry of a ``lookups`` block (reference §3.3): ``pairs`` map a source attribute of each
    record to a field of ``object_name``; the match's ``lookup_field`` is written to ``target``."""

    target: FieldSpec
    pairs: tuple[tuple[str, FieldSpec], ...]
    lookup_field: FieldSpec
    object_name: str
    multi_match: str
    on_no_match: str

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(source for source, _ in self.pairs)


def parse_lookups(raw: Any, spec: ObjectSpec, store: Store) -> tuple[Lookup, ...]:
    """A call's ``lookups`` block, checked as a whole: a malformed block rejects the call (400
    GSOBJ_1008; an unknown target, object or field: GSOBJ_1002) [assumed]."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise bad_request("GSOBJ_1008", "lookups must be an object keyed by target field")
    lookups = []
    for target_name, entry in raw.items():
        target = spec.field(target_name)
        if target is None or target.system:
            raise bad_request("GSOBJ_1002", f"Invalid lookup target field ({target_name})")
        if not isinstance(entry, dict) or set(entry) - _LOOKUP_KEYS or not {"fields", "objectName"} <= set(entry):
            raise bad_request("GSOBJ_1008", f"Invalid lookup definition for {target_name}: keys are {sorted(_LOOKUP_KEYS)}")
        fields = entry["fields"]
        multi = entry.get("multiMatchOption", "FIRSTMATCH")
        no_match = entry.get("onNoMatch", "ERROR")
        if multi not in MULTI_MATCH_OPTIONS or no_match not in NO_MATCH_OPTIONS:
            raise bad_request(
                "GSOBJ_1008",
                f"Lookup {target_name}: multiMatchOption must be one of {MULTI_MATCH_OPTIONS} and onNoMatch one of {NO_MATCH_OPTIONS}",
            )
        if not isinstance(fields, dict) or not fields or not all(isinstance(v, str) for v in fields.values()):
            raise bad_request("GSOBJ_1008", f"Lookup {target_name}: fields must map source attributes to field names")
        if not isinstance(entry["objectName"], str):
            raise bad_request("GSOBJ_1008", f"Lookup {target_name}: objectName must be a string")
        looked_up = store.table(entry["objectName"]).spec
        pairs = []
        for source, name in fields.items():
            matched = looked_up.field_ci(name)
            if matched is None:
                raise bad_request("GSOBJ_1002", f"Invalid lookup field ({looked_up.name}.{name})")
            pairs.append((source, matched))
        lookup_name = entry.get("lookupField", "Gsid")
        lookup_field = looked_up.field_ci(lookup_name) if isinstance(lookup_name, str) else None
        if lookup_field is None or lookup_field.type != target.type:
            raise bad_request("GSOBJ_1002", f"Lookup {target_name}: lookupField must be a {target.type} field of {looked_up.name}")
        lookups.append(Lookup(target, tuple(pairs), lookup_field, looked_up.name, multi, no_match))
    return tuple(lookups)


class RecordPreparer:
    """Validates records against the schema and the store's current contents."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._writers: dict[tuple[str, bool], dict[str, Callable[[Any], Any]]] = {}

    def _writers_for(self, spec: ObjectSpec, cells: bool) -> dict[str, Callable[[Any], Any]]:
        """Each field's value writer, built once per object: Bulk runs them on every cell of 80 MB."""
        writers = self._writers.get((spec.name, cells))
        if writers is None:
            writers = self._writers[(spec.name, cells)] = {f.name: writer(f, cells) for f in spec.fields}
        return writers

    def prepare(
        self,
        spec: ObjectSpec,
        record: Any,
        lookups: tuple[Lookup, ...] = (),
        *,
        partial: bool = False,
        keys: tuple[str, ...] = (),
        cells: bool = False,
    ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        """``(values, echo, errors)``: stored-form values by field, the written fields as the answer
        echoes them, and per-field errors (empty when valid).

        ``partial`` (an update) does not require absent required fields; ``keys`` may name system
        fields (``Gsid``) used to match records; ``cells`` reads values as CSV text (empty = null).
        Lookup source attributes that are not fields of ``spec`` are dropped after resolution.
        """
        if not isinstance(record, dict):
            return {}, {}, [field_error("GSOBJ_1008", "A record must be a JSON object", None, record)]
        values: dict[str, Any] = {}
        echo: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        failed: set[str] = set()
        dropped: set[str] = set()
        for lookup in lookups:
            dropped.update(source for source in lookup.sources if spec.field(source) is None)
            if all(_blank(record.get(source), cells) for source in lookup.sources):
                continue
            try:
                resolved = self._resolve(lookup, record, cells)
            except Invalid as invalid:
                failed.add(lookup.target.name)
                given = [record.get(source) for source in lookup.sources]
                errors.append(field_error(invalid.code, invalid.message, lookup.target.name, given[0] if len(given) == 1 else given))
                continue
            if resolved is None and lookup.target.required:
                failed.add(lookup.target.name)
                errors.append(field_error("GSOBJ_1007", "Null sent to a non-nullable field", lookup.target.name, None))
                continue
            values[lookup.target.name] = echo[lookup.target.name] = resolved
        fields = spec.fields_by_name
        writers = self._writers_for(spec, cells)
        for name, raw in record.items():
            if name in dropped or name in values or name in failed:
                continue
            field = fields.get(name)
            if field is None or (field.system and name not in keys):
                errors.append(field_error("GSOBJ_1002", "Invalid field, please re-check data mapping", name, raw))
                continue
            if raw is None or (cells and raw == ""):
                if field.required:
                    failed.add(name)
                    errors.append(field_error("GSOBJ_1007", "Null sent to a non-nullable field", name, None))
                else:
                    values[name] = echo[name] = None
                continue
            try:
                value = writers[name](raw)
                if field.references is not None and not self._store.exists(field.references, value):
                    raise Invalid("GSOBJ_1008", f"No {field.references} record has this GSID")
            except Invalid as invalid:
                failed.add(name)
                errors.append(field_error(invalid.code, invalid.message, name, raw))
                continue
            values[name] = value
            echo[name] = raw
        if not partial:
            errors.extend(missing_required(spec, values, failed))
        return values, echo, errors

    def _resolve(self, lookup: Lookup, record: dict[str, Any], cells: bool) -> Any:
        table = self._store.table(lookup.object_name)
        candidates: list[str] | None = None
        for source, field in lookup.pairs:
            raw = record.get(source)
            try:
                value = None if _blank(raw, cells) else filter_value(field, raw)
            except Invalid:
                value = None  # a value the field could never hold matches nothing
            found = table.find(field, value)
            candidates = found if candidates is None else [g for g in candidates if g in set(found)]
        if not candidates:
            if lookup.on_no_match == "NULLABLE":
                return None
            raise Invalid("GSOBJ_1008", f"No {lookup.object_name} record matches the lookup for {lookup.target.name}")
        if len(candidates) > 1 and lookup.multi_match == "MARKASERROR":
            raise Invalid("GSOBJ_1008", f"Several {lookup.object_name} records match the lookup for {lookup.target.name}")
        return table.rows[candidates[0]][lookup.lookup_field.name]


def missing_required(spec: ObjectSpec, values: dict[str, Any], failed: frozenset[str] | set[str] = frozenset()) -> list[dict[str, Any]]:
    """GSOBJ_1007 for each required field a new record would lack (fields that already failed excepted)."""
    return [
        field_error("GSOBJ_1007", "Null sent to a non-nullable field", field.name, None)
        for field in spec.fields
        if field.required and not field.system and values.get(field.name) is None and field.name not in failed
    ]


def _blank(value: Any, cells: bool) -> bool:
    return value is None or (cells and value == "")


def record_errors(errors_by_index: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """The ``data`` of a failed write: one entry per failing record (flat, as Syncari reads it)."""
    return {
        "count": 0,
        "records": None,
        "errors": [{"index": i, "success": False, "errors": errs} for i, errs in sorted(errors_by_index.items())],
    }


def reject_records(errors_by_index: dict[int, list[dict[str, Any]]]) -> GainsightError:
    """The 400 of an all-or-nothing write: errorCode and errorDesc from the first error."""
    first = errors_by_index[min(errors_by_index)][0]
    shown = first["invalidValue"]
    desc = f"{first['errorMessage']} ({first['fieldName']} = {shown})."
    return GainsightError(400, first["errorCode"], desc, record_errors(errors_by_index))
