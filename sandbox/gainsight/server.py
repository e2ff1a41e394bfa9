"""The Gainsight CS sandbox: every endpoint the connector uses, behind Gainsight's gateway rules.

Each API call passes the gateway in order: ``Accept`` check (without JSON the real gateway answered
an HTML page with status 200 [observed]), authentication, quota of its family, then the handler
under one lock, which is what makes every call atomic against concurrent clients. Emulator-only
controls live under ``/_sandbox/`` and in the Python methods marked emulator-only.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any

from sandbox.common.clock import SandboxClock
from sandbox.common.faults import Fault
from sandbox.common.server import Request, Response, SandboxServer, json_response
from sandbox.common.tokens import TokenIssuer
from sandbox.gainsight.auth import Authenticator, unauthorized
from sandbox.gainsight.bulk import DEFAULT_MAX_BYTES, BulkJob, BulkService
from sandbox.gainsight.bulk import DEFAULT_PHASE_SECONDS as DEFAULT_BULK_PHASE_SECONDS
from sandbox.gainsight.data_api import DataApi
from sandbox.gainsight.envelope import DESCRIPTIONS, GainsightError, ObjectNotFound, envelope
from sandbox.gainsight.metadata import MetadataApi
from sandbox.gainsight.people import PeopleApi
from sandbox.gainsight.people_async import ASYNC_PATH, DEFAULT_PHASE_SECONDS, STATUS_PATTERNS, PeopleAsyncApi
from sandbox.gainsight.quotas import Exceeded, Quotas
from sandbox.gainsight.records import RecordPreparer
from sandbox.gainsight.schema import Schema, default_schema
from sandbox.gainsight.store import Store
from sandbox.gainsight.timeline import DEFAULT_RECORDS_PER_CALL, TimelineApi
from sandbox.gainsight.variants import Variants

TOKEN_PATH = "/v1/users/m2m/oauth/token"
BULK_PATH = "/v1.0/admin/connector/job/bulkimport"
#: Endpoint family of a logged request, by path; the first match wins.
FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("token", re.compile(re.escape(TOKEN_PATH))),
    ("bulk_status", re.compile(re.escape(BULK_PATH) + r"/status/.*")),
    ("bulk", re.compile(re.escape(BULK_PATH))),
    ("data", re.compile(r"/v1/data/objects(/.*)?")),
    ("people", re.compile(r"/v1/peoplemgmt/v1\.0/people|/v1\.0/api/people")),
    ("people_async", re.compile(re.escape(ASYNC_PATH))),
    ("people_async_status", re.compile("|".join(STATUS_PATTERNS))),
    ("timeline", re.compile(r"/v1/ant/es/activity")),
    ("metadata", re.compile(r"/v1/meta/services/.*")),
)
#: Quota family per endpoint family [assumed]; the token endpoint is never counted.
QUOTA_FAMILY = {
    "data": "sync", "people": "sync", "people_async_status": "sync", "metadata": "sync", "bulk_status": "sync",
    "timeline": "timeline", "bulk": "bulk",
}  # fmt: skip
_FAULT_CODES = {400: "GSOBJ_1008", 401: "GS_APIG_2401", 403: "GS_APIG_2402", 404: "GS_APIG_1000", 429: "GS_APIG_2404"}
_JSON_RANGES = ("application/json", "application/*", "*/*")
_HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Gainsight</title></head>"
    b"<body><p>Something went wrong. Please send Accept: application/json.</p></body></html>"
)


def family_of(path: str) -> str:
    """The endpoint family a request path belongs to (``other`` for unknown routes)."""
    for family, pattern in FAMILIES:
        if pattern.fullmatch(path):
            return family
    return "other"


def _accepts_json(request: Request) -> bool:
    accept = request.headers.get("Accept") or ""
    return any(r.split(";")[0].strip().lower() in _JSON_RANGES for r in accept.split(","))


class GainsightSandbox(SandboxServer):
    """A local Gainsight CS tenant on 127.0.0.1 (see ``sandbox/README.md`` for every knob)."""

    rate_limit = 100  # x-ratelimit-limit on injected 429s: the sync per-minute limit
    fault_kinds = SandboxServer.fault_kinds | {"result_false"}

    def __init__(
        self,
        access_key: str = "sandbox-access-key",
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        port: int = 0,
        schema: Schema | None = None,
        bulk_jobs: Iterable[BulkJob] = (),
        quotas: bool = True,
        quota_limits: Mapping[tuple[str, str], int] | None = None,
        time_scale: float = 1.0,
        token_lifetime: float = 86400.0,
        require_accept: bool = True,
        retry_after_header: bool = False,
        timeline_records_per_call: int = DEFAULT_RECORDS_PER_CALL,
        bulk_max_bytes: int = DEFAULT_MAX_BYTES,
        variants: Variants | None = None,
        people_async_seconds: float = DEFAULT_PHASE_SECONDS,
        bulk_phase_seconds: float = DEFAULT_BULK_PHASE_SECONDS,
    ) -> None:
        super().__init__(port, SandboxClock(time_scale))
        #: Emulator-only answer variants (``sandbox/gainsight/variants.py``); changeable while running.
        self.variants = variants if variants is not None else Variants()
        self.schema = schema if schema is not None else default_schema()
        self.require_accept = require_accept
        self.retry_after_header = retry_after_header
        self._lock = threading.RLock()
        self._store = Store(self.schema, self.clock)
        self._preparer = RecordPreparer(self._store)
        self._auth = Authenticator(access_key, client_id, client_secret, TokenIssuer(token_lifetime, self.clock))
        self._quotas = Quotas(self.clock, quota_limits, quotas)
        self._data = DataApi(self._store, self._preparer, self.variants)
        self._people = PeopleApi(self._store, self._preparer)
        #: The async People API; ``people_async_seconds`` sandbox seconds in INIT, as long in INPROGRESS.
        self.people_async = PeopleAsyncApi(self._people, self.clock, self.variants, people_async_seconds)
        self._timeline = TimelineApi(self._store, self._preparer, self.schema, timeline_records_per_call, self.variants)
        #: Bulk uploads stay ``bulk_phase_seconds`` sandbox seconds in INIT, at least as long in IN_PROGRESS.
        self._bulk = BulkService(
            self._store, self._preparer, self.clock, self._lock, access_key, bulk_max_bytes, self.variants, bulk_phase_seconds
        )
        self._metadata = MetadataApi(self.schema)
        for email, name in self.schema.users:
            gsid = self.add_user(email, name)
            self._store.actor = self._store.actor or gsid
        for job in bulk_jobs:
            self.add_bulk_job(job)
        self._routes_for_api()
        self._routes_for_controls()

    def hold(self, seconds: float) -> None:
        """A ``delay`` fault waits on the sandbox clock like every other Gainsight time: real time at
        ``time_scale=1``; a test sees the held request (``clock.wait_for_sleepers``) instead of guessing."""
        self.clock.sleep(seconds)

    # -- routing ------------------------------------------------------------------------------------

    def _routes_for_api(self) -> None:
        data, people = self._data, self._people
        objects = r"/v1/data/objects"
        self.route("POST", TOKEN_PATH, self._gateway("token", self._auth.grant))
        self.route("POST", objects + r"/query/([^/]+)", self._gateway("data", data.query))
        self.route("POST", objects + r"/([^/]+)", self._gateway("data", data.insert))
        self.route("PUT", objects + r"/([^/]+)", self._gateway("data", data.update))
        self.route("GET", objects + r"/([^/]+)/([^/]*)", self._gateway("data", data.get))
        self.route("DELETE", objects + r"/([^/]+)/([^/]*)", self._gateway("data", data.delete))
        self.route("PUT", r"/v1/peoplemgmt/v1\.0/people", self._gateway("people", people.upsert))
        self.route("PUT", r"/v1\.0/api/people", self._gateway("people", people.upsert))
        self.route("PUT", re.escape(ASYNC_PATH), self._async_people(self._gateway("people_async", self.people_async.submit)))
        status = self._async_people(self._gateway("people_async_status", self.people_async.status))
        for pattern in STATUS_PATTERNS:
            self.route("GET", pattern, status)
        self.route("POST", r"/v1/ant/es/activity", self._gateway("timeline", self._timeline.insert))
        self.route("PUT", r"/v1/ant/es/activity", self._gateway("timeline", self._timeline.update))
        self.route("DELETE", r"/v1/ant/es/activity", self._gateway("timeline", self._timeline.delete))
        self.route("POST", re.escape(BULK_PATH), self._gateway("bulk", self._bulk.upload, self._bulk.known_key, locked=False))
        bulk_status = self._gateway("bulk_status", self._bulk.status, self._bulk_status_auth)
        self.route("GET", re.escape(BULK_PATH) + r"/status/([^/]+)", bulk_status)
        self.route("GET", r"/v1/meta/services/objects/list", self._gateway("metadata", self._metadata.list_objects))
        self.route("POST", r"/v1/meta/services/objects/describe", self._gateway("metadata", self._metadata.describe_many))
        self.route("GET", r"/v1/meta/services/objects/([^/]+)/describe", self._gateway("metadata", self._metadata.describe_one))

    def _gateway(
        self,
        family: str,
        handler: Callable[..., Response],
        authenticate: Callable[[Request], bool] | None = None,
        *,
        locked: bool = True,
    ) -> Callable[..., Response]:
        """Wrap a handler in the gateway's checks; ``locked=False`` handlers take the lock themselves."""
        check = authenticate or self._auth.authenticated

        def serve(request: Request, *args: str) -> Response:
            if self.require_accept and not _accepts_json(request):
                return Response(200, _HTML_PAGE, content_type="text/html; charset=utf-8")
            try:
                if family != "token":
                    if not check(request):
                        raise unauthorized()
                    exceeded = self._quotas.acquire(self._quota_family(family))
                    if exceeded is not None:
                        raise self._rate_limited(exceeded)
                if not locked:
                    return handler(request, *args)
                with self._lock:
                    self.people_async.settle()
                    return handler(request, *args)
            except GainsightError as error:
                return error.response()

        return serve

    def _async_people(self, served: Callable[..., Response]) -> Callable[..., Response]:
        """The async People API's routes, absent on a tenant without it (``people_async`` variant)."""

        def serve(request: Request, *args: str) -> Response:
            refusal = self.people_async.refusal(request)
            return refusal.response() if refusal is not None else served(request, *args)

        return serve

    def _quota_family(self, family: str) -> str:
        if family == "people_async":
            return self.variants.people_async_quota
        return QUOTA_FAMILY[family]

    def _bulk_status_auth(self, request: Request) -> bool:
        return self._auth.authenticated(request) or self._bulk.known_key(request)

    def _rate_limited(self, exceeded: Exceeded) -> GainsightError:
        headers = {"x-ratelimit-limit": str(exceeded.limit)}
        if self.retry_after_header:
            headers["Retry-After"] = str(self.clock.retry_after(exceeded.resets_at - self.clock.now()))
        return GainsightError(429, "GS_APIG_2404", "API rate limit exceeded", headers=headers)

    # -- Gainsight-shaped answers for the base server's cases -----------------------------------------

    def not_found(self, request: Request) -> Response:
        return GainsightError(404, "GS_APIG_1000").response()

    def method_not_allowed(self, request: Request, allowed: list[str]) -> Response:
        response = GainsightError(405, "GS_APIG_1000", f"Method {request.method} not allowed here").response()
        response.headers["Allow"] = ", ".join(allowed)
        return response

    def server_error(self) -> Response:
        return GainsightError(500, "GU_1101").response()

    def render_fault(self, fault: Fault) -> Response:
        """Injected failures in Gainsight's envelopes: 429 GS_APIG_2404 (+ x-ratelimit-limit), 500 and
        other 5xx GU_1101, 401 GS_APIG_2401; ``result_false`` is HTTP 200 with ``result: false``."""
        if fault.kind == "result_false":
            code = fault.error_code or "GSOBJ_1003"
            return json_response(200, envelope(False, None, code, DESCRIPTIONS.get(code, code)))
        code = fault.error_code or _FAULT_CODES.get(fault.status, "GU_1101" if fault.status >= 500 else "GSOBJ_1008")
        headers: dict[str, str] = {}
        if fault.status == 429:
            headers["x-ratelimit-limit"] = str(self.rate_limit)
        headers.update(fault.retry_after_headers(time.time()))
        return GainsightError(fault.status, code, headers=headers).response()

    # -- emulator-only Python API ----------------------------------------------------------------------

    @property
    def access_key(self) -> str:
        return self._auth.access_key

    @property
    def token_requests(self) -> int:
        """How many M2M tokens were granted."""
        return self._auth.tokens.granted

    def add_bulk_job(self, job: BulkJob) -> None:
        """Emulator-only: seed a Bulk job as an admin would create it in the UI."""
        self._bulk.add_job(job)

    def add_user(self, email: str, name: str) -> str:
        """Emulator-only: add a GsUser (authors, CSMs); returns its GSID."""
        first, _, last = name.partition(" ")
        return self.add_record("GsUser", {"Email": email, "Name": name, "FirstName": first, "LastName": last or None})

    def add_record(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Emulator-only: a record made outside the connector (a CRM sync, an admin), validated like an
        insert; returns its GSID. Seeds a tenant's existing Companies (keyed or by Name only) and Persons."""
        table = self._table(object_name)
        with self._lock:
            prepared, _, errors = self._preparer.prepare(table.spec, dict(values))
            if errors:
                raise ValueError(f"invalid {table.spec.name} record: {errors}")
            return self._store.insert(table, prepared)

    def delete_record(self, object_name: str, gsid: str) -> None:
        """Emulator-only: remove a record as someone else (an admin, an earlier delete) did."""
        with self._lock:
            self._table(object_name).remove(gsid)

    def records(self, object_name: str) -> list[dict[str, Any]]:
        """Emulator-only: every stored record of an object (any case), as Python values, oldest first."""
        with self._lock:
            self.people_async.settle()
            return [dict(row) for row in self._table(object_name).rows.values()]

    def count_records(self, object_name: str) -> int:
        """Emulator-only: how many records an object holds."""
        with self._lock:
            self.people_async.settle()
            return len(self._table(object_name))

    def family_counts(self) -> dict[str, int]:
        """Emulator-only: logged API requests per endpoint family (token, data, people, timeline,
        bulk, bulk_status, metadata; ``other`` for unknown routes)."""
        counts: dict[str, int] = {}
        for entry in self.requests():
            family = family_of(entry.path)
            counts[family] = counts.get(family, 0) + 1
        return counts

    def quota_state(self) -> dict[str, dict[str, dict[str, float]]]:
        """Emulator-only: quota family -> window -> {limit, used, resets_at (sandbox epoch seconds)}."""
        return self._quotas.state()

    def fail_bulk_rows(self, keys: Iterable[str], reason: str = "Emulator-injected row failure") -> None:
        """Emulator-only: the next Bulk rows whose key value (the job's first update key, else its
        first column) is in ``keys`` fail once each: counted as failures, not written."""
        self._bulk.fail_rows(keys, reason)

    def bulk_executions(self) -> list[dict[str, Any]]:
        """Emulator-only: every Bulk upload's status data plus its failed rows (row, key, reason)."""
        return self._bulk.executions()

    def revoke_tokens(self) -> None:
        """Emulator-only: invalidate every issued M2M token."""
        self._auth.tokens.revoke_all()

    def reset(self) -> None:
        """Emulator-only: forget written records, Bulk executions, the log, quota counters, tokens and
        faults; keep the schema, users and Bulk jobs."""
        with self._lock:
            self._bulk.reset()
            self.people_async.reset()
            for table in self._store.tables():
                if table.spec.name != "GsUser":
                    table.clear()
        self.clear_log()
        self.clear_faults()
        self._quotas.reset()
        self.revoke_tokens()

    def _table(self, object_name: str) -> Any:
        try:
            return self._store.table(object_name)
        except ObjectNotFound:
            raise KeyError(f"no object named {object_name!r}") from None

    # -- emulator-only HTTP controls --------------------------------------------------------------------

    def _routes_for_controls(self) -> None:
        self.route("GET", r"/_sandbox/records/([^/]+)", self._control_records)
        self.route("POST", r"/_sandbox/records/([^/]+)", self._control_add_record)
        self.route("GET", r"/_sandbox/families", lambda request: json_response(200, self.family_counts()))
        self.route("GET", r"/_sandbox/log", self._control_log)
        self.route("GET", r"/_sandbox/quotas", lambda request: json_response(200, self.quota_state()))
        self.route("GET", r"/_sandbox/bulk/executions", lambda request: json_response(200, _plain(self.bulk_executions())))
        self.route("POST", r"/_sandbox/bulk/jobs", self._control_add_job)
        self.route("POST", r"/_sandbox/bulk/fail-rows", self._control_fail_rows)
        self.route("POST", r"/_sandbox/users", self._control_add_user)
        self.route("POST", r"/_sandbox/reset", self._control_reset)

    def _control_log(self, request: Request) -> Response:
        """``?since=N``: the logged API requests from the N-th on, in arrival order, each as
        ``{"method", "path", "status", "family"}`` (the push benchmark replays them against quotas)."""
        since = int(request.query.get("since", ["0"])[0])
        entries = self.requests()[since:]
        log = [{"method": e.method, "path": e.path, "status": e.status, "family": family_of(e.path)} for e in entries]
        return json_response(200, {"since": since, "requests": log})

    def _control_records(self, request: Request, name: str) -> Response:
        try:
            return json_response(200, {"records": _plain(self.records(name))})
        except KeyError as error:
            return json_response(404, {"message": str(error.args[0])})

    def _control_add_job(self, request: Request) -> Response:
        """``{"jobId", "objectName", "operation", "keys"?, "mapping"?, "lookups"?, "accessKey"?}``."""
        try:
            body = request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            job = BulkJob(
                body["jobId"], body["objectName"], body["operation"], tuple(body.get("keys", ())),
                body.get("mapping"), body.get("lookups"), body.get("accessKey"),
            )  # fmt: skip
            self.add_bulk_job(job)
        except (KeyError, TypeError, ValueError) as error:
            return json_response(400, {"message": str(error)})
        return json_response(201, {"jobId": job.job_id})

    def _control_fail_rows(self, request: Request) -> Response:
        """``{"keys": [...], "reason"?: "..."}``."""
        try:
            body = request.json()
            keys = body["keys"]
            if not isinstance(keys, list):
                raise ValueError("keys must be a list")
            self.fail_bulk_rows([str(k) for k in keys], str(body.get("reason", "Emulator-injected row failure")))
        except (KeyError, TypeError, ValueError) as error:
            return json_response(400, {"message": str(error)})
        return json_response(200, {"keys": keys})

    def _control_add_record(self, request: Request, name: str) -> Response:
        """A record's field values -> ``{"gsid"}``; a list of them -> ``{"gsids": [...]}`` (a tenant's
        CRM-synced people seeded in one request; all are added up to the first invalid one)."""
        try:
            body = request.json()
            if isinstance(body, list):
                return json_response(201, {"gsids": [self.add_record(name, values) for values in body]})
            gsid = self.add_record(name, body)
        except (KeyError, TypeError, ValueError) as error:
            return json_response(400, {"message": str(error)})
        return json_response(201, {"gsid": gsid})

    def _control_add_user(self, request: Request) -> Response:
        """``{"email", "name"}`` -> ``{"gsid"}``."""
        try:
            body = request.json()
            gsid = self.add_user(body["email"], body["name"])
        except (KeyError, TypeError, ValueError) as error:
            return json_response(400, {"message": str(error)})
        return json_response(201, {"gsid": gsid})

    def _control_reset(self, request: Request) -> Response:
        self.reset()
        return json_response(200, {"reset": True})


def _plain(value: Any) -> Any:
    """Inspection data as JSON: dates and datetimes in ISO-8601."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value
