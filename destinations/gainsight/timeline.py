"""Step 4: one Timeline activity per response, on its Company, kept in step with edits.

`ExternalId` = `cg-nps-<response_id>` is Gainsight's idempotency key on insert and the match key of
an update in place (`PUT /v1/ant/es/activity?identifier=externalid`, reference §4.7). New activities
are made only for responses younger than `timeline_max_age_days`, so a backfill of old responses
does not flood CSMs' timelines; an activity that exists is updated whenever its response's score or
comment changes, whatever its age (the subject `NPS 3 (Detractor) from …` follows the score).

Gainsight's answer to these calls is undocumented (reference §7), so nothing is booked on a guess:
an activity is booked when the answer names it as written, or when a query of `activity_timeline`
by ExternalId finds it showing what was sent. Anything else — a per-record or whole-call
"duplicate", a "no such activity", a bare `result: true`, an empty or unknown body — is looked up:
found as sent, it is booked; found older, it is updated; not found, it is inserted. A re-send thus
converges to exactly one activity whatever the tenant answers. The ledger keeps a hash of what each
activity shows (`pushed_hash`) and the response version it reflects (`source_hash`), so a re-run
makes no call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .answers import TimelineOutcome, is_duplicate, is_no_match
from .context import PushContext
from .errors import GainsightRejected, GainsightSettingError, QuotaExhausted
from .records import AUTHOR_LOOKUP, activity_hash, activity_record

log = logging.getLogger("nps.gainsight.timeline")

TABLE = "activities"
OBJECT = "activity_timeline"
STATE = ["status", "activity_id", "pushed_hash", "failed_hash", "attempts"]
BOOKED = frozenset({"created", "exists", "updated"})
# Send, look up what the answer left open, send what the look-up found missing or older: a few
# rounds settle every answer variant; what is still open after them is retried on the next run.
ROUNDS = 3
NOT_CONFIRMED = "NOT_CONFIRMED"


@dataclass
class _Activity:
    row: dict[str, Any]
    record: dict[str, Any]
    activity_id: str | None = None
    sent: str | None = None  # "insert" / "update" when this run's call may have written it

    @property
    def external_id(self) -> str:
        return str(self.record["ExternalId"])

    @property
    def response_id(self) -> str:
        return str(self.row["response_id"])


class _Stopped(Exception):
    """A quota ran out mid-step: `pending` are the activities not settled yet."""

    def __init__(self, exhausted: QuotaExhausted, pending: list[_Activity]):
        super().__init__(str(exhausted))
        self.exhausted = exhausted
        self.pending = pending


def create_activities(ctx: PushContext, outbox: pa.Table, companies: dict[str, str]) -> None:
    """Insert missing activities and update those showing an older version of their response."""
    settings = ctx.settings
    counts = ctx.report[TABLE]
    rows = outbox.filter(outbox["needs_activity"]).to_pylist()
    waiting = [row for row in rows if row["account_id"] not in companies]
    ctx.report.defer_records(TABLE, [row["response_id"] for row in waiting])
    rows = [row for row in rows if row["account_id"] in companies]
    state = ctx.ledger.state(TABLE, [row["response_id"] for row in rows], STATE)
    current: list[_Activity] = []
    inserts: list[_Activity] = []
    updates: list[_Activity] = []
    unknown: list[_Activity] = []
    for row in rows:
        booked = state.get(row["response_id"]) or {}
        if ctx.ledger.gives_up(booked, row["content_hash"]):
            counts.given_up += 1
            continue
        record = activity_record(
            row, companies[row["account_id"]], settings.timeline_author_email or "", settings.timeline_activity_type
        )
        activity = _Activity(row, record, booked.get("activity_id"))
        if booked.get("pushed_hash") == activity_hash(record):
            current.append(activity)  # the edit did not touch what the activity shows
        elif booked.get("pushed_hash"):
            updates.append(activity)
        elif booked.get("status") in BOOKED:
            unknown.append(activity)  # booked before the ledger kept hashes: look at it first
        else:
            inserts.append(activity)
    _book(ctx, current, "exists")
    _converge(ctx, inserts, updates, unknown)
    log.info(
        "gainsight: timeline: %d created, %d updated, %d already there, %d failed, %d waiting for their company",
        counts.created,
        counts.updated,
        counts.unchanged,
        counts.failed,
        len(waiting),
    )


def _converge(ctx: PushContext, inserts: list[_Activity], updates: list[_Activity], unknown: list[_Activity]) -> None:
    """Send, look up what stays open, send again: until every activity is booked or failed."""
    try:
        for _ in range(ROUNDS):
            found_missing, found_older = _look_up(ctx, unknown, inserts + updates)
            inserts, updates = inserts + found_missing, updates + found_older
            if not inserts and not updates:
                return
            unknown = _send_all(ctx, inserts, updates)
            inserts, updates = [], []
        inserts, updates = _look_up(ctx, unknown, [])
    except _Stopped as stopped:
        ctx.defer(TABLE, [activity.response_id for activity in stopped.pending], stopped.exhausted)
        return
    for activity in inserts + updates:
        _fail(
            ctx,
            activity,
            NOT_CONFIRMED,
            "Gainsight's answers did not confirm this activity and a query by ExternalId does not find it as sent",
        )


def _send_all(ctx: PushContext, inserts: list[_Activity], updates: list[_Activity]) -> list[_Activity]:
    """Send the inserts, then the updates, in calls of `timeline_records_per_call`; returns the open ones."""
    size = ctx.settings.timeline_records_per_call
    batches = [("insert", inserts[i : i + size]) for i in range(0, len(inserts), size)]
    batches += [("update", updates[i : i + size]) for i in range(0, len(updates), size)]
    still_open: list[_Activity] = []
    for index, (operation, batch) in enumerate(batches):
        try:
            still_open += _send(ctx, operation, batch)
        except QuotaExhausted as exhausted:
            raise _Stopped(exhausted, still_open + [a for _, rest in batches[index:] for a in rest]) from None
    return still_open


def _send(ctx: PushContext, operation: str, batch: list[_Activity]) -> list[_Activity]:
    """One insert or update call; books what its answer clearly settles, returns the rest."""
    records = [activity.record for activity in batch]
    write = ctx.client.insert_activities if operation == "insert" else ctx.client.update_activities
    try:
        outcome = write(records, AUTHOR_LOOKUP)
    except GainsightRejected as exc:
        if is_duplicate(exc.code, exc.reason) or (operation == "update" and is_no_match(exc.code, exc.reason)):
            # Refused whole because some ExternalIds exist (insert) or do not (update): nothing was
            # written and nothing says which, so each one is looked up.
            log.info("gainsight: timeline %s refused as a whole (%s); looking the activities up", operation, exc.code)
            return [_unsent(activity) for activity in batch]
        if exc.status != 400:
            raise
        # Refused as a whole for one reason (e.g. the author is not a Gainsight user).
        for activity in batch:
            _fail(ctx, activity, exc.code, exc.reason)
        return []
    _refuse_misconfiguration(outcome, len(batch))
    written = []
    still_open = []
    for activity in batch:
        if activity.external_id in outcome.written:
            activity.activity_id = outcome.written[activity.external_id] or activity.activity_id
            written.append(activity)
        elif activity.external_id in outcome.failed:
            _fail(ctx, activity, *outcome.failed[activity.external_id])
        elif activity.external_id in outcome.duplicate or activity.external_id in outcome.missing:
            still_open.append(_unsent(activity))  # exists (maybe older) / vanished: look before writing
        else:
            activity.sent = operation
            still_open.append(activity)  # the answer does not say
    _book(ctx, written, "created" if operation == "insert" else "updated")
    return still_open


def _look_up(ctx: PushContext, activities: list[_Activity], pending: list[_Activity]) -> tuple[list[_Activity], list[_Activity]]:
    """Query `activity_timeline` by ExternalId: book those showing what was sent; return (missing, older)."""
    if not activities:
        return [], []
    try:
        found = ctx.client.find_by_key(
            OBJECT, "ExternalId", [a.external_id for a in activities], ["Subject", "Notes", "GsCompanyId"]
        )
    except QuotaExhausted as exhausted:
        raise _Stopped(exhausted, activities + pending) from None
    same: dict[str, list[_Activity]] = {"created": [], "updated": [], "exists": []}
    missing, older = [], []
    for activity in activities:
        stored = found.get(activity.external_id)
        if stored is None:
            missing.append(activity)
            continue
        activity.activity_id = stored.get("Gsid") or activity.activity_id
        if activity_hash(stored) == activity_hash(activity.record):
            same[{"insert": "created", "update": "updated"}.get(activity.sent or "", "exists")].append(activity)
        else:
            older.append(activity)
    for status, booked in same.items():
        _book(ctx, booked, status)
    return missing, older


def _unsent(activity: _Activity) -> _Activity:
    """The answer says this call did not write it."""
    activity.sent = None
    return activity


def _refuse_misconfiguration(outcome: TimelineOutcome, size: int) -> None:
    """Stop, instead of dead-lettering every activity, when Gainsight refused a whole call for one
    reason: an unknown author or activity type is a setting, not a data problem."""
    if size < 2 or outcome.written or outcome.duplicate or outcome.missing or len(outcome.failed) < size:
        return
    reasons = set(outcome.failed.values())
    if len(reasons) == 1:
        ((code, message),) = reasons
        raise GainsightSettingError(
            f"Gainsight refused every Timeline entry of a call with the same reason ({code}: {message}); "
            "check DESTINATION__GAINSIGHT__TIMELINE_AUTHOR_EMAIL (an active Gainsight user) and "
            "DESTINATION__GAINSIGHT__TIMELINE_ACTIVITY_TYPE (a type configured for the Company context)"
        )


def _book(ctx: PushContext, activities: list[_Activity], status: str) -> None:
    """Record activities confirmed in Gainsight, with what they show and the response version."""
    if not activities:
        return
    ctx.ledger.confirm(
        TABLE,
        [
            {
                "response_id": activity.response_id,
                "external_id": activity.external_id,
                "activity_id": activity.activity_id,
                "status": status,
                "pushed_hash": activity_hash(activity.record),
                "source_hash": activity.row["content_hash"],
            }
            for activity in activities
        ],
    )
    counts = ctx.report[TABLE]
    if status == "created":
        counts.created += len(activities)
    elif status == "updated":
        counts.updated += len(activities)
    else:
        counts.unchanged += len(activities)


def _fail(ctx: PushContext, activity: _Activity, code: str | None, message: str) -> None:
    ctx.ledger.fail(TABLE, activity.response_id, activity.row["content_hash"], code, message, activity.record)
    ctx.report[TABLE].failed += 1
    log.warning("gainsight: timeline activity %s dead-lettered: %s %s", activity.external_id, code, message)
