"""Gainsight's response envelope and error codes (reference §3.1, §3.5, §5).

Every JSON answer carries ``{result, errorCode, errorDesc, requestId, data, message}`` with a fresh
UUID ``requestId``. Handlers raise ``GainsightError`` for a rejected call; the server renders it, so
no module builds an error body by hand and every rejection has the same shape.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sandbox.common.server import Request, Response, json_response

#: errorDesc per code. GSOBJ_* [documented] (GSOBJ_1012, GSOBJ_1023 [observed]); GS_APIG_* and GU_*
#: [documented]/[observed]; the BULK_* codes and ACTIVITY_* codes are the sandbox's own [assumed].
DESCRIPTIONS: dict[str, str] = {
    "GSOBJ_1001": "Field exceeds maximum allowed length",
    "GSOBJ_1002": "Invalid field, please re-check data mapping",
    "GSOBJ_1003": "Failed to delete data",
    "GSOBJ_1004": "Either the Gainsight ID is invalid or missing, please re-check your request",
    "GSOBJ_1005": "Invalid dateTime format",
    "GSOBJ_1006": "Invalid date format",
    "GSOBJ_1007": "Invalid field value: null sent to a non-nullable field",
    "GSOBJ_1008": "Invalid value",
    "GSOBJ_1011": "No entity matches the given criteria, please re-check your request",
    "GSOBJ_1012": "Invalid/Inactive value provided for picklist.",
    "GSOBJ_1023": "Invalid API called, please refer to API documentation",
    "GS_APIG_1000": "Route not found",
    "GS_APIG_2401": "Unauthorized",
    "GS_APIG_2402": "IP Address does not lie in range of whitelisted ips",
    "GS_APIG_2404": "API rate limit exceeded",
    "GU_1101": "Oops, something went wrong.",
    "GU_2400": "Too many request",
    "GS_7571": "No usage data to upload",
    "BULK_JOB_NOT_FOUND": "No Bulk API job exists with the given jobId",
    "BULK_FILE_TOO_LARGE": "The uploaded file exceeds the maximum allowed size",
    "BULK_INVALID_FILE": "The uploaded file is not a valid CSV for this job",
    "BULK_INVALID_REQUEST": "The request must be multipart/form-data with the parts file and jobId",
    "BULK_STATUS_NOT_FOUND": "No Bulk API execution exists with the given statusId",
    "ACTIVITY_DUPLICATE_EXTERNAL_ID": "An activity with this ExternalId already exists",
    "ACTIVITY_INVALID_TYPE": "The activity type is not configured for this context",
}


def envelope(result: bool, data: Any = None, code: str | None = None, desc: str | None = None) -> dict[str, Any]:
    """The standard body; ``message`` mirrors ``errorDesc`` on failures as in the 401 sample."""
    return {
        "result": result,
        "errorCode": code,
        "errorDesc": desc,
        "requestId": str(uuid.uuid4()),
        "data": data,
        "message": desc,
    }


def ok(data: Any) -> Response:
    return json_response(200, envelope(True, data))


class GainsightError(Exception):
    """A rejected call: HTTP ``status``, ``code`` and an ``errorDesc`` (default: the code's text)."""

    def __init__(
        self,
        status: int,
        code: str,
        desc: str | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {desc or DESCRIPTIONS.get(code, code)}")
        self.status = status
        self.code = code
        self.desc = desc or DESCRIPTIONS.get(code, code)
        self.data = data
        self.headers = headers or {}

    def response(self) -> Response:
        return json_response(self.status, envelope(False, self.data, self.code, self.desc), self.headers)


class ObjectNotFound(GainsightError):
    """Unknown object: the metadata service's documented body (reference §4.10), which has no errorCode."""

    def __init__(self, name: str) -> None:
        super().__init__(400, "OBJECT_NOT_FOUND", "Requested object not found.")
        self.name = name

    def response(self) -> Response:
        instance = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return json_response(
            400,
            {
                "result": False,
                "title": "OBJECT_NOT_FOUND",
                "detail": "Requested object not found.",
                "errorDesc": "Requested object not found.",
                "instance": instance,
                "requestId": str(uuid.uuid4()),
            },
        )


def bad_request(code: str, desc: str | None = None) -> GainsightError:
    """A whole-call 400 (validation errors are 400 throughout, reference §3.1)."""
    return GainsightError(400, code, desc)


def json_body(request: Request) -> Any:
    """The request's JSON body; malformed JSON rejects the call (400 GSOBJ_1008 [assumed])."""
    try:
        return request.json()
    except ValueError:
        raise bad_request("GSOBJ_1008", "Malformed JSON body") from None
