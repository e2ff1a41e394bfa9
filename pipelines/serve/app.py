"""The HTTP side of `serve`: the webhook endpoint, `/healthz` and `/metrics` (Starlette).

`POST /webhooks/customergauge` answers 202 only after the events are committed to the spool. In
order, a call is refused with 413 (body over `max_body_bytes`, counted while it is read, so an
oversized body is never held whole), 401/403 (authentication, `auth.py`), 400 (not JSON) or 422
(JSON of another shape); a refused call stores nothing. Accepted bodies (reference §3.7: the real
contract is unknown, so every plausible shape is taken):

    {<record>}                  one record in the v7 sync API's shape
    {"data": <record>}          the same in an envelope (other envelope keys, e.g. "event", ignored)
    {"data": [<record>, ...]}   several
    {"number_customergauge": N} id only (also inside "data"): the worker looks the record up
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sources.customergauge.events import ID_KEY

from .auth import Authenticator
from .metrics import CONTENT_TYPE, Metrics
from .spool import Event, Spool
from .worker import Worker

log = logging.getLogger("nps.serve")

WEBHOOK_PATH = "/webhooks/customergauge"
ENVELOPE_KEYS = frozenset({ID_KEY, "event"})  # an object with no other key is an id-only event


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def build_app(spool: Spool, auth: Authenticator, metrics: Metrics, worker: Worker, max_body_bytes: int) -> Starlette:
    async def webhook(request: Request) -> Response:
        try:
            body = await read_body(request, max_body_bytes)
            refusal = auth.refuse(request.headers, body)
            if refusal is not None:
                raise Refused(refusal.status, refusal.reason)
            events = parse_events(body)
        except Refused as refused:
            metrics.rejected.labels(str(refused.status)).inc()
            log.warning("serve: refused a webhook call from %s (HTTP %d): %s", _peer(request), refused.status, refused.reason)
            headers = {"WWW-Authenticate": 'Basic realm="nps"'} if refused.status == 401 and auth.basic else None
            return JSONResponse({"error": refused.reason}, refused.status, headers)
        try:
            await run_in_threadpool(spool.append, events)
        except Exception as exc:  # the sender retries a 503; nothing was acknowledged
            log.error("serve: could not spool %d event(s): %s", len(events), exc)
            return JSONResponse({"error": "spool unavailable, retry later"}, 503, {"Retry-After": "5"})
        for event in events:
            metrics.received.labels("id" if event.record is None else "record").inc()
        worker.notify()
        return JSONResponse({"accepted": len(events)}, 202)

    async def healthz(request: Request) -> Response:
        def run(last: Any) -> dict[str, Any] | None:
            return None if last is None else {"mode": last.mode, "exit_code": last.exit_code, "ended_at": last.ended_at.isoformat()}

        body = {
            "status": "ok" if worker.alive else "worker stopped",
            "last_run": run(worker.last_run),
            "last_successful_run": run(worker.last_success),
            "spool_depth": await run_in_threadpool(spool.depth),
        }
        return JSONResponse(body, 200 if worker.alive else 503)

    async def metrics_page(request: Request) -> Response:
        return Response(await run_in_threadpool(metrics.render), headers={"Content-Type": CONTENT_TYPE})

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ]
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `limit` bytes (or declares it will)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise Refused(413, f"body of {int(declared)} bytes is over max_body_bytes ({limit})")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Refused(413, f"body is over max_body_bytes ({limit})")
    return bytes(body)


def parse_events(body: bytes) -> list[Event]:
    """The events of an authenticated body, or `Refused` (400 not JSON, 422 another shape)."""
    try:
        document = json.loads(body, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "body is not JSON") from None
    records = document.get("data") if isinstance(document, dict) and "data" in document else document
    records = records if isinstance(records, list) else [records]
    if not records:
        raise Refused(422, "data holds no record")
    events = []
    for record in records:
        if not isinstance(record, dict):
            raise Refused(422, "each event must be a JSON object (a v7 response record)")
        number = record.get(ID_KEY)
        if type(number) is not int or number <= 0:
            raise Refused(422, f"each event needs {ID_KEY}, a positive integer")
        whole = bool(set(record) - ENVELOPE_KEYS)
        events.append(Event(number, json.dumps(record, ensure_ascii=False).encode() if whole else None))
    return events


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _peer(request: Request) -> str:
    return request.client.host if request.client else "unknown"
