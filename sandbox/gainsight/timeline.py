"""The Timeline API (reference §4.7): insert ``POST /v1/ant/es/activity`` and update in place
``PUT /v1/ant/es/activity?identifier=externalid``, both with records + lookups.

Insert: each activity stands alone: a failing record is reported under its ExternalId in
``data.failure`` and the others are written (``data.success``). ExternalId is the idempotency key
[documented]: unique per tenant, so a re-sent activity is never stored twice. The author and company
are resolved through the ``AuthorId`` / ``GsCompanyId`` lookups (or given as GSIDs), and the type
must be configured for the context.

Update [assumed path and semantics]: every record names an existing activity by ExternalId and gets
the fields it carries; like the data API's update by keys, it is all-or-nothing, and an ExternalId
matching no activity fails the whole call with 400 ``GSOBJ_1011`` (reference §4.2's no-match style).

The answer's shape is undocumented: ``Variants.timeline_answer`` chooses among plausible ones.
"""

from __future__ import annotations

from typing import Any

from sandbox.common.server import Request, Response
from sandbox.gainsight.data_api import GSID
from sandbox.gainsight.envelope import bad_request, json_body, ok
from sandbox.gainsight.records import Lookup, RecordPreparer, field_error, parse_lookups, reject_records
from sandbox.gainsight.schema import Schema
from sandbox.gainsight.store import Store, Table
from sandbox.gainsight.variants import Variants

DEFAULT_RECORDS_PER_CALL = 50  # [assumed]: the real cap of a single insert is undocumented
_BODY_KEYS = frozenset(("records", "lookups"))
_DUPLICATE = "ACTIVITY_DUPLICATE_EXTERNAL_ID"

Problems = list[tuple[str, str]]


class TimelineApi:
    def __init__(
        self, store: Store, preparer: RecordPreparer, schema: Schema, records_per_call: int, variants: Variants
    ) -> None:
        if records_per_call < 1:
            raise ValueError("timeline_records_per_call must be >= 1")
        self._store = store
        self._preparer = preparer
        self._types = schema.activity_types
        self._variants = variants
        self.records_per_call = records_per_call

    def insert(self, request: Request) -> Response:
        table, records, lookups = self._batch(request)
        success: dict[str, list[dict[str, str]]] = {}
        failure: dict[str, list[dict[str, str]]] = {}
        planned: list[tuple[str, dict[str, Any]]] = []
        duplicates: list[tuple[str, str | None]] = []  # (key, GSID of the stored activity, if any)
        for position, record in enumerate(records):
            key = _key(record, position)
            values, _, errors = self._preparer.prepare(table.spec, record, lookups)
            problems = [(e["errorCode"], f"{e['errorMessage']} ({e['fieldName']})") for e in errors]
            if not problems:
                problems = self._business_rules(values)
            if problems:
                failure[key] = [{"errorCode": code, "errorMessage": message} for code, message in problems]
                continue
            stored = self._stored(table, values["ExternalId"])
            if stored or any(values["ExternalId"] == other["ExternalId"] for _, other in planned):
                duplicates.append((key, stored[0] if stored else None))
                continue
            planned.append((key, values))
        answer = self._variants.timeline_answer
        if duplicates and answer == "duplicate_as_call_error":
            names = ", ".join(key for key, _ in duplicates)
            raise bad_request("GSOBJ_1008", f"Duplicate ExternalId: activities already exist for {names}")
        for key, values in planned:
            success[key] = [{"activityId": self._store.insert(table, values)}]
        for key, stored_gsid in duplicates:
            if answer == "duplicate_as_success" and stored_gsid:
                success[key] = [{"activityId": stored_gsid}]
            else:
                message = f"An activity with ExternalId {key!r} already exists"
                failure[key] = [{"errorCode": _DUPLICATE, "errorMessage": message}]
        return self._answer(success, failure)

    def update(self, request: Request) -> Response:
        identifier = [value.lower() for value in request.query.get("identifier", [])]
        if identifier != ["externalid"]:
            raise bad_request(
                "GSOBJ_1008", "identifier must be externalid (the sandbox does not model activityid or gsid)"
            )
        table, records, lookups = self._batch(request)
        planned: list[tuple[str, str, dict[str, Any]]] = []
        errors: dict[int, list[dict[str, Any]]] = {}
        for index, record in enumerate(records):
            values, echo, record_errors = self._preparer.prepare(table.spec, record, lookups, partial=True)
            external_id = values.get("ExternalId")
            if not record_errors and external_id is None:
                record_errors = [field_error("GSOBJ_1007", "Key field is missing or null", "ExternalId", None)]
            matched = self._stored(table, external_id) if not record_errors else []
            if not record_errors and not matched:
                record_errors = [field_error("GSOBJ_1011", "No entity matches the given criteria", "ExternalId", echo.get("ExternalId"))]
            if not record_errors and "TypeName" in values:
                context = values.get("ContextName") or table.rows[matched[0]]["ContextName"]
                if values["TypeName"] not in self._types.get(context, ()):
                    message = f"Activity type {values['TypeName']!r} is not configured for context {context!r}"
                    record_errors = [field_error("ACTIVITY_INVALID_TYPE", message, "TypeName", values["TypeName"])]
            if record_errors:
                errors[index] = record_errors
            else:
                planned.append((_key(record, index), matched[0], values))
        if errors:
            raise reject_records(errors)
        for _, gsid, values in planned:
            self._store.update(table, gsid, values)
        return self._answer({key: [{"activityId": gsid}] for key, gsid, _ in planned}, {})

    def delete(self, request: Request) -> Response:
        """`DELETE /v1/ant/es/activity` by activityId [assumed path and shape, reference §4.7]: the id
        where ``activity_delete`` expects it (query parameter or JSON body), else `GSOBJ_1004`, as for
        a blank GSID; an id matching no activity (deleted already) as ``missing_record`` says."""
        if self._variants.activity_delete == "query":
            given = request.query.get("activityId", [])
            activity_id = given[0] if len(given) == 1 else None
        else:
            body = json_body(request) if request.body else None
            activity_id = body.get("activityId") if isinstance(body, dict) and set(body) == {"activityId"} else None
        if not isinstance(activity_id, str) or not GSID.fullmatch(activity_id):
            raise bad_request("GSOBJ_1004")
        table = self._store.table("activity_timeline")
        if activity_id not in table.rows:
            raise self._variants.missing(f"activity {activity_id}")
        table.remove(activity_id)
        return ok({"activityId": activity_id})

    def _batch(self, request: Request) -> tuple[Table, list[Any], tuple[Lookup, ...]]:
        body = json_body(request)
        if not isinstance(body, dict) or "records" not in body or set(body) - _BODY_KEYS:
            raise bad_request("GSOBJ_1008", 'The body must be {"records": [...], "lookups": {...}}')
        records = body["records"]
        if not isinstance(records, list) or not records:
            raise bad_request("GSOBJ_1008", "records must be a non-empty list")
        if len(records) > self.records_per_call:
            raise bad_request("GSOBJ_1008", f"At most {self.records_per_call} activities per call, got {len(records)}")
        table = self._store.table("activity_timeline")
        return table, records, parse_lookups(body.get("lookups"), table.spec, self._store)

    def _answer(self, success: dict[str, Any], failure: dict[str, Any]) -> Response:
        """The write's answer in the shape ``timeline_answer`` chooses (the effect is the same)."""
        answer = self._variants.timeline_answer
        if answer == "bare_ok":
            return ok(None)
        if answer == "unknown_body":
            return ok({"status": "ACCEPTED", "count": len(success)})
        if answer == "empty_body":
            return Response(200, b"")
        return ok({"success": success, "failure": failure})

    def _stored(self, table: Table, external_id: Any) -> list[str]:
        external_field = table.spec.field("ExternalId")
        assert external_field is not None
        return table.find(external_field, external_id)

    def _business_rules(self, values: dict[str, Any]) -> Problems:
        """Checks beyond field values: configured type, company reference."""
        context, kind = values["ContextName"], values["TypeName"]
        if kind not in self._types.get(context, ()):
            return [("ACTIVITY_INVALID_TYPE", f"Activity type {kind!r} is not configured for context {context!r}")]
        if context == "Company" and values.get("GsCompanyId") is None:
            return [("GSOBJ_1007", "A Company activity needs GsCompanyId (directly or through the GsCompanyId lookup)")]
        return []


def _key(record: Any, position: int) -> str:
    """A record's key in the answer: its ExternalId, or ``record[<index>]`` without one."""
    if isinstance(record, dict) and record.get("ExternalId") is not None:
        return str(record["ExternalId"])
    return f"record[{position}]"
