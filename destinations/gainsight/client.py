"""The one place that sends HTTP to Gainsight.

Everything an operator needs to trust about the wire is here: authentication (access key, or M2M
OAuth with a cached token renewed before expiry and once more on a 401), the quota limiter (every
call is counted before it is sent), the retry policy of DESIGN §7 and the envelope check (a 200
with `result: false` is an error). Secrets never enter log lines or exception messages: keys and
tokens only travel in headers, and messages name the method, path and vendor code.

Retry policy:
- 429 / `GS_APIG_2404` / `GU_2400`: wait for the next window of the family (Gainsight sends no
  `Retry-After`), or defer with `QuotaExhausted` if that is longer than the run will wait.
- 5xx and lost connections: retried with backoff when the call is idempotent (query, update by
  key, People upsert, Timeline insert with its ExternalId). A non-idempotent write (insert, Bulk
  upload) raises `MaybeApplied` instead, and the caller reconciles by key before writing again.
  A connection that was never established is always safe to retry.
- Other 4xx and `result: false`: `GainsightRejected` with the vendor code; never retried as is. An
  unknown object, field or Bulk job is a `GainsightSettingError` naming the setting that holds it.
- Before the tenant has answered once in this run, a TLS failure, an unresolvable host, a refused
  connection or a 404 is a `GainsightSettingError` naming the host and `base_url`, not retried
  (`connector_common.first_contact`).
"""

from __future__ import annotations

import json
import logging
import random
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import requests
import tenacity
import urllib3

from connector_common.first_contact import FirstContact
from connector_common.stop import STOP
from connector_common.tokens import TokenCache

from .answers import TimelineOutcome, bulk_status, bulk_status_id, timeline_outcome
from .errors import (
    GainsightCredentialsRejected,
    GainsightRejected,
    GainsightSettingError,
    GainsightUnavailable,
    MaybeApplied,
)
from .multipart import BulkFile
from .quota import QuotaLimiter
from .settings import GainsightSettings, setting

log = logging.getLogger("nps.gainsight")

USER_AGENT = "cg-gainsight-nps/0.1 (+dlt)"
TOKEN_PATH = "/v1/users/m2m/oauth/token"
QUERY_LIMIT = 5000  # rows per query call (reference §4.4)
WRITE_LIMIT = 50  # records per sync write (reference §4.1)

# Endpoint family (what the summary counts) -> quota family (what Gainsight limits).
QUOTA_FAMILY = {
    "query": "sync",
    "company": "sync",
    "response": "sync",
    "people": "sync",
    "bulk_status": "sync",
    "timeline": "timeline",
    "bulk": "bulk",
}
RATE_LIMIT_CODES = frozenset({"GS_APIG_2404", "GU_2400"})
AUTH_CODES = frozenset({"GS_APIG_2401", "GS_APIG_2402", "GSOBJ_1024"})
NO_DATA_DESCRIPTION = "no data found"
# Codes no record's data can cause: an object, field or Bulk job named in the settings does not
# exist in this tenant. Retrying or bisecting cannot help; the operator has to fix a setting.
# BULK_JOB_NOT_FOUND is the sandbox's code [assumed]: Gainsight documents none for an unknown job.
CONFIGURATION_CODES = frozenset({"GSOBJ_1002", "GSOBJ_1023", "OBJECT_NOT_FOUND", "BULK_JOB_NOT_FOUND"})
BASE_URL = setting("base_url")


@dataclass
class CallStats:
    calls: dict[str, int] = field(default_factory=dict)  # endpoint family -> HTTP requests sent
    retries: int = 0
    rate_limited: int = 0

    def count(self, endpoint: str) -> None:
        self.calls[endpoint] = self.calls.get(endpoint, 0) + 1


class _Transient(Exception):
    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class GainsightClient:
    """Authenticated, rate-limited, retrying access to the Gainsight CS REST APIs."""

    def __init__(
        self,
        settings: GainsightSettings,
        limiter: QuotaLimiter,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = STOP.wait,
    ) -> None:
        self.settings = settings
        self.limiter = limiter
        self.stats = CallStats()
        self._sleep = sleep
        self._session = session or requests.Session()
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._tokens = TokenCache(self._request_token) if settings.uses_oauth else None
        self._contact = FirstContact("Gainsight")

    @property
    def token_grants(self) -> int:
        return self._tokens.grants if self._tokens else 0

    @property
    def reached_tenant(self) -> bool:
        """Whether the tenant has answered a call successfully in this run."""
        return self._contact.reached(BASE_URL)

    def close(self) -> None:
        self._session.close()

    # --- the data APIs ----------------------------------------------------------------------

    def query(
        self,
        obj: str,
        select: list[str],
        conditions: list[dict[str, Any]] | None = None,
        expression: str | None = None,
        limit: int = QUERY_LIMIT,
        offset: int = 0,
        order_by: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """One query call; `data.records` (or a bare list, as in the doc sample) of rows."""
        body: dict[str, Any] = {"select": select, "limit": limit, "offset": offset}
        if order_by:
            body["orderBy"] = dict(order_by)  # paging by offset needs a stable order
        if conditions:
            body["where"] = {"conditions": conditions, "expression": expression or _and(conditions)}
        try:
            data = self.call("query", "POST", f"/v1/data/objects/query/{obj}", json_body=body, idempotent=True)
        except GainsightRejected as exc:
            if exc.status == 200 and NO_DATA_DESCRIPTION in (exc.description or "").lower():
                return []  # the documented "No data found for given criteria" variant of empty
            raise
        records = data.get("records") if isinstance(data, dict) else data
        if not isinstance(records, list):
            raise GainsightUnavailable(f"Gainsight answered POST /v1/data/objects/query/{obj} without records")
        return records

    def describe(self, obj: str) -> list[dict[str, Any]]:
        """The fields of `obj` (`fieldName`, `dataType`, `meta.length`, ...) from the metadata describe API."""
        data = self.call(
            "query",
            "POST",
            "/v1/meta/services/objects/describe",
            json_body={"objectNames": [obj], "includeChilds": "false", "childLevels": "0"},
            idempotent=True,
        )
        described = data[0] if isinstance(data, list) and data else {}
        return [spec for spec in described.get("fields") or [] if isinstance(spec, dict) and spec.get("fieldName")]

    def field_lengths(self, obj: str) -> dict[str, int]:
        """Maximum length of each text field of `obj`, from the metadata describe API."""
        lengths = {}
        for spec in self.describe(obj):
            length = field_length(spec)
            if length:
                lengths[spec["fieldName"]] = length
        return lengths

    def find_by_key(self, obj: str, key_field: str, keys: list[str], select: list[str]) -> dict[str, dict[str, Any]]:
        """Existing records whose `key_field` is one of `keys` (≤5000 per call), by key value."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), QUERY_LIMIT):
            chunk = keys[start : start + QUERY_LIMIT]
            condition = {"name": key_field, "alias": "A", "value": chunk, "operator": "IN"}
            for row in self.query(obj, sorted({key_field, "Gsid", *select}), [condition], "A"):
                found.setdefault(str(row.get(key_field)), row)
        return found

    def insert(self, endpoint: str, obj: str, records: list[dict[str, Any]], lookups: Mapping | None = None) -> list[dict]:
        """Insert ≤50 records (all or nothing). Not idempotent: may raise `MaybeApplied`."""
        body = {"records": records, **({"lookups": lookups} if lookups else {})}
        data = self.call(endpoint, "POST", f"/v1/data/objects/{obj}", json_body=body, idempotent=False)
        return _written(data, len(records), obj)

    def update(
        self, endpoint: str, obj: str, records: list[dict[str, Any]], keys: list[str], lookups: Mapping | None = None
    ) -> list[dict]:
        """Update ≤50 records matched by `keys` (all or nothing); writing the same values twice is harmless."""
        body = {"records": records, **({"lookups": lookups} if lookups else {})}
        data = self.call(
            endpoint, "PUT", f"/v1/data/objects/{obj}", json_body=body, params={"keys": ",".join(keys)}, idempotent=True
        )
        results = data.get("records") if isinstance(data, dict) else None
        if isinstance(results, list) and len(results) > len(records):
            # Several Gainsight records share a key (duplicates made outside the connector): all
            # were updated; answer with the first per key, in request order.
            first: dict[tuple, dict] = {}
            for result in results:
                first.setdefault(tuple(str(result.get(k)) for k in keys), result)
            results = [first.get(tuple(str(record.get(k)) for k in keys), {}) for record in records]
            return _written({"records": results}, len(records), obj)
        return _written(data, len(records), obj)

    def upsert_person(self, person: dict[str, Any]) -> dict[str, Any]:
        """People API: one person per call, resolved by Email, so a re-send is harmless."""
        data = self.call("people", "PUT", "/v1/peoplemgmt/v1.0/people", json_body=person, idempotent=True)
        return data if isinstance(data, dict) else {}

    def insert_activities(self, records: list[dict[str, Any]], lookups: Mapping) -> TimelineOutcome:
        """Timeline insert; ExternalId is the idempotency key, so a re-send is harmless. The answer is
        undocumented: what it does not clearly name stays unknown for the caller to look up."""
        data = self.call(
            "timeline",
            "POST",
            "/v1/ant/es/activity",
            json_body={"records": records, "lookups": lookups},
            idempotent=True,
            opaque_ok=True,
        )
        return timeline_outcome(data)

    def update_activities(self, records: list[dict[str, Any]], lookups: Mapping) -> TimelineOutcome:
        """Timeline update in place, matched by ExternalId (reference §4.7); writing the same values
        twice is harmless."""
        data = self.call(
            "timeline",
            "PUT",
            "/v1/ant/es/activity",
            json_body={"records": records, "lookups": lookups},
            params={"identifier": "externalid"},
            idempotent=True,
            opaque_ok=True,
        )
        return timeline_outcome(data, update=True)

    def bulk_upload(self, upload: BulkFile) -> str:
        """Run the UI-defined Bulk job on one CSV; returns its statusId. Not idempotent."""
        data = self.call(
            "bulk",
            "POST",
            "/v1.0/admin/connector/job/bulkimport",
            upload=upload,
            idempotent=False,
            bulk_auth=True,
        )
        status_id = bulk_status_id(data)
        if not status_id:
            raise GainsightUnavailable("Gainsight accepted the Bulk upload but returned no statusId")
        return status_id

    def bulk_status(self, status_id: str) -> dict[str, Any]:
        """`{jobStatus, totalCount, successCount, failureCount}` from any plausible spelling."""
        data = self.call(
            "bulk_status",
            "GET",
            f"/v1.0/admin/connector/job/bulkimport/status/{status_id}",
            idempotent=True,
            bulk_auth=True,
        )
        return bulk_status(data)

    # --- the choke point --------------------------------------------------------------------

    def call(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        upload: BulkFile | None = None,
        idempotent: bool,
        bulk_auth: bool = False,
        opaque_ok: bool = False,
    ) -> Any:
        """Send one logical call (with retries) and return the envelope's `data`.

        `opaque_ok`: a 2xx answer without a JSON envelope (an empty body, say) returns None instead
        of failing; the caller then confirms the effect by a read.
        """
        settings = self.settings
        retrying = self._retrying()
        request = dict(json_body=json_body, params=params, upload=upload, bulk_auth=bulk_auth)
        try:
            answer = retrying(self._attempt, endpoint, method, path, idempotent, request)
        except _Transient as exc:
            raise GainsightUnavailable(
                f"Gainsight still failing after {settings.request_attempts} attempts: {exc.reason}"
            ) from None
        if opaque_ok and 200 <= answer.status < 300 and not isinstance(_json(answer.body), dict):
            log.info("gainsight: %s %s answered HTTP %d without a JSON envelope", method, path, answer.status)
            return None
        return self._data(method, path, answer, json_body)

    def _attempt(self, endpoint: str, method: str, path: str, idempotent: bool, request: dict[str, Any]) -> _Answer:
        family = QUOTA_FAMILY[endpoint]
        # A safe point: the answer to the previous call is booked by now, this one is not sent.
        STOP.check()
        self.limiter.acquire(family)
        answer = self._send(endpoint, method, path, idempotent, request)
        if answer.status in (401, 403) or _code(answer) in AUTH_CODES:
            if self._tokens is not None and not request["bulk_auth"] and not request.get("renewed"):
                log.info("gainsight: %s %s answered %d: renewing the OAuth token", method, path, answer.status)
                self._tokens.invalidate()
                request["renewed"] = True
                raise _Transient(f"HTTP {answer.status} on {method} {path} (token renewed)", 0.0)
            raise GainsightCredentialsRejected(
                f"Gainsight refused the {'Bulk access key' if request['bulk_auth'] else 'credentials'} on "
                f"{method} {path} (HTTP {answer.status}, {_code(answer) or 'no code'}): check "
                "DESTINATION__GAINSIGHT__ACCESS_KEY / CLIENT_ID / CLIENT_SECRET"
            )
        if answer.status == 429 or _code(answer) in RATE_LIMIT_CODES:
            self.stats.rate_limited += 1
            if family == "bulk":
                # Bulk windows are an hour long: waiting in-run is never worth it.
                raise self.limiter.block("bulk", "hour", 3600)
            wait = _retry_after(answer.headers.get("Retry-After"))
            if wait is None or wait > self.settings.max_rate_limit_wait_seconds:
                # Gainsight documents no Retry-After: wait for the next fixed window instead.
                wait = self.limiter.server_refused(family, self.settings.max_rate_limit_wait_seconds)
            raise _Transient(f"rate limited ({_code(answer) or 'HTTP 429'}) on {method} {path}", wait)
        if answer.status >= 500:
            reason = f"HTTP {answer.status} ({_code(answer) or 'no code'}) on {method} {path}"
            if not idempotent:
                raise MaybeApplied(f"{reason}: the write may or may not have been applied")
            raise _Transient(reason)
        return answer

    def _send(self, endpoint: str, method: str, path: str, idempotent: bool, request: dict[str, Any]) -> _Answer:
        headers = {"X-Request-Id": str(uuid.uuid4())}
        if request["bulk_auth"]:
            headers["accessKey"] = self.settings.bulk_key or ""
        elif self._tokens is not None:
            headers["Authorization"] = f"Bearer {self._tokens.get()}"
        else:
            headers["accesskey"] = self.settings.access_key or ""
        kwargs: dict[str, Any] = {"params": request["params"], "headers": headers}
        if request["upload"] is not None:
            upload = request["upload"]
            upload.body.seek(0)
            kwargs["data"] = upload.body  # streamed from the buffer, not copied
            headers["Content-Type"] = upload.content_type
        elif request["json_body"] is not None:
            kwargs["data"] = json.dumps(request["json_body"], ensure_ascii=False, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        self.stats.count(endpoint)
        url = self.settings.base_url + path
        try:
            response = self._session.request(method, url, timeout=(10.0, self.settings.timeout_seconds), **kwargs)
        except requests.ConnectTimeout as exc:
            raise _Transient(f"cannot connect for {method} {path} ({type(exc).__name__})") from None
        except requests.ConnectionError as exc:
            self._refuse_on_first_contact(url, exc)
            if _never_connected(exc):
                raise _Transient(f"cannot connect for {method} {path}") from None
            return self._lost(method, path, idempotent, type(exc).__name__)
        except (requests.Timeout, urllib3.exceptions.HTTPError) as exc:
            return self._lost(method, path, idempotent, type(exc).__name__)
        self._first_answer(url, response.status_code)
        return _Answer(response.status_code, response.headers, response.content)

    def _refuse_on_first_contact(self, url: str, exc: requests.ConnectionError) -> None:
        """DNS, TLS or a refused connection before the tenant ever answered: base_url is wrong."""
        problem = self._contact.connection_problem(url, exc, BASE_URL)
        if problem:
            raise GainsightSettingError(problem) from None

    def _first_answer(self, url: str, status: int) -> None:
        """A 404 before the tenant ever answered means a wrong base path; a 2xx proves the host."""
        problem = self._contact.status_problem(url, status, BASE_URL)
        if problem:
            raise GainsightSettingError(problem)
        if status < 300:
            self._contact.succeeded(BASE_URL)

    def _lost(self, method: str, path: str, idempotent: bool, what: str) -> _Answer:
        reason = f"{what} on {method} {path}: no answer"
        if not idempotent:
            raise MaybeApplied(f"{reason}; the write may or may not have been applied")
        raise _Transient(reason)

    def _data(self, method: str, path: str, answer: _Answer, json_body: Any = None) -> Any:
        body = _json(answer.body)
        if not isinstance(body, dict) or "result" not in body:
            raise GainsightUnavailable(
                f"Gainsight answered {method} {path} with HTTP {answer.status} and no JSON envelope "
                f"(content type {answer.headers.get('Content-Type', 'unknown')})"
            )
        if body.get("result") is True and answer.status < 400:
            return body.get("data")
        code, description = body.get("errorCode"), body.get("errorDesc") or body.get("detail")
        rejected = GainsightRejected(
            f"Gainsight rejected {method} {path}: HTTP {answer.status}, {code or body.get('title') or 'no code'}"
            f"{f' ({description})' if description else ''}",
            answer.status,
            code or body.get("title"),
            description,
            body.get("data"),
        )
        if rejected.code in CONFIGURATION_CODES:
            raise self._unknown_name(path, json_body, rejected)
        raise rejected

    def _unknown_name(self, path: str, json_body: Any, rejected: GainsightRejected) -> GainsightSettingError:
        """An unknown object, field or Bulk job: name it and the setting that put it into the request."""
        if rejected.code == "BULK_JOB_NOT_FOUND":
            named = {str(self.settings.response_bulk_job_id): setting("response_bulk_job_id")}
        else:
            names = re.findall(r"\(([^()=]+)\)", rejected.description or "") + [path.rsplit("/", 1)[-1]]
            if isinstance(json_body, dict):
                names += [str(name) for name in json_body.get("objectNames") or []]
            errors = rejected.data.get("errors") if isinstance(rejected.data, dict) else None
            names += [str(e.get("fieldName")) for e in errors or [] if isinstance(e, dict)]
            found = ((name, self.settings.setting_for(name.strip().split(".")[-1])) for name in names)
            named = {name.strip(): key for name, key in found if key is not None}
        if not named:
            return GainsightSettingError(
                f"{rejected}: an object or field the connector uses does not exist in this Gainsight tenant; check "
                "destination.gainsight.response_object / response_fields / company_object / company_key_field"
            )
        what = "; ".join(f"{name} does not exist in this Gainsight tenant, check {key}" for name, key in named.items())
        return GainsightSettingError(f"{rejected}: {what}")

    def _request_token(self) -> dict[str, Any]:
        """M2M OAuth grant: Basic client credentials, form body (reference §2.3)."""
        settings = self.settings

        def grant() -> _Answer:
            self.stats.count("token")
            try:
                response = self._session.post(
                    settings.base_url + TOKEN_PATH,
                    auth=(settings.client_id or "", settings.client_secret or ""),
                    data={"grant_type": "client_credentials"},
                    timeout=(10.0, settings.timeout_seconds),
                )
            except requests.ConnectionError as exc:
                self._refuse_on_first_contact(settings.base_url + TOKEN_PATH, exc)
                raise _Transient(f"{type(exc).__name__} on POST {TOKEN_PATH}") from None
            except requests.Timeout as exc:
                raise _Transient(f"{type(exc).__name__} on POST {TOKEN_PATH}") from None
            self._first_answer(settings.base_url + TOKEN_PATH, response.status_code)
            if response.status_code == 429 or response.status_code >= 500:
                raise _Transient(f"HTTP {response.status_code} on POST {TOKEN_PATH}")
            return _Answer(response.status_code, response.headers, response.content)

        retrying = self._retrying()
        try:
            answer = retrying(grant)
        except _Transient as exc:
            raise GainsightUnavailable(f"Gainsight token endpoint still failing: {exc.reason}") from None
        body = _json(answer.body)
        if answer.status == 200 and isinstance(body, dict) and body.get("access_token"):
            return {"access_token": body["access_token"], "expires_in": body.get("expires_in") or 86_400}
        if answer.status in (400, 401, 403):
            raise GainsightCredentialsRejected(
                f"Gainsight's token endpoint refused the OAuth client credentials (HTTP {answer.status}): "
                "check DESTINATION__GAINSIGHT__CLIENT_ID / CLIENT_SECRET"
            )
        raise GainsightUnavailable(f"Gainsight's token endpoint answered HTTP {answer.status} without a token")

    def _retrying(self) -> tenacity.Retrying:
        """The retry policy of one logical call: transient failures only, with `_wait`'s delays."""
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=tenacity.stop_after_attempt(self.settings.request_attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.wait is not None:
            return exc.wait
        base = self.settings.retry_backoff_seconds * (2 ** (state.attempt_number - 1))
        return min(60.0, base * random.uniform(0.8, 1.2))

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        reason = exc.reason if isinstance(exc, _Transient) else repr(exc)
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "gainsight: %s; retry %d/%d in %.1f s", reason, state.attempt_number, self.settings.request_attempts - 1, wait
        )


def field_length(spec: Mapping[str, Any]) -> int | None:
    """A described field's maximum length, where the metadata gives one."""
    length = (spec.get("meta") or {}).get("length") or spec.get("length")
    return length if isinstance(length, int) and length > 0 else None


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the TCP connection was never made, so the request cannot have been applied.

    requests wraps urllib3's `MaxRetryError`, whose `reason` is a `NewConnectionError` for a
    refused or unresolvable connection.
    """
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _retry_after(value: str | None) -> float | None:
    """Delta-seconds `Retry-After`, should a gateway send one (Gainsight documents none)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _code(answer: _Answer) -> str | None:
    body = _json(answer.body)
    return body.get("errorCode") if isinstance(body, dict) else None


def _and(conditions: list[dict[str, Any]]) -> str:
    return " AND ".join(str(c["alias"]) for c in conditions)


def _written(data: Any, expected: int, obj: str) -> list[dict]:
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list) or len(records) != expected:
        raise GainsightUnavailable(
            f"Gainsight wrote to {obj} but answered {len(records) if isinstance(records, list) else 'no'} "
            f"records for {expected} sent"
        )
    return records
