"""The Timeline insert API (reference §4.7): ``POST /v1/ant/es/activity`` with records + lookups.

Unlike data writes, each activity stands alone: a failing record is reported under its ExternalId
in ``data.failure`` and the others are written (``data.success``). ExternalId is the idempotency key
[documented]: unique per tenant, so a re-sent activity fails as a duplicate instead of appearing
twice. The author and company are resolved through the ``AuthorId`` / ``GsCompanyId`` lookups (or
given as GSIDs), and the type must be configured for the context.
"""

from __future__ import annotations

from typing import Any

from sandbox.common.server import Request, Response
from sandbox.gainsight.envelope import bad_request, json_body, ok
from sandbox.gainsight.records import RecordPreparer, parse_lookups
from sandbox.gainsight.schema import Schema
from sandbox.gainsight.store import Store

DEFAULT_RECORDS_PER_CALL = 50  # [assumed]: the real cap of a single insert is undocumented
_BODY_KEYS = frozenset(("records", "lookups"))


class TimelineApi:
    def __init__(self, store: Store, preparer: RecordPreparer, schema: Schema, records_per_call: int) -> None:
        if records_per_call < 1:
            raise ValueError("timeline_records_per_call must be >= 1")
        self._store = store
        self._preparer = preparer
        self._types = schema.activity_types
        self.records_per_call = records_per_call

    def insert(self, request: Request) -> Response:
        body = json_body(request)
        if not isinstance(body, dict) or "records" not in body or set(body) - _BODY_KEYS:
            raise bad_request("GSOBJ_1008", 'The body must be {"records": [...], "lookups": {...}}')
        records = body["records"]
        if not isinstance(records, list) or not records:
            raise bad_request("GSOBJ_1008", "records must be a non-empty list")
        if len(records) > self.records_per_call:
            raise bad_request("GSOBJ_1008", f"At most {self.records_per_call} activities per call, got {len(records)}")
        table = self._store.table("activity_timeline")
        lookups = parse_lookups(body.get("lookups"), table.spec, self._store)
        success: dict[str, list[dict[str, str]]] = {}
        failure: dict[str, list[dict[str, str]]] = {}
        for position, record in enumerate(records):
            key = str(record.get("ExternalId")) if isinstance(record, dict) and record.get("ExternalId") is not None else f"record[{position}]"
            values, _, errors = self._preparer.prepare(table.spec, record, lookups)
            problems = [(e["errorCode"], f"{e['errorMessage']} ({e['fieldName']})") for e in errors]
            if not problems:
                problems = self._business_rules(values, success)
            if problems:
                failure.setdefault(key, []).extend({"errorCode": code, "errorMessage": message} for code, message in problems)
                continue
            success[key] = [{"activityId": self._store.insert(table, values)}]
        return ok({"success": success, "failure": failure})

    def _business_rules(self, values: dict[str, Any], success: dict[str, Any]) -> list[tuple[str, str]]:
        """Checks beyond field values: configured type, company reference, ExternalId uniqueness."""
        context, kind = values["ContextName"], values["TypeName"]
        if kind not in self._types.get(context, ()):
            return [("ACTIVITY_INVALID_TYPE", f"Activity type {kind!r} is not configured for context {context!r}")]
        if context == "Company" and values.get("GsCompanyId") is None:
            return [("GSOBJ_1007", "A Company activity needs GsCompanyId (directly or through the GsCompanyId lookup)")]
        table = self._store.table("activity_timeline")
        external_field = table.spec.field("ExternalId")
        assert external_field is not None
        if values["ExternalId"] in success or table.find(external_field, values["ExternalId"]):
            return [("ACTIVITY_DUPLICATE_EXTERNAL_ID", f"An activity with ExternalId {values['ExternalId']!r} already exists")]
        return []
