"""The CustomerGauge v7 sandbox: token endpoint, sync endpoints and emulator-only controls over HTTP.

It follows reference §5 and is strict where the real API is (or is assumed to be) strict: bad
credentials, missing/expired tokens and malformed queries get the vendor's status codes and error
envelopes, so a client that passes against the sandbox does not rely on leniency production lacks.
"""

from __future__ import annotations

import hmac
import random
import threading
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from sandbox.common.clock import SandboxClock
from sandbox.common.server import Request, Response, SandboxServer, json_response
from sandbox.common.tokens import TokenIssuer, basic_credentials
from sandbox.customergauge.data import RecordFactory, SeedSpec
from sandbox.customergauge.limits import RateLimit
from sandbox.customergauge.query import InvalidQuery, parse_sync_query
from sandbox.customergauge.store import RecordStore
from sandbox.customergauge.webhooks import WebhookSender, WebhookTarget

RESPONSES_PATH = "/v7/rest/sync/responses"
NON_RESPONSES_PATH = "/v7/rest/sync/non-responses"
TOKEN_PATH = "/oauth2/token"
RESPONSE_EXPANSIONS = ("properties", "drivers", "tags", "questions")
NON_RESPONSE_EXPANSIONS = ("properties",)  # the other with[] values are accepted and ignored there
_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


#: The empty last page per ``last_page_cursor`` [assumed variants]: ``number`` = the incoming cursor
#: (the reference's reading, rendered by the store), ``null`` = ``"next": null``, ``missing`` = no ``next``.
_LAST_PAGES: dict[str, bytes | None] = {
    "number": None,
    "null": b'{"data":[],"cursor":{"next":null}}',
    "missing": b'{"data":[],"cursor":{}}',
}


class CustomerGaugeSandbox(SandboxServer):
    """A local CustomerGauge v7 API on 127.0.0.1 (token endpoint on the same base URL).

    >>> with CustomerGaugeSandbox("cg-id", "cg-secret", SeedSpec(responses=10)) as cg:
    ...     cg.base_url  # doctest: +SKIP
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        seed: SeedSpec | None = None,
        token_lifetime: float = 3600.0,
        port: int = 0,
        last_page_cursor: str = "number",
        time_scale: float = 1.0,
        requests_per_minute: int | None = None,
        webhook: WebhookTarget | None = None,
    ) -> None:
        super().__init__(port, SandboxClock(time_scale))
        #: Emulator-only outgoing webhooks (webhooks.py): one call per response added or edited.
        self.webhooks = WebhookSender(webhook) if webhook is not None else None
        if last_page_cursor not in _LAST_PAGES:
            raise ValueError(f"last_page_cursor must be one of {sorted(_LAST_PAGES)}")
        self.last_page_cursor = last_page_cursor
        self._credentials = (client_id.encode(), client_secret.encode())
        self._tokens = TokenIssuer(token_lifetime, self.clock)
        self._rate_limit = RateLimit(requests_per_minute, self.clock) if requests_per_minute else None
        spec = seed if seed is not None else SeedSpec()
        self._factory = RecordFactory(spec)
        self._factory_lock = threading.Lock()
        self._responses = RecordStore(RESPONSE_EXPANSIONS, 5_000_000, random.Random(f"{spec.seed}:sync"))
        self._non_responses = RecordStore(
            NON_RESPONSE_EXPANSIONS, 7_000_000, random.Random(f"{spec.seed}:non-response-sync")
        )
        responses, non_responses = self._factory.seed()
        self._responses.extend(responses)
        self._non_responses.extend(non_responses)

        self.route("POST", TOKEN_PATH, self._grant_token)
        self.route("GET", RESPONSES_PATH, lambda request: self._sync(request, self._responses))
        self.route("GET", NON_RESPONSES_PATH, lambda request: self._sync(request, self._non_responses))
        self.route("POST", r"/_sandbox/responses", self._control_add_responses)
        self.route("POST", r"/_sandbox/responses/([0-9]+)", self._control_edit_response)

    def close(self) -> None:
        if self.webhooks is not None:
            self.webhooks.close()
        super().close()

    # -- Python API for tests, the demo and benchmarks ---------------------------------------------

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    @property
    def records(self) -> list[dict[str, Any]]:
        """Current response records in sync-id order, raw API shape with every expansion."""
        return self._responses.records()

    def accounts(self) -> dict[str, str]:
        """Account number ("Account Number" property) -> account name, of every stored response, by
        number: what a CRM would hold, for seeding a Gainsight tenant's Companies."""
        accounts: dict[str, str] = {}
        for record in self.records:
            number = next((p["reference"] for p in record.get("properties") or [] if p.get("field") == "Account Number"), None)
            name = (record.get("account") or {}).get("name")
            if number and name and "nps" in record:
                accounts.setdefault(number, name)
        return dict(sorted(accounts.items()))

    @property
    def token_requests(self) -> int:
        """How many tokens were granted so far."""
        return self._tokens.granted

    def add_responses(self, count: int, responded_at: datetime | None = None) -> list[int]:
        """Emulator-only: append ``count`` new valid responses; returns their CGIDs.

        Without ``responded_at`` they were answered a few minutes ago; with it (naive = UTC) they are
        late arrivals: an old response date but new sync ids, so only a cursor-based read sees them
        after its stored cursor, and a period filter on the old date matches them.
        """
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._factory_lock:
            records = self._factory.fresh_responses(count, responded_at)
            self._responses.extend(records)
        if self.webhooks is not None:
            for record in records:
                self.webhooks.send(record)
        return [record["number_customergauge"] for record in records]

    def edit_response(self, cgid: int, **changes: Any) -> int:
        """Emulator-only: change top-level keys of a response; it is re-emitted at a new, higher sync id
        (moves to the end of the feed). Returns that sync id; unknown CGID -> ``KeyError``."""
        sync_id = self._responses.edit(cgid, changes)
        if self.webhooks is not None:
            self.webhooks.send(next(record for record in self.records if record["number_customergauge"] == cgid))
        return sync_id

    def add_raw_response(self, record: dict[str, Any]) -> int:
        """Emulator-only: append an arbitrary (possibly invalid) record as is; returns its sync id.
        A record carrying the CGID of an existing one replaces it (one version per CGID)."""
        return self._responses.append(record)

    def add_raw_non_response(self, record: dict[str, Any]) -> int:
        """Emulator-only: like ``add_raw_response``, on the non-responses feed."""
        return self._non_responses.append(record)

    def revoke_tokens(self) -> None:
        """Emulator-only: invalidate every issued token (the next API call gets 401)."""
        self._tokens.revoke_all()

    def hold(self, seconds: float) -> None:
        """A ``delay`` fault waits on the sandbox clock: real time at ``time_scale=1``; on a frozen
        clock the answer is held until a test advances the clock past it."""
        self.clock.sleep(seconds)

    # -- CustomerGauge API ---------------------------------------------------------------------------

    def method_not_allowed(self, request: Request, allowed: list[str]) -> Response:
        """Laravel's wording for a route that exists with another method."""
        supported = ", ".join(allowed)
        return json_response(
            405,
            {"message": f"The {request.method} method is not supported for this route. Supported methods: {supported}."},
            {"Allow": supported},
        )

    def _sync(self, request: Request, store: RecordStore) -> Response:
        token = self._bearer(request)
        if token is None:
            return json_response(401, {"message": "Unauthenticated."})
        if self._rate_limit is not None and (wait := self._rate_limit.admit(token)) is not None:
            return self.too_many_attempts({"Retry-After": str(self.clock.retry_after(wait))}, self._rate_limit.per_minute)
        try:
            query = parse_sync_query(request.query)
        except InvalidQuery as invalid:
            return json_response(422, {"message": "The given data was invalid.", "errors": invalid.errors})
        body = store.page(query.cursor, query.per_page, query.expansions, query.period)
        if body.startswith(b'{"data":[]'):
            body = _LAST_PAGES[self.last_page_cursor] or body
        return Response(200, body)

    def _bearer(self, request: Request) -> str | None:
        """The request's valid, unexpired bearer token, if it has one."""
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        return token if scheme.lower() == "bearer" and token and self._tokens.is_valid(token) else None

    def _grant_token(self, request: Request) -> Response:
        """OAuth2 client credentials from the form body, the query string (viadot) or HTTP Basic."""
        params = _oauth_params(request)
        if params is None:
            return _oauth_error("invalid_request")
        grant_type = params.get("grant_type")
        if not grant_type:
            return _oauth_error("invalid_request")
        if grant_type != "client_credentials":
            return _oauth_error("unsupported_grant_type")
        authorization = request.headers.get("Authorization") or ""
        if authorization[:6].lower() == "basic ":
            if "client_secret" in params:  # RFC 6749 §2.3: one client authentication method per request
                return _oauth_error("invalid_request")
            basic = basic_credentials(authorization)
            if basic is None:
                return _oauth_error("invalid_client")
            client_id, client_secret = basic
        else:
            client_id, client_secret = params.get("client_id", ""), params.get("client_secret", "")
            if not client_id or not client_secret:
                return _oauth_error("invalid_request")
        expected_id, expected_secret = self._credentials
        # Both comparisons always run: no timing hint about which half was wrong.
        id_ok = hmac.compare_digest(client_id.encode(), expected_id)
        secret_ok = hmac.compare_digest(client_secret.encode(), expected_secret)
        if not (id_ok and secret_ok):
            return _oauth_error("invalid_client")
        return json_response(
            200,
            {"access_token": self._tokens.issue(), "expires_in": self._tokens.expires_in, "token_type": "Bearer"},
            {"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    # -- emulator-only controls -----------------------------------------------------------------------

    def _control_add_responses(self, request: Request) -> Response:
        """Emulator-only: ``{"count": n, "responded_at": "YYYY-MM-DD HH:MM:SS" | null}`` -> ``{"ids": [...]}``."""
        try:
            body = request.json()
            if not isinstance(body, dict) or set(body) - {"count", "responded_at"}:
                raise ValueError('body must be {"count": n, "responded_at": "YYYY-MM-DD HH:MM:SS" | null}')
            count = body.get("count", 1)
            if type(count) is not int:
                raise ValueError("count must be an integer")
            when = body.get("responded_at")
            responded_at = datetime.strptime(when, _DATETIME_FORMAT) if when is not None else None
            ids = self.add_responses(count, responded_at)
        except (TypeError, ValueError) as exc:
            return json_response(400, {"message": str(exc)})
        return json_response(201, {"ids": ids})

    def _control_edit_response(self, request: Request, cgid: str) -> Response:
        """Emulator-only: the JSON body's top-level keys replace the record's; -> its new sync id."""
        try:
            changes = request.json()
            if not isinstance(changes, dict):
                raise ValueError("body must be a JSON object of top-level changes")
            sync_id = self.edit_response(int(cgid), **changes)
        except KeyError as exc:
            return json_response(404, {"message": str(exc.args[0])})
        except (TypeError, ValueError) as exc:
            return json_response(400, {"message": str(exc)})
        return json_response(200, {"number_customergauge": int(cgid), "sync_id": sync_id})


def _oauth_params(request: Request) -> dict[str, str] | None:
    """Query string and form body merged; ``None`` if malformed or any parameter is repeated."""
    form: dict[str, list[str]] = {}
    if request.body:
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return None
        try:
            form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return None
    params: dict[str, str] = {}
    for source in (request.query, form):
        for name, values in source.items():
            if len(values) > 1 or name in params:  # RFC 6749 §3.2: no parameter more than once
                return None
            params[name] = values[0]
    return params


def _oauth_error(code: str) -> Response:
    return json_response(400, {"error": code})
