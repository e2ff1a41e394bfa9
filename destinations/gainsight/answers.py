"""Readers for Gainsight answers whose exact shape nobody documents.

The reference (§3.4, §4.4, §4.7, §4.8, §7) leaves answers open that the connector books on: the
Timeline insert/update answer, the Bulk status field names, the Bulk upload's statusId field and
the format of dates in query answers (the row wrapper and the "No data found" empty answer are read
in `client.query`). Nothing here guesses one shape and
books on it: each reader accepts every spelling seen in public clients or plausibly sent, and says
"unknown" for anything else, so the caller confirms the effect with a documented read instead (a
query of `activity_timeline` by ExternalId, the Bulk query-back by key).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("nps.gainsight")

# Bulk job states as spelled by the Bulk Status page (INIT, IN_PROGRESS, COMPLETED) [documented],
# the Bulk export API (SUBMITTED, NOT_STARTED, FAILED, ABORTED) and other plausible spellings.
BULK_STATES = {
    "COMPLETED": "COMPLETED", "COMPLETE": "COMPLETED", "SUCCESS": "COMPLETED", "SUCCEEDED": "COMPLETED",
    "SUCCESSFUL": "COMPLETED", "DONE": "COMPLETED", "FINISHED": "COMPLETED", "PARTIAL_SUCCESS": "COMPLETED",
    "COMPLETED_WITH_ERRORS": "COMPLETED",
    "FAILED": "FAILED", "FAILURE": "FAILED", "ERROR": "FAILED", "FAILED_WITH_ERRORS": "FAILED",
    "ABORTED": "ABORTED", "CANCELLED": "CANCELLED", "CANCELED": "CANCELLED",
    "INIT": "INIT", "INITIATED": "INIT", "SUBMITTED": "INIT", "NOT_STARTED": "INIT", "QUEUED": "INIT",
    "PENDING": "INIT", "WAITING": "INIT",
    "IN_PROGRESS": "IN_PROGRESS", "INPROGRESS": "IN_PROGRESS", "RUNNING": "IN_PROGRESS",
    "PROCESSING": "IN_PROGRESS", "STARTED": "IN_PROGRESS",
}  # fmt: skip
STATE_FIELDS = ("jobStatus", "status", "state", "executionStatus", "job_status")
COUNT_FIELDS = {
    "totalCount": ("totalCount", "total", "totalRecords", "totalRecordsCount", "recordCount", "count"),
    "successCount": ("successCount", "success", "successRecords", "successRecordsCount", "succeeded", "successfulCount"),
    "failureCount": ("failureCount", "failed", "failedCount", "failedRecords", "failedRecordsCount", "failureRecordsCount", "errorCount"),
}  # fmt: skip
STATUS_ID_FIELDS = ("statusId", "id", "status_id", "jobStatusId", "executionId")

DUPLICATE_WORDS = ("duplicate", "already exist")
NO_MATCH_CODES = frozenset({"GSOBJ_1011"})
NO_MATCH_WORDS = ("no entity", "not found", "does not exist", "no match", "no activity")


def epoch_ms(value: Any) -> int | None:
    """A DATETIME as queries return it — epoch ms [documented], ISO with `Z` or an offset, with or
    without milliseconds, or `yyyy-MM-dd HH:mm:ss[.S]` (read as UTC) [observed] — in epoch ms."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def bulk_status_id(data: Any) -> str | None:
    """The Bulk upload's statusId: `data.statusId` [assumed], `data.id`, or `data` itself as a string."""
    if isinstance(data, str) and data.strip():
        return data.strip()
    if isinstance(data, dict):
        for name in STATUS_ID_FIELDS:
            if data.get(name):
                return str(data[name])
    return None


def bulk_status(data: Any) -> dict[str, Any]:
    """A Bulk status answer as `{jobStatus, totalCount, successCount, failureCount}`, whatever its
    spelling. `jobStatus` is one of INIT, IN_PROGRESS, COMPLETED, FAILED, ABORTED, CANCELLED, or ""
    when the answer names no state this reader knows (then the job is polled on, never assumed done).
    """
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        return {"jobStatus": ""}
    raw = next((data[name] for name in STATE_FIELDS if isinstance(data.get(name), str)), "")
    state = BULK_STATES.get(raw.strip().upper().replace(" ", "_").replace("-", "_"), "")
    if raw and not state:
        log.warning("gainsight: Bulk status answered an unknown state %r; polling on", raw)
    normalized: dict[str, Any] = {"jobStatus": state}
    for target, names in COUNT_FIELDS.items():
        normalized[target] = next((data[n] for n in names if isinstance(data.get(n), int) and not isinstance(data.get(n), bool)), None)
    return normalized


@dataclass
class TimelineOutcome:
    """What a Timeline write's answer says about each ExternalId; anything it does not name is unknown."""

    written: dict[str, str | None] = field(default_factory=dict)  # ExternalId -> activityId (if given)
    duplicate: set[str] = field(default_factory=set)  # the answer says it already exists
    missing: set[str] = field(default_factory=set)  # (update) the answer says there is no such activity
    failed: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # ExternalId -> (code, message)

    def unknown(self, external_ids: Iterable[str]) -> list[str]:
        named = self.written.keys() | self.duplicate | self.missing | self.failed.keys()
        return [e for e in external_ids if e not in named]


def timeline_outcome(data: Any, update: bool = False) -> TimelineOutcome:
    """Read `data.success` / `data.failure` keyed by ExternalId [assumed, the sandbox's default], or as
    lists of `{ExternalId, activityId}` / `{<ExternalId>: <activityId>}` entries (as CTA answers are).
    A bare `result: true`, an empty or unknown body names nothing: every record stays unknown.
    Only an `update`'s "no such activity" means the activity is missing; an insert's "not found"
    (an unknown author, say) is an ordinary failure."""
    outcome = TimelineOutcome()
    if not isinstance(data, dict):
        return outcome
    for external_id, detail in _entries(data.get("success")):
        outcome.written[external_id] = _activity_id(detail)
    for external_id, detail in _entries(data.get("failure") or data.get("failures") or data.get("errors")):
        code, message = _problem(detail)
        if is_duplicate(code, message):
            outcome.duplicate.add(external_id)
        elif update and is_no_match(code, message):
            outcome.missing.add(external_id)
        else:
            outcome.failed[external_id] = (code, message)
    return outcome


def is_duplicate(code: str | None, message: str | None) -> bool:
    """An ExternalId seen before; the real code is undocumented, so the message is read too."""
    text = f"{code or ''} {message or ''}".lower()
    return any(word in text for word in DUPLICATE_WORDS)


def is_no_match(code: str | None, message: str | None) -> bool:
    """An update whose ExternalId matches no activity (`GSOBJ_1011`, the data API's no-match code)."""
    text = f"{message or ''}".lower()
    return code in NO_MATCH_CODES or any(word in text for word in NO_MATCH_WORDS)


def _entries(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items()]
    entries = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        key = item.get("ExternalId") or item.get("externalId") or item.get("externalid")
        if key:
            entries.append((str(key), item))
        elif len(item) == 1:
            ((key, detail),) = item.items()
            entries.append((str(key), detail))
    return entries


def _activity_id(detail: Any) -> str | None:
    first = detail[0] if isinstance(detail, list) and detail else detail
    if isinstance(first, str):
        return first
    if isinstance(first, dict):
        value = first.get("activityId") or first.get("ActivityId") or first.get("Gsid") or first.get("id")
        return str(value) if value else None
    return None


def _problem(detail: Any) -> tuple[str | None, str]:
    first = detail[0] if isinstance(detail, list) and detail else detail
    if isinstance(first, dict):
        code = first.get("errorCode") or first.get("code")
        message = first.get("errorMessage") or first.get("errorDesc") or first.get("message") or ""
        return (str(code) if code else None), str(message)
    return None, str(first or "")
