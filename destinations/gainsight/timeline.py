"""Step 4: one Timeline activity per recent response, on its Company.

`ExternalId` = `cg-nps-<response_id>` is Gainsight's idempotency key on insert (reference §4.7): a
re-send after a crash is answered with a per-record "duplicate" failure instead of a second
activity, and is booked as already there. Only responses younger than `timeline_max_age_days` get
one, so a backfill of old responses does not flood CSMs' timelines. An edited response keeps the
activity it already has.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from .context import PushContext
from .errors import GainsightRejected, GainsightSettingError, QuotaExhausted
from .records import AUTHOR_LOOKUP, activity_record

log = logging.getLogger("nps.gainsight.timeline")

TABLE = "activities"


def create_activities(ctx: PushContext, outbox: pa.Table, companies: dict[str, str]) -> None:
    settings = ctx.settings
    counts = ctx.report[TABLE]
    rows = outbox.filter(outbox["needs_activity"]).to_pylist()
    waiting = [row for row in rows if row["account_id"] not in companies]
    counts.deferred += len(waiting)
    rows = [row for row in rows if row["account_id"] in companies]
    state = ctx.ledger.state(TABLE, [row["response_id"] for row in rows], ["failed_hash", "attempts"])
    todo = []
    for row in rows:
        if ctx.ledger.gives_up(state.get(row["response_id"]), row["content_hash"]):
            counts.given_up += 1
        else:
            todo.append(row)
    size = settings.timeline_records_per_call
    for start in range(0, len(todo), size):
        batch = todo[start : start + size]
        records = [
            activity_record(row, companies[row["account_id"]], settings.timeline_author_email or "", settings.timeline_activity_type)
            for row in batch
        ]
        try:
            answer = ctx.client.insert_activities(records, AUTHOR_LOOKUP)
        except QuotaExhausted as exhausted:
            ctx.defer(TABLE, [row["response_id"] for row in todo[start:]], exhausted)
            return
        except GainsightRejected as exc:
            if exc.status != 400:
                raise
            # The call as a whole was refused (e.g. the author is not a Gainsight user): every
            # record carries the same reason.
            for row, record in zip(batch, records):
                _fail(ctx, row, record, exc.code, exc.reason)
            continue
        _refuse_misconfiguration(answer, len(batch))
        _book(ctx, batch, records, answer)
    log.info(
        "gainsight: timeline: %d created, %d already there, %d failed, %d waiting for their company",
        counts.created,
        counts.unchanged,
        counts.failed,
        len(waiting),
    )


def _refuse_misconfiguration(answer: dict[str, Any], size: int) -> None:
    """Stop, instead of dead-lettering every activity, when Gainsight refused a whole call for one
    reason: an unknown author or activity type is a setting, not a data problem."""
    failure = answer.get("failure") or {}
    if size < 2 or answer.get("success") or len(failure) < size:
        return
    reasons = {
        (p.get("errorCode"), p.get("errorMessage"))
        for problems in failure.values()
        for p in (problems if isinstance(problems, list) else [problems])
        if isinstance(p, dict)
    }
    if len(reasons) == 1:
        (code, message), = reasons
        if not _is_duplicate(code, str(message or "")):
            raise GainsightSettingError(
                f"Gainsight refused every Timeline entry of a call with the same reason ({code}: {message}); "
                "check DESTINATION__GAINSIGHT__TIMELINE_AUTHOR_EMAIL (an active Gainsight user) and "
                "DESTINATION__GAINSIGHT__TIMELINE_ACTIVITY_TYPE (a type configured for the Company context)"
            )


def _book(ctx: PushContext, batch: list[dict], records: list[dict], answer: dict[str, Any]) -> None:
    """Confirm created and already-existing activities; dead-letter the others with their code."""
    success = answer.get("success") or {}
    failure = answer.get("failure") or {}
    confirmed = []
    counts = ctx.report[TABLE]
    for row, record in zip(batch, records):
        external_id = record["ExternalId"]
        if external_id in success:
            confirmed.append(_confirmation(row, external_id, _activity_id(success[external_id]), "created"))
            counts.created += 1
            continue
        problems = failure.get(external_id) or [{"errorCode": None, "errorMessage": "not in the answer"}]
        problem = problems[0] if isinstance(problems, list) else problems
        code, message = problem.get("errorCode"), str(problem.get("errorMessage") or "")
        if _is_duplicate(code, message):
            confirmed.append(_confirmation(row, external_id, None, "exists"))
            counts.unchanged += 1
        else:
            _fail(ctx, row, record, code, message)
    ctx.ledger.confirm(TABLE, confirmed)


def _fail(ctx: PushContext, row: dict, record: dict, code: str | None, message: str) -> None:
    ctx.ledger.fail(TABLE, row["response_id"], row["content_hash"], code, message, record)
    ctx.report[TABLE].failed += 1
    log.warning("gainsight: timeline activity %s dead-lettered: %s %s", record["ExternalId"], code, message)


def _confirmation(row: dict, external_id: str, activity_id: str | None, status: str) -> dict[str, Any]:
    return {"response_id": row["response_id"], "external_id": external_id, "activity_id": activity_id, "status": status}


def _activity_id(success: Any) -> str | None:
    first = success[0] if isinstance(success, list) and success else success
    return first.get("activityId") if isinstance(first, dict) else None


def _is_duplicate(code: str | None, message: str) -> bool:
    """The sandbox's code for an ExternalId seen before; the real code is undocumented, so the
    message is checked too."""
    text = f"{code or ''} {message}".lower()
    return "duplicate" in text or "already exists" in text
