"""Emulator-only switches between plausible Gainsight answers the reference marks [assumed] or unknown.

Gainsight documents neither the Timeline write answer, nor the Bulk status field names, nor one
date format or row wrapper for queries (reference §3.4, §4.4, §4.7, §4.8, §7). The sandbox serves
one reading by default and each plausible alternative behind a switch, so the connector is tested
against all of them instead of against the sandbox's own guess. Each switch can be changed on a
running sandbox (``gs.variants.timeline_answer = "bare_ok"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sandbox.common.server import Response, json_response
from sandbox.gainsight.envelope import GainsightError, bad_request, envelope, ok

NO_DATA = ("GSOBJ_1XXX", "No data found for given criteria")  # verbatim, placeholder code included

#: Every switch and its allowed values; the first is the default.
CHOICES: dict[str, tuple[str, ...]] = {
    # DATETIME/DATE in query answers: epoch ms [documented, Custom Object doc]; ISO with `Z` and no
    # fraction [documented, CTA]; the write format with ms and a -07:00 offset; Syncari's fallback
    # `yyyy-MM-dd HH:mm:ss.S` without offset [observed].
    "query_dates": ("epoch", "iso", "iso_offset", "iso_plain"),
    # Rows in `data.records` [observed] or `data` as a bare list [documented sample].
    "query_shape": ("records", "bare_list"),
    # No rows: `result: true` + empty rows [documented], or HTTP 200 `result: false` "No data found
    # for given criteria" with `data: null` [documented].
    "empty_answer": ("empty_list", "no_data_found"),
    # Bulk status/upload field names: `statusId`/`jobStatus`/`totalCount`… [assumed, sandbox];
    # `id`/`status` (COMPLETED spelled SUCCESS)/`total`/`success`/`failed`; `statusId`/`state`
    # (QUEUED, RUNNING, COMPLETED or FAILED)/`totalRecords`/`successRecordsCount`/`failedRecordsCount`.
    "bulk_status_fields": ("jobStatus", "status", "state"),
    # Timeline insert/update answer: `data.success`/`data.failure` by ExternalId with a duplicate as a
    # per-record failure [assumed]; a duplicate answered as a success with the existing activityId;
    # a duplicate refusing the whole call (400, nothing written); `result: true` with `data: null`;
    # an envelope whose `data` names no record; HTTP 200 with an empty body.
    "timeline_answer": (
        "per_record",
        "duplicate_as_success",
        "duplicate_as_call_error",
        "bare_ok",
        "unknown_body",
        "empty_body",
    ),
    # The async bulk People API (people_async.py), all [assumed] but its existence: served, or a
    # tenant without it answering 404 / 405; its body a bare list or {"records": [...]}; row numbers
    # of per-record errors from 1 or from 0; its upserts counted against the bulk or the sync quota.
    "people_async": ("served", "not_found", "method_not_allowed"),
    "people_async_body": ("bare_list", "records"),
    "people_async_rows": ("one_based", "zero_based"),
    "people_async_quota": ("bulk", "sync"),
    # A delete of a record or activity that does not exist (already deleted): 400 `GSOBJ_1004` "the
    # Gainsight ID is invalid" [documented for a blank/invalid GSID]; or 404 "not found" [assumed].
    "missing_record": ("gsobj_1004", "not_found"),
    # Timeline delete `DELETE /v1/ant/es/activity` "by activityId" [assumed, reference §4.7]: the id as
    # the query parameter `activityId`, or in a JSON body `{"activityId": ...}`.
    "activity_delete": ("query", "body"),
}


@dataclass
class Variants:
    query_dates: str = "epoch"
    query_shape: str = "records"
    empty_answer: str = "empty_list"
    bulk_status_fields: str = "jobStatus"
    timeline_answer: str = "per_record"
    people_async: str = "served"
    people_async_body: str = "bare_list"
    people_async_rows: str = "one_based"
    people_async_quota: str = "bulk"
    missing_record: str = "gsobj_1004"
    activity_delete: str = "query"

    def __setattr__(self, name: str, value: str) -> None:
        if name not in CHOICES or value not in CHOICES[name]:
            raise ValueError(f"{name} must be one of {CHOICES.get(name)}, not {value!r}")
        super().__setattr__(name, value)

    def date_value(self, value: datetime | date, epoch_ms: int) -> Any:
        """A DATETIME (aware UTC) or DATE as a query answer renders it under ``query_dates``."""
        if self.query_dates == "epoch":
            return epoch_ms
        if not isinstance(value, datetime):
            return value.isoformat()
        if self.query_dates == "iso":
            return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.query_dates == "iso_offset":
            local = value.astimezone(timezone(timedelta(hours=-7)))
            return local.isoformat(timespec="milliseconds")
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.") + str(value.microsecond // 100_000)

    def query_answer(self, records: list[dict[str, Any]]) -> Response:
        """A query's rows under ``query_shape`` and ``empty_answer``."""
        if not records and self.empty_answer == "no_data_found":
            return json_response(200, envelope(False, None, *NO_DATA))
        return ok(records if self.query_shape == "bare_list" else {"records": records})

    def missing(self, what: str) -> GainsightError:
        """The refusal of a delete whose record does not exist, under ``missing_record``."""
        if self.missing_record == "not_found":
            return GainsightError(404, "GSOBJ_1011", f"{what} not found")
        return bad_request("GSOBJ_1004")

    def bulk_status(self, data: dict[str, Any]) -> dict[str, Any]:
        """The status answer's ``data`` (given in the default spelling) under ``bulk_status_fields``."""
        if self.bulk_status_fields == "jobStatus":
            return data
        status, failed, total = data["jobStatus"], data["failureCount"], data["totalCount"]
        if self.bulk_status_fields == "status":
            word = {"COMPLETED": "SUCCESS"}.get(status, status)
            return {
                "id": data["statusId"], "jobId": data["jobId"], "status": word, "total": total,
                "success": data["successCount"], "failed": failed,
                "startTime": data["startTime"], "endTime": data["endTime"],
            }  # fmt: skip
        word = {"INIT": "QUEUED", "IN_PROGRESS": "RUNNING"}.get(status, status)
        if status == "COMPLETED" and total and failed == total:
            word = "FAILED"
        return {
            "statusId": data["statusId"], "state": word, "totalRecords": total,
            "successRecordsCount": data["successCount"], "failedRecordsCount": failed,
        }  # fmt: skip

    def bulk_upload(self, status_id: str) -> dict[str, str]:
        return {"id": status_id} if self.bulk_status_fields == "status" else {"statusId": status_id}
