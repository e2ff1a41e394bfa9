"""The one place that sends HTTP to Gainsight: its auth, its envelope and its quota.

The wire itself (timeouts, retries with backoff, `Retry-After` in both forms, first-contact setting
errors, call counting, redaction of keys and tokens from every message and log line) is
`connector_common.http`'s. Here: authentication (access key, or M2M OAuth with a cached token
renewed before expiry and once more on a 401), the quota limiter (every call is counted before it
is sent), and the classification of Gainsight's answers (DESIGN §7), envelope first, status second:

- 429 / `GS_APIG_2404` / `GU_2400`: honour `Retry-After` if a gateway sends one, else wait for the
  next window of the family (Gainsight documents none), or defer with `QuotaExhausted` if that is
  longer than the run will wait.
- 5xx and lost answers: retried with backoff when the call is idempotent (query, update by key,
  People upsert, Timeline insert with its ExternalId). A non-idempotent write (insert, Bulk upload)
  raises `MaybeApplied` instead, and the caller reconciles by key before writing again. A
  connection that was never established is always safe to retry.
- Other 4xx and `result: false`: `GainsightRejected` with the vendor code; never retried as is. An
  unknown object, field or Bulk job is a `GainsightSettingError` naming the setting that holds it.
- Before the tenant has answered once in this run, a TLS failure, an unresolvable host, a refused
  connection or a 404 is a `GainsightSettingError` naming the host and `base_url`, not retried.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from connector_common.http import Answer, Call, RetryPolicy, Transient, Vendor, VendorClient
from connector_common.stop import STOP
from connector_common.tokens import TokenCache

from .answers import TimelineOutcome, bulk_status, bulk_status_id, timeline_outcome
from .errors import (
    GainsightCredentialsRejected,
    GainsightError,
    GainsightRejected,
    GainsightSettingError,
    GainsightUnavailable,
    MaybeApplied,
)
from .multipart import BulkFile
from .quota import QuotaLimiter
from .settings import SECRET_KEYS, GainsightSettings, setting
from .specs import SPECS

log = logging.getLogger("nps.gainsight")

TOKEN_PATH = "/v1/users/m2m/oauth/token"
QUERY_LIMIT = 5000  # rows per query call (reference §4.4)
WRITE_LIMIT = 50  # records per sync write (reference §4.1)

# Endpoint family (what the summary counts) -> quota family (what Gainsight limits); each
# object's writes count against the family its spec names.
QUOTA_FAMILY = {
    "query": "sync",
    "bulk_status": "sync",
    "bulk": "bulk",
    "people_bulk_status": "sync",
    **{spec.endpoint: spec.quota_family for spec in SPECS},
}
RATE_LIMIT_CODES = frozenset({"GS_APIG_2404", "GU_2400"})
AUTH_CODES = frozenset({"GS_APIG_2401", "GS_APIG_2402", "GSOBJ_1024"})
NO_DATA_DESCRIPTION = "no data found"
# Codes no record's data can cause: an object, field or Bulk job named in the settings does not
# exist in this tenant. Retrying or bisecting cannot help; the operator has to fix a setting.
# BULK_JOB_NOT_FOUND is the sandbox's code [assumed]: Gainsight documents none for an unknown job.
CONFIGURATION_CODES = frozenset({"GSOBJ_1002", "GSOBJ_1023", "OBJECT_NOT_FOUND", "BULK_JOB_NOT_FOUND"})
BASE_URL = setting("base_url")
TOKEN_FAMILY = "token"  # counted in the summary, never against a quota


@dataclass
class GainsightCall(Call):
    """A call plus which credential it carries and whether this call already renewed the token."""

    bulk_auth: bool = False  # the Bulk connection's access key instead of the API credentials
    renewed: bool = False


class GainsightClient(VendorClient[GainsightCall]):
    """Authenticated, rate-limited, retrying access to the Gainsight CS REST APIs."""

    vendor = Vendor("Gainsight", GainsightSettingError, GainsightUnavailable, "the next run continues from the ledger")

    def __init__(
        self,
        settings: GainsightSettings,
        limiter: QuotaLimiter,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = STOP.wait,
    ) -> None:
        policy = RetryPolicy(
            max_attempts=settings.request_attempts,
            backoff=settings.retry_backoff_seconds,
            max_wait=settings.max_rate_limit_wait_seconds,
            read_timeout=settings.timeout_seconds,
        )
        super().__init__(policy, log, session, sleep)
        self.settings = settings
        self.limiter = limiter
        self.redact.keep(*(getattr(settings, key) for key in SECRET_KEYS))
        self._tokens = TokenCache(self._request_token) if settings.uses_oauth else None

    @property
    def token_grants(self) -> int:
        return self._tokens.grants if self._tokens else 0

    @property
    def reached_tenant(self) -> bool:
        """Whether the tenant has answered a call successfully in this run."""
        return self._contact.reached(BASE_URL)

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

    def query_all(
        self, obj: str, select: list[str], conditions: list[dict[str, Any]], expression: str | None = None
    ) -> list[dict[str, Any]]:
        """Every row matching: pages of ≤5000 by `offset` in Gsid order until a short page (reference
        §4.4). Rows are deduplicated by Gsid, so a tenant whose offset counts from 1 ("pass another
        API call with Offset as 5001") repeats a row at most, never loses one."""
        rows: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = self.query(obj, sorted({"Gsid", *select}), conditions, expression, QUERY_LIMIT, offset, {"Gsid": "asc"})
            for row in page:
                rows.setdefault(str(row.get("Gsid")), row)
            if len(page) < QUERY_LIMIT:
                return list(rows.values())
            offset += QUERY_LIMIT

    def find_people(self, emails: list[str], select: list[str]) -> dict[str, dict[str, Any]]:
        """Persons whose Email is one of `emails` (≤5000 values a read), by lower-cased Email: the
        People API resolves persons by Email, case-insensitively [assumed] (reference §4.6)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(emails), QUERY_LIMIT):
            condition = {"name": "Email", "alias": "A", "value": emails[start : start + QUERY_LIMIT], "operator": "IN"}
            for row in self.query_all("Person", ["Email", *select], [condition], "A"):
                found.setdefault(str(row.get("Email") or "").lower(), row)
        return found

    def find_company_people(self, links: Mapping[str, str]) -> set[tuple[str, str]]:
        """Which (person Gsid, Company Gsid) pairs of `links` (person -> Company) have their Company
        Person row: `Company_Person` read by person and Company, ≤5000 values of each a read."""
        persons = list(links)
        held: set[tuple[str, str]] = set()
        for start in range(0, len(persons), QUERY_LIMIT):
            chunk = persons[start : start + QUERY_LIMIT]
            companies = sorted({links[person] for person in chunk})
            conditions = [
                {"name": "Person_ID", "alias": "A", "value": chunk, "operator": "IN"},
                {"name": "Company_ID", "alias": "B", "value": companies, "operator": "IN"},
            ]
            for row in self.query_all("Company_Person", ["Person_ID", "Company_ID"], conditions, "A AND B"):
                pair = (str(row.get("Person_ID")), str(row.get("Company_ID")))
                if links.get(pair[0]) == pair[1]:
                    held.add(pair)
        return held

    def upsert_person(self, person: dict[str, Any]) -> dict[str, Any]:
        """People API: one person per call, resolved by Email, so a re-send is harmless."""
        data = self.call("people", "PUT", "/v1/peoplemgmt/v1.0/people", json_body=person, idempotent=True)
        return data if isinstance(data, dict) else {}

    def upsert_people_async(self, people: list[dict[str, Any]], path: str) -> str:
        """Async bulk People API: ≤50 persons per call, resolved by Email (a re-send is harmless);
        returns the call's statusId (reference §4.6). The body wrapper is a setting (unknown)."""
        body: Any = people if self.settings.people.bulk_body == "list" else {"records": people}
        data = self.call("people_bulk", "PUT", path, json_body=body, idempotent=True)
        status_id = data.get("statusId") or data.get("id") if isinstance(data, dict) else data
        if not isinstance(status_id, (str, int)) or isinstance(status_id, bool) or status_id == "":
            raise GainsightUnavailable(f"Gainsight accepted PUT {path} but returned no statusId")
        return str(status_id)

    def people_async_status(self, path: str) -> dict[str, Any]:
        """One status read of an async People upsert (`path` holds its statusId); the raw `data`."""
        data = self.call("people_bulk_status", "GET", path, idempotent=True)
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

    def delete_record(self, endpoint: str, obj: str, gsid: str) -> GainsightError | None:
        """`DELETE /v1/data/objects/{obj}/{gsid}` (reference §4.4, §4.5: [observed] path). Deleting twice is
        harmless, so it is retried like a read. A refusal is returned, not raised: an already deleted
        record answers `GSOBJ_1004` [documented for an invalid GSID] or 404, and only a read says
        whether the record is gone (`forget` confirms every delete by one)."""
        try:
            self.call(endpoint, "DELETE", f"/v1/data/objects/{obj}/{gsid}", idempotent=True, opaque_ok=True)
        except (GainsightRejected, GainsightUnavailable) as exc:  # a tenant's HTML 404 is "unavailable"
            return exc
        return None

    def delete_activity(self, activity_id: str, in_body: bool) -> GainsightError | None:
        """`DELETE /v1/ant/es/activity` by activityId (reference §4.7: [assumed] path, shape unknown): the
        id as the query parameter `activityId`, or (`in_body`) as `{"activityId": ...}`. A refusal is
        returned, not raised, as for `delete_record`: a read says whether the activity is gone."""
        where: dict[str, Any] = {"json_body": {"activityId": activity_id}} if in_body else {"params": {"activityId": activity_id}}
        try:
            self.call("timeline", "DELETE", "/v1/ant/es/activity", idempotent=True, opaque_ok=True, **where)
        except (GainsightRejected, GainsightUnavailable) as exc:  # a tenant's HTML 404 is "unavailable"
            return exc
        return None

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
        headers: dict[str, str] = {}
        data: Any = None
        if upload is not None:
            data, headers["Content-Type"] = upload.body, upload.content_type  # streamed, not copied
        elif json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        url = self.settings.base_url + path
        call = GainsightCall(method, url, endpoint, BASE_URL, idempotent, params, data, headers, bulk_auth=bulk_auth)
        with self.redacting():
            answer = self.send(call)
            if opaque_ok and 200 <= answer.status < 300 and not isinstance(answer.json(), dict):
                self.log.info("gainsight: %s answered HTTP %d without a JSON envelope", call, answer.status)
                return None
            return self._data(call, answer, json_body)

    def before_send(self, call: GainsightCall) -> dict[str, str]:
        """Auth headers of one attempt, after the quota limiter let it through (token grants are
        neither counted nor authenticated this way)."""
        headers = {"X-Request-Id": str(uuid.uuid4())}
        if call.family == TOKEN_FAMILY:
            return headers
        self.limiter.acquire(self.quota_family(call.family))
        if call.bulk_auth:
            headers["accessKey"] = self.settings.bulk_key or ""
        elif self._tokens is not None:
            headers["Authorization"] = f"Bearer {self._tokens.get()}"
        else:
            headers["accesskey"] = self.settings.access_key or ""
        return headers

    def classify(self, call: GainsightCall, answer: Answer) -> Answer:
        """Credentials, quota and server errors, from the envelope's code first and the status second."""
        if call.family == TOKEN_FAMILY:
            return super().classify(call, answer)
        code = _code(answer)
        if answer.status in (401, 403) or code in AUTH_CODES:
            if self._tokens is not None and not call.bulk_auth and not call.renewed:
                self.log.info("gainsight: %s answered %d: renewing the OAuth token", call, answer.status)
                self._tokens.invalidate()
                call.renewed = True
                raise Transient(f"HTTP {answer.status} on {call} (token renewed)", 0.0)
            raise GainsightCredentialsRejected(
                f"Gainsight refused the {'Bulk access key' if call.bulk_auth else 'credentials'} on "
                f"{call} (HTTP {answer.status}, {code or 'no code'}): check "
                "DESTINATION__GAINSIGHT__ACCESS_KEY / CLIENT_ID / CLIENT_SECRET"
            )
        if answer.status == 429 or code in RATE_LIMIT_CODES:
            raise self._rate_limited(call, answer, code)
        if answer.status >= 500:
            reason = f"HTTP {answer.status} ({code or 'no code'}) on {call}"
            if not call.idempotent:
                raise MaybeApplied(f"{reason}: the write may or may not have been applied")
            raise self.transient(reason, answer)
        return answer

    def quota_family(self, endpoint: str) -> str:
        return quota_family(endpoint, self.settings)

    def unanswered(self, call: GainsightCall, reason: str) -> Exception:
        return MaybeApplied(f"{reason}: no answer; the write may or may not have been applied")

    def _rate_limited(self, call: GainsightCall, answer: Answer, code: str | None) -> Exception:
        """Wait as the server asks, else for the family's next window; defer what does not fit."""
        self.stats.rate_limited += 1
        family = self.quota_family(call.family)
        if family == "bulk":
            # Bulk windows are an hour long: waiting in-run is never worth it.
            return self.limiter.block("bulk", "hour", 3600)
        wait = answer.retry_after()
        if wait is None or wait > self.policy.max_wait:
            wait = self.limiter.server_refused(family, self.policy.max_wait)
        return Transient(f"rate limited ({code or 'HTTP 429'}) on {call}", wait)

    def _data(self, call: GainsightCall, answer: Answer, json_body: Any = None) -> Any:
        """The envelope's `data`, or the vendor error it reports (a 200 with `result: false` too)."""
        body = answer.json()
        if not isinstance(body, dict) or "result" not in body:
            raise GainsightUnavailable(
                f"Gainsight answered {call} with HTTP {answer.status} and no JSON envelope "
                f"(content type {answer.headers.get('Content-Type', 'unknown')})"
            )
        if body.get("result") is True and answer.status < 400:
            return body.get("data")
        code, description = body.get("errorCode"), body.get("errorDesc") or body.get("detail")
        rejected = GainsightRejected(
            f"Gainsight rejected {call}: HTTP {answer.status}, {code or body.get('title') or 'no code'}"
            f"{f' ({description})' if description else ''}",
            answer.status,
            code or body.get("title"),
            description,
            body.get("data"),
        )
        if rejected.code in CONFIGURATION_CODES:
            raise self._unknown_name(call.url, json_body, rejected)
        raise rejected

    def _unknown_name(self, url: str, json_body: Any, rejected: GainsightRejected) -> GainsightSettingError:
        """An unknown object, field or Bulk job: name it and the setting that put it into the request."""
        if rejected.code == "BULK_JOB_NOT_FOUND":
            named = {str(self.settings.response_bulk_job_id): setting("response_bulk_job_id")}
        else:
            names = re.findall(r"\(([^()=]+)\)", rejected.description or "") + [url.rsplit("/", 1)[-1]]
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
        call = GainsightCall(
            "POST",
            settings.base_url + TOKEN_PATH,
            TOKEN_FAMILY,
            BASE_URL,
            data={"grant_type": "client_credentials"},
            auth=(settings.client_id or "", settings.client_secret or ""),
        )
        answer = self.send(call)
        body = answer.json()
        if answer.status == 200 and isinstance(body, dict) and body.get("access_token"):
            self.redact.keep(str(body["access_token"]))
            return {"access_token": body["access_token"], "expires_in": body.get("expires_in") or 86_400}
        if answer.status in (400, 401, 403):
            raise GainsightCredentialsRejected(
                f"Gainsight's token endpoint refused the OAuth client credentials (HTTP {answer.status}): "
                "check DESTINATION__GAINSIGHT__CLIENT_ID / CLIENT_SECRET"
            )
        raise GainsightUnavailable(f"Gainsight's token endpoint answered HTTP {answer.status} without a token")


def quota_family(endpoint: str, settings: GainsightSettings) -> str:
    """The quota an endpoint's calls count against; the async People API's is a setting (unknown)."""
    if endpoint == "people_bulk":
        return settings.people.bulk_quota_family
    return QUOTA_FAMILY[endpoint]


def field_length(spec: Mapping[str, Any]) -> int | None:
    """A described field's maximum length, where the metadata gives one."""
    length = (spec.get("meta") or {}).get("length") or spec.get("length")
    return length if isinstance(length, int) and length > 0 else None


def _code(answer: Answer) -> str | None:
    body = answer.json()
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
