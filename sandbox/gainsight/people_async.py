"""The async bulk People API ("People APIs - Bulk", reference §4.6): ≤50 persons per call, a
``statusId`` back, processing that takes a while, per-record errors in the status.

What is [observed, third-party docs]: an async upsert of up to 50 persons that "may take up to 30
minutes", answering a status ID; a status of ``INIT`` or ``INPROGRESS`` until ``COMPLETED``, with a
processed count, error details per failed record (row number, field name, values, message, code)
and the upserted people. The path ``PUT /v1/peoplemgmt/v1.0/people/async`` is a third-party
summary's. Everything else is [assumed] and served in each plausible variant
(``variants.py``): the body as a bare list or ``{"records": [...]}`` (``people_async_body``), row
numbers from 1 or 0 (``people_async_rows``), the status at any of ``STATUS_PATTERNS``, and a tenant
without the API answering 404 or 405 (``people_async``). Which quota the upsert counts against is
the server's ``people_async_quota`` variant.

Strictness: the call is checked as a whole (body shape, 1..50 persons; else 400 GSOBJ_1008 and
nothing is queued); each person is checked like a single upsert when processed, and a bad one is a
per-record error in the status while the others land. Processing runs on the sandbox clock: ``INIT``
for ``phase_seconds``, ``INPROGRESS`` for as long again, then every person is applied at once and
the status is ``COMPLETED``. It is applied lazily, when any API call or inspection looks (the
server calls ``settle``), which a client cannot tell from a background worker.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox.common.clock import SandboxClock
from sandbox.common.server import Request, Response
from sandbox.gainsight.envelope import GainsightError, bad_request, json_body, ok
from sandbox.gainsight.people import PeopleApi
from sandbox.gainsight.records import field_error
from sandbox.gainsight.variants import Variants

ASYNC_PATH = "/v1/peoplemgmt/v1.0/people/async"
#: Plausible status paths [assumed]; each serves every execution.
STATUS_PATTERNS = (
    r"/v1/peoplemgmt/v1\.0/people/async/status/([^/]+)",
    r"/v1/peoplemgmt/v1\.0/people/async/([^/]+)",
    r"/v1/peoplemgmt/v1\.0/people/status/([^/]+)",
)
MAX_RECORDS = 50  # [observed, third-party docs]
DEFAULT_PHASE_SECONDS = 60.0  # sandbox seconds in INIT, and again in INPROGRESS [assumed]


@dataclass
class _Execution:
    status_id: str
    persons: list[Any]
    created: float
    ends: float
    errors: list[dict[str, Any]] = field(default_factory=list)
    upserted: list[dict[str, Any]] = field(default_factory=list)
    applied: bool = False

    def state(self, now: float, phase: float) -> str:
        if self.applied:
            return "COMPLETED"
        return "INIT" if now < self.created + phase else "INPROGRESS"


class PeopleAsyncApi:
    def __init__(self, people: PeopleApi, clock: SandboxClock, variants: Variants, phase_seconds: float) -> None:
        self._people = people
        self._clock = clock
        self._variants = variants
        self.phase_seconds = phase_seconds
        self._executions: dict[str, _Execution] = {}

    # -- HTTP (under the server's API lock) ---------------------------------------------------------

    def submit(self, request: Request) -> Response:
        """``PUT /v1/peoplemgmt/v1.0/people/async``: check the call as a whole, queue it, answer its id."""
        body = json_body(request)
        if self._variants.people_async_body == "records":
            persons = body.get("records") if isinstance(body, dict) and set(body) == {"records"} else None
            shape = 'an object {"records": [...]} holding the persons'
        else:
            persons = body
            shape = "a JSON array of person objects"
        if not isinstance(persons, list):
            raise bad_request("GSOBJ_1008", f"The body must be {shape}")
        if not 1 <= len(persons) <= MAX_RECORDS:
            raise bad_request("GSOBJ_1008", f"A call takes 1 to {MAX_RECORDS} persons; got {len(persons)}")
        now = self._clock.now()
        execution = _Execution(uuid.uuid4().hex, persons, now, now + 2 * self.phase_seconds)
        self._executions[execution.status_id] = execution
        return ok({"statusId": execution.status_id})

    def status(self, request: Request, status_id: str) -> Response:
        execution = self._executions.get(status_id)
        if execution is None:
            raise bad_request("PEOPLE_STATUS_NOT_FOUND", f"No people upsert request has statusId {status_id!r}")
        state = execution.state(self._clock.now(), self.phase_seconds)
        done = state == "COMPLETED"
        return ok(
            {
                "statusId": status_id,
                "status": state,
                "totalCount": len(execution.persons),
                "processedCount": len(execution.persons) if done else 0,
                "successCount": len(execution.upserted),
                "failureCount": len(execution.errors),
                "errors": [dict(error) for error in execution.errors],
                "upsertedPeople": [dict(person) for person in execution.upserted],
            }
        )

    # -- processing ---------------------------------------------------------------------------------

    def settle(self) -> None:
        """Apply every execution whose time has come (the caller holds the server's lock)."""
        now = self._clock.now()
        for execution in self._executions.values():
            if not execution.applied and now >= execution.ends:
                self._apply(execution)

    def executions(self) -> list[dict[str, Any]]:
        """Emulator-only inspection: id, state, persons, errors of every execution."""
        now = self._clock.now()
        return [
            {
                "statusId": e.status_id,
                "status": e.state(now, self.phase_seconds),
                "persons": len(e.persons),
                "errors": [dict(error) for error in e.errors],
            }
            for e in self._executions.values()
        ]

    def reset(self) -> None:
        self._executions.clear()

    def _apply(self, execution: _Execution) -> None:
        first = 1 if self._variants.people_async_rows == "one_based" else 0
        for row, person in enumerate(execution.persons, start=first):
            if isinstance(person, dict):
                checked, errors = self._people.check(person)
            else:
                checked, errors = None, [field_error("GSOBJ_1008", "Each person must be an object", None, person)]
            if checked is None:
                execution.errors += [
                    {
                        "rowNumber": row,
                        "fieldName": error["fieldName"],
                        "values": [error["invalidValue"]],
                        "errorMessage": error["errorMessage"],
                        "errorCode": error["errorCode"],
                    }
                    for error in errors
                ]
                continue
            answer = self._people.apply(checked)
            execution.upserted.append({"Gsid": answer["Gsid"], "Email": person.get("Email")})
        execution.applied = True

    def refusal(self, request: Request) -> GainsightError | None:
        """How a tenant without the async API (``people_async`` variant) answers: as for an unknown
        route, before authentication and quotas, like the server's own 404 and 405."""
        mode = self._variants.people_async
        if mode == "not_found":
            return GainsightError(404, "GS_APIG_1000")
        if mode == "method_not_allowed":
            return GainsightError(405, "GS_APIG_1000", f"Method {request.method} not allowed here", headers={"Allow": "GET"})
        return None
