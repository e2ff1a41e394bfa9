"""People in bulk: the async People API, ≤50 persons per call (reference §4.6 "People APIs - Bulk").

A call answers a `statusId` at once and Gainsight processes it later ("may take up to 30
minutes"): the status reads `INIT` / `INPROGRESS` until `COMPLETED`, with error details per failed
record. Only the existence of the API is documented; its path, status path, body wrapper, row
numbering and quota family are not, so:

- the paths, the body wrapper and the quota family are settings (`[destination.gainsight.people]`);
  a status path answering 404/405 makes the writer try the other plausible ones and remember the one
  that answers;
- nothing the status says is trusted to book a person: once the call is final, `Person` is read by
  Email and `Company_Person` by person and Company, and a person is confirmed only when Gainsight
  holds what was sent. A person that did not land is dead-lettered with the vendor code when the
  status names its error (by the e-mail among the values, or by a row number that fits one person
  whether counted from 1 or 0), else sent through the single People API, which names it;
- a tenant answering 404/405 to the upsert does not have the API: the persons go through single
  upserts, and the fact is remembered in the state store so later runs do not ask again.

Few calls: the calls of a page are sent first; each status is read when it is due (one poll
interval after the call was sent, then with backoff), and the persons of every call found final are
read back together, ≤5000 values a read, instead of two reads per call.

Exactly once: every call is logged with its persons before it is sent and its statusId as soon as
it is answered. A run killed (or out of patience) while Gainsight processes a call leaves it open;
the next run polls it to the end before it reads or writes any person, so the persons are not sent
again. Re-sending is harmless anyway (the People API upserts by Email), only wasteful.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connector_common.stop import STOP

from .errors import GainsightRejected, QuotaExhausted
from .settings import setting
from .store import now

if TYPE_CHECKING:
    from .people import PersonWriter

log = logging.getLogger("nps.gainsight.people")

BATCH = 50  # persons per async call [observed, third-party docs]
# The plausible status paths [assumed]; the configured one is tried first.
STATUS_PATHS = (
    "/v1/peoplemgmt/v1.0/people/async/status/{status_id}",
    "/v1/peoplemgmt/v1.0/people/async/{status_id}",
    "/v1/peoplemgmt/v1.0/people/status/{status_id}",
)
# States of a call still being processed, in every spelling seen for Gainsight's async jobs; any
# other state is final, and the read that follows says what landed.
WORKING = frozenset({"INIT", "INPROGRESS", "IN_PROGRESS", "QUEUED", "PENDING", "RUNNING", "PROCESSING", "SUBMITTED"})
NOT_SUPPORTED = (404, 405)
UNSUPPORTED_FACT = "people_bulk_unsupported:"  # + the upsert path
STATUS_PATH_FACT = "people_bulk_status_path:"  # + the configured status path
STATUS_SETTING = setting("people.bulk_status_path")


@dataclass
class Call:
    """An async upsert sent: its persons in call order (`email`, `failed_hash`, `payload`), the
    plan items they are (none for a call an earlier run left open), and when its status is due."""

    call_id: str
    status_id: str
    persons: list[dict[str, Any]]
    indices: list[int]
    due: float = 0.0  # scheduler clock: when its next status read is due
    interval: float = 0.0  # the wait before the read after that (backoff)
    state: str | None = None  # the last state read


@dataclass
class Outcome:
    """What a final call did, by position in the call, from the read after it."""

    landed: dict[int, str | None]  # position -> person Gsid
    failed: dict[int, tuple[str | None, str]]  # position -> (vendor code, message) named by the status
    unknown: list[int]  # did not land and the status names no error for it


class PeopleBulk:
    """The async People API path of one `PersonWriter`."""

    def __init__(self, writer: PersonWriter) -> None:
        self.writer = writer
        self.ctx = writer.ctx
        self.people = writer.settings.people
        self.deadline: float | None = None  # set by the first poll: the run's patience starts there

    # --- what the tenant supports ------------------------------------------------------------------

    def unsupported(self) -> str | None:
        """Why an earlier run found this tenant without the async API, or None."""
        return self.ctx.ledger.tenant_fact(UNSUPPORTED_FACT + self.people.bulk_path)

    # --- writing -------------------------------------------------------------------------------------

    def send(self, indices: Sequence[int]) -> tuple[list[Call], list[int], QuotaExhausted | None]:
        """Send the items `indices` in calls of ≤50. Returns the calls sent (to `finish` once the
        caller has done other work meanwhile), the items for the single People API (a tenant without
        the async API; in `auto` mode what the quota window has no room for), and a quota stop to
        raise once the rest is done (`bulk` mode)."""
        reason = self.unsupported()
        if reason:
            log.info("gainsight: people: the async People API is not available on this tenant (%s); single upserts", reason)
            return [], list(indices), None
        chunks = [list(indices[start : start + BATCH]) for start in range(0, len(indices), BATCH)]
        sent: list[Call] = []
        rest: list[int] = []
        stopped: QuotaExhausted | None = None
        for number, chunk in enumerate(chunks):
            try:
                sent.append(self.submit(chunk))
                continue
            except GainsightRejected as exc:
                if exc.status in NOT_SUPPORTED:
                    self.ctx.ledger.remember_tenant_fact(UNSUPPORTED_FACT + self.people.bulk_path, f"HTTP {exc.status}")
                    log.warning(
                        "gainsight: people: %s answered HTTP %d: this tenant has no async People API; single upserts "
                        "from now on (remembered in gainsight.tenant_facts)",
                        self.people.bulk_path,
                        exc.status,
                    )
                elif exc.per_record:
                    log.warning(
                        "gainsight: people: the async People API refused a whole call (%s); the rest go through single "
                        "upserts, which name any bad person (check %s)",
                        exc,
                        setting("people.bulk_body"),
                    )
                else:
                    raise
            except QuotaExhausted as exhausted:
                if self.people.writer != "auto":
                    stopped = exhausted
                    break
                log.info("gainsight: people: %s; the other %d persons go through single upserts", exhausted, sum(map(len, chunks[number:])))
            rest += [index for later in chunks[number:] for index in later]
            break
        return sent, rest, stopped

    def submit(self, indices: list[int]) -> Call:
        """Log the call with its persons, send it, log its statusId."""
        writer, ledger = self.writer, self.ctx.ledger
        plan = writer.plan
        persons: list[dict[str, Any]] = [
            {"email": plan.keys[i], "failed_hash": plan.failure_hashes[i], "payload": writer.people[i]} for i in indices
        ]
        call_id = uuid.uuid4().hex
        ledger.start_people_call(call_id, self.people.bulk_path, persons)
        try:
            status_id = self.ctx.client.upsert_people_async([p["payload"] for p in persons], self.people.bulk_path)
        except Exception:  # refused or unanswered: the read of a later run decides (never a BaseException: a stop)
            ledger.update_people_call(call_id, status="NOT_SENT", reconciled_at=now())
            raise
        ledger.update_people_call(call_id, status_id=status_id, status="INIT")
        report = self.ctx.report
        report.people_bulk_calls += 1
        report.people_bulk_persons += len(indices)
        log.debug("gainsight: people: async upsert of %d persons sent (statusId %s)", len(indices), status_id)
        interval = self.writer.settings.bulk_poll_interval_seconds
        return Call(call_id, status_id, persons, indices, self.ctx.clock() + interval, interval)

    def finish(self, calls: list[Call]) -> list[int]:
        """Poll this run's `calls` to the end and book their persons; returns the items for single upserts."""
        writer = self.writer
        outcomes, still = self.settle(calls)
        unnamed: list[int] = []
        for call, outcome in outcomes:
            writer.land([call.indices[p] for p in outcome.landed], list(outcome.landed.values()))
            for position, (code, message) in outcome.failed.items():
                writer.reject(call.indices[position], code, message)
            unnamed += [call.indices[p] for p in outcome.unknown]
        for call in still:
            self.defer([writer.plan.keys[i] for i in call.indices])
        return unnamed

    def defer(self, keys: Iterable[str]) -> None:
        """Persons of a call still being processed when the run stopped waiting: the next run polls it."""
        keys = list(keys)
        self.writer.book.settled.update(keys)
        report = self.ctx.report
        report.defer_records(self.writer.spec.name, keys)
        report.defer("bulk", "people upsert", None, "Gainsight was still processing an async People upsert when the run stopped waiting")

    # --- calls an earlier run left open --------------------------------------------------------------

    def recover(self) -> set[str]:
        """Poll the calls an earlier run left open to the end and dead-letter the persons their status
        names; the persons that landed are found by the read that follows. Returns the e-mails of
        calls still being processed (not to be sent again in this run)."""
        ledger = self.ctx.ledger
        calls = []
        for open_call in ledger.open_people_calls():
            if not open_call["status_id"]:  # died while sending: the read that follows decides
                ledger.update_people_call(open_call["call_id"], status="UNKNOWN", reconciled_at=now())
                continue
            calls.append(Call(open_call["call_id"], open_call["status_id"], open_call["persons"], [], self.ctx.clock()))
        if not calls:
            return set()
        log.info("gainsight: people: %d async upsert(s) were left open by an earlier run", len(calls))
        outcomes, still = self.settle(calls)
        for call, outcome in outcomes:
            for position, (code, message) in outcome.failed.items():
                person = call.persons[position]
                self.writer.book.fail(person["email"], person["failed_hash"], code, message, person["payload"])
            self.ctx.report.people_bulk_recovered += 1
        processing = {person["email"] for call in still for person in call.persons}
        if processing:
            self.defer(processing)
        return processing

    # --- polling and reconciling ---------------------------------------------------------------------

    def settle(self, calls: list[Call]) -> tuple[list[tuple[Call, Outcome]], list[Call]]:
        """Poll `calls` until each is final, then read what landed for all of them together.
        Returns each final call's outcome, and the calls still processing when the run stopped waiting."""
        final, still = self.poll(calls)
        outcomes = self.reconcile(final) if final else []
        if still:
            log.warning("gainsight: people: %d async upsert(s) still processing; the next run polls them", len(still))
        return outcomes, still

    def poll(self, calls: list[Call]) -> tuple[list[tuple[Call, dict[str, Any]]], list[Call]]:
        """Read each call's status when it is due, with backoff, until every call is final. Returns
        the final calls with their status, and those the run stopped waiting for: its patience
        (`bulk_poll_timeout_seconds`, shared by every call of the run) ran out, or a quota did."""
        settings = self.writer.settings
        STOP.enter("the push: people (async upsert polling)")
        if self.deadline is None:
            self.deadline = self.ctx.clock() + settings.bulk_poll_timeout_seconds
        pending = sorted(calls, key=lambda call: call.due)
        final: list[tuple[Call, dict[str, Any]]] = []
        while pending:
            clock = self.ctx.clock()
            if pending[0].due > clock:
                if pending[0].due > self.deadline:
                    log.warning(
                        "gainsight: people: %d async upsert(s) still processing after %.0f s; the next run polls them",
                        len(pending),
                        settings.bulk_poll_timeout_seconds,
                    )
                    break
                self.ctx.pause(pending[0].due - clock)  # other objects' calls go on meanwhile (scheduler.py)
                continue
            call = pending.pop(0)
            try:
                status = self.status(call.status_id)
            except QuotaExhausted as exhausted:  # a quota window, or the run's time budget
                self.ctx.report.defer(exhausted.family, exhausted.window, exhausted.resume_at, exhausted.reason)
                pending.insert(0, call)
                break
            state = state_of(status)
            if state != call.state:
                self.ctx.ledger.update_people_call(call.call_id, status=state or "UNKNOWN")
                log.debug("gainsight: people: async upsert %s: %s", call.status_id, state or "unknown")
                call.state = state
            if state not in WORKING:
                self.ctx.ledger.update_people_call(call.call_id, finished_at=now())
                final.append((call, status))
                continue
            call.interval = min(max(call.interval, settings.bulk_poll_interval_seconds) * 1.5, 30.0)
            call.due = self.ctx.clock() + call.interval
            pending.append(call)
            pending.sort(key=lambda waiting: waiting.due)
        return final, pending

    def status(self, status_id: str) -> dict[str, Any]:
        """One status read at the path that answers: the configured one, else (on 404/405) each
        other plausible one, remembered once found. None answering: an unknown status (`{}`), so
        the read decides what landed."""
        ledger, configured = self.ctx.ledger, self.people.bulk_status_path
        known = ledger.tenant_fact(STATUS_PATH_FACT + configured)
        paths = list(dict.fromkeys([known or configured, configured, *STATUS_PATHS]))
        for path in paths:
            try:
                answer = self.ctx.client.people_async_status(path.format(status_id=status_id))
            except GainsightRejected as exc:
                if exc.status in NOT_SUPPORTED:
                    continue
                log.warning("gainsight: people: the status of async upsert %s is unknown (%s); reading the persons instead", status_id, exc)
                return {}
            if path != (known or configured):
                ledger.remember_tenant_fact(STATUS_PATH_FACT + configured, path)
                log.info("gainsight: people: async upsert status found at %s (remembered; see %s)", path, STATUS_SETTING)
            return answer
        log.warning(
            "gainsight: people: no status path answered for async upsert %s (check %s); reading the persons instead",
            status_id,
            STATUS_SETTING,
        )
        return {}

    def reconcile(self, final: list[tuple[Call, dict[str, Any]]]) -> list[tuple[Call, Outcome]]:
        """Read what landed (Person by Email, Company_Person by person and Company), for the persons
        of every final call at once: a person landed when Gainsight holds what was sent. The others
        get the error their call's status names, if any."""
        from .people import EXISTS, read_people, standings_of

        client = self.ctx.client
        everyone = [person for call, _ in final for person in call.persons]
        found = read_people(client, [person["email"] for person in everyone])
        standings = standings_of(client, [person["payload"] for person in everyone], found)
        outcomes: list[tuple[Call, Outcome]] = []
        start = 0
        for call, status in final:
            end = start + len(call.persons)
            persons, verdicts = found[start:end], standings[start:end]
            start = end
            landed = {p: (persons[p] or {}).get("Gsid") for p, verdict in enumerate(verdicts) if verdict == EXISTS}
            missing = [p for p in range(len(call.persons)) if p not in landed]
            named = name_errors(errors_of(status), [person["email"] for person in call.persons], missing)
            outcomes.append((call, Outcome(landed, named, [p for p in missing if p not in named])))
            self.ctx.ledger.update_people_call(call.call_id, landed=len(landed), failed=len(missing), reconciled_at=now())
        tally: Counter[str] = Counter()
        for _, outcome in outcomes:
            tally.update(landed=len(outcome.landed), rejected=len(outcome.failed), unknown=len(outcome.unknown))
        log.info(
            "gainsight: people: %d async upsert(s) final: %d persons landed, %d rejected, %d to send singly",
            len(outcomes),
            tally["landed"],
            tally["rejected"],
            tally["unknown"],
        )
        return outcomes


# --- reading the status answer (every spelling plausible, none load-bearing) -------------------------


def _first(record: dict[str, Any], *names: str) -> Any:
    return next((record[name] for name in names if record.get(name) is not None), None)


def state_of(status: dict[str, Any]) -> str:
    state = _first(status, "status", "state", "jobStatus", "requestStatus")
    return str(state).upper() if state is not None else ""


def errors_of(status: dict[str, Any]) -> list[dict[str, Any]]:
    errors = _first(status, "errors", "errorDetails", "failedRecords", "failures", "errorRecords")
    return [error for error in errors if isinstance(error, dict)] if isinstance(errors, list) else []


def name_errors(errors: list[dict[str, Any]], emails: list[str], missing: Sequence[int]) -> dict[int, tuple[str | None, str]]:
    """The error of each person that did not land, where an error names exactly one of them: by the
    e-mail among its values first; then by row number, counted from 1 or from 0 as the e-mail
    matches show (when they do not, a row number must fit only one of the persons left)."""
    named: dict[int, tuple[str | None, str]] = {}
    rows: list[tuple[int, dict[str, Any]]] = []
    bases: set[int] = set()
    for error in errors:
        values = _first(error, "values", "value", "invalidValue", "fieldValues")
        texts = {str(v).strip().lower() for v in (values if isinstance(values, list) else [values]) if v is not None}
        position = _only(p for p in missing if emails[p].strip().lower() in texts)
        row = _first(error, "rowNumber", "row", "recordNumber", "rowNum", "index")
        number = int(row) if isinstance(row, int) or (isinstance(row, str) and row.isdigit()) else None
        if position is None:
            if number is not None:
                rows.append((number, error))
            continue
        if number is not None and number - position in (0, 1):
            bases.add(number - position)
        named.setdefault(position, _described(error))
    left = set(missing) - set(named)
    for number, error in rows:
        offsets = bases if len(bases) == 1 else {0, 1}
        position = _only(p for p in (number - offset for offset in sorted(offsets)) if p in left)
        if position is not None:
            named[position] = _described(error)
            left.discard(position)
    return named


def _described(error: dict[str, Any]) -> tuple[str | None, str]:
    code = _first(error, "errorCode", "code")
    message = str(_first(error, "errorMessage", "message", "errorDesc") or "rejected by the async People API")
    field = _first(error, "fieldName", "field")
    return (None if code is None else str(code), f"{message} ({field})" if field else message)


def _only(positions: Iterable[int]) -> int | None:
    found = list(dict.fromkeys(positions))
    return found[0] if len(found) == 1 else None

