"""Writer kind TIMELINE: one Timeline activity per response, on its Company, kept in step with edits.

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

from .answers import TimelineOutcome, is_duplicate, is_no_match
from .engine import Action, Writer, write_isolating
from .errors import GainsightRejected, GainsightSettingError
from .records import AUTHOR_LOOKUP, activity_hash

log = logging.getLogger("nps.gainsight.timeline")

OBJECT = "activity_timeline"
# Send, look up what the answer left open, send what the look-up found missing or older: a few
# rounds settle every answer variant; what is still open after them is retried on the next run.
ROUNDS = 3
NOT_CONFIRMED = "NOT_CONFIRMED"


@dataclass
class _Activity:
    index: int  # the plan's item
    record: dict[str, Any]
    activity_id: str | None = None
    sent: str | None = None  # "insert" / "update" when this run's call may have written it

    @property
    def external_id(self) -> str:
        return str(self.record["ExternalId"])


class TimelineWriter(Writer):
    """Insert missing activities and update those showing an older version of their response."""

    def write(self) -> None:
        plan = self.plan
        todo = plan.indices(Action.UNCHANGED, Action.UPDATE, Action.CREATE)
        records = self.spec.payload(plan.rows(todo), self.settings, {})
        activities = {
            index: _Activity(index, record, (plan.state.get(plan.keys[index]) or {}).get("activity_id"))
            for index, record in zip(todo, records, strict=True)
        }
        # The edit did not touch what the activity shows: book the response version it reflects.
        self._book([activities[i] for i in plan.indices(Action.UNCHANGED)], "exists", counted=False)
        self._converge(
            [activities[i] for i in plan.indices(Action.CREATE)], [activities[i] for i in plan.indices(Action.UPDATE)]
        )
        counts = self.book.counts
        log.info(
            "gainsight: timeline: %d created, %d updated, %d already there, %d failed",
            counts.created,
            counts.updated,
            counts.unchanged,
            counts.failed,
        )

    def _converge(self, inserts: list[_Activity], updates: list[_Activity]) -> None:
        """Send, look up what stays open, send again: until every activity is booked or failed."""
        unknown: list[_Activity] = []
        for _ in range(ROUNDS):
            found_missing, found_older = self._look_up(unknown)
            inserts, updates = inserts + found_missing, updates + found_older
            if not inserts and not updates:
                return
            unknown = self._send_all(inserts, updates)
            inserts, updates = [], []
        inserts, updates = self._look_up(unknown)
        for activity in inserts + updates:
            self._fail(
                activity,
                NOT_CONFIRMED,
                "Gainsight's answers did not confirm this activity and a query by ExternalId does not find it as sent",
            )

    def _send_all(self, inserts: list[_Activity], updates: list[_Activity]) -> list[_Activity]:
        """Send the inserts, then the updates, in calls of `timeline_records_per_call`; returns the open ones."""
        size = self.settings.timeline_records_per_call
        still_open: list[_Activity] = []

        def rejected(activity: _Activity, exc: GainsightRejected) -> None:
            self._fail(activity, exc.code, exc.reason)

        for operation, activities in (("insert", inserts), ("update", updates)):

            def send(batch: list[_Activity], operation: str = operation) -> TimelineOutcome | None:
                return self._call(operation, batch)

            def landed(batch: list[_Activity], outcome: TimelineOutcome | None, operation: str = operation) -> None:
                still_open.extend(self._settle(operation, batch, outcome))

            for start in range(0, len(activities), size):
                write_isolating(activities[start : start + size], send, landed, rejected)
        return still_open

    def _call(self, operation: str, batch: list[_Activity]) -> TimelineOutcome | None:
        """One insert or update call; None when it was refused whole because some ExternalIds
        exist (insert) or do not (update): nothing was written and nothing says which."""
        records = [activity.record for activity in batch]
        write = self.ctx.client.insert_activities if operation == "insert" else self.ctx.client.update_activities
        try:
            return write(records, AUTHOR_LOOKUP)
        except GainsightRejected as exc:
            if is_duplicate(exc.code, exc.reason) or (operation == "update" and is_no_match(exc.code, exc.reason)):
                log.info("gainsight: timeline %s refused as a whole (%s); looking the activities up", operation, exc.code)
                return None
            raise

    def _settle(self, operation: str, batch: list[_Activity], outcome: TimelineOutcome | None) -> list[_Activity]:
        """Book what the answer clearly settles; returns the rest, to be looked up."""
        if outcome is None:
            return [_unsent(activity) for activity in batch]
        _refuse_misconfiguration(outcome, len(batch))
        written = []
        still_open = []
        for activity in batch:
            if activity.external_id in outcome.written:
                activity.activity_id = outcome.written[activity.external_id] or activity.activity_id
                written.append(activity)
            elif activity.external_id in outcome.failed:
                self._fail(activity, *outcome.failed[activity.external_id])
            elif activity.external_id in outcome.duplicate or activity.external_id in outcome.missing:
                still_open.append(_unsent(activity))  # exists (maybe older) / vanished: look before writing
            else:
                activity.sent = operation
                still_open.append(activity)  # the answer does not say
        self._book(written, "created" if operation == "insert" else "updated")
        return still_open

    def _look_up(self, activities: list[_Activity]) -> tuple[list[_Activity], list[_Activity]]:
        """Query `activity_timeline` by ExternalId: book those showing what was sent; return (missing, older)."""
        if not activities:
            return [], []
        found = self.ctx.client.find_by_key(
            OBJECT, "ExternalId", [a.external_id for a in activities], ["Subject", "Notes", "GsCompanyId"]
        )
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
            self._book(booked, status)
        return missing, older

    def _book(self, activities: list[_Activity], status: str, counted: bool = True) -> None:
        """Record activities confirmed in Gainsight, with what they show and the response version."""
        plan = self.plan
        rows = [
            {
                self.spec.key: plan.keys[activity.index],
                "external_id": activity.external_id,
                "activity_id": activity.activity_id,
                "status": status,
                "pushed_hash": activity_hash(activity.record),
                "source_hash": plan.failure_hashes[activity.index],
            }
            for activity in activities
        ]
        self.book.confirm(rows, {"created": "created", "updated": "updated"}.get(status, "unchanged"), counted)

    def _fail(self, activity: _Activity, code: str | None, message: str) -> None:
        self.book.fail(self.plan.keys[activity.index], self.plan.failure_hashes[activity.index], code, message, activity.record)


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
