"""Emulator-only: CustomerGauge's outgoing webhooks as this project assumes them (reference §5.3).

CustomerGauge documents that outgoing webhooks exist, not their payload, triggers, retries or
signing (reference §3.7); nothing here is CustomerGauge's contract. The simulator posts, for every
response the sandbox adds or edits, `{"event": "response.created", "data": <record>}` (payload
`record`) or `{"event": "response.created", "number_customergauge": N}` (payload `id`) to one URL,
authenticated like `serve` expects (`hmac`: `X-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<body>">` and `X-Signature-Timestamp`; `basic`; `header`: the secret in the header),
one call per event, in order, on a background thread, retrying a non-2xx answer or a lost
connection with doubling backoff up to `max_attempts`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: str
    auth: str = "hmac"  # hmac | basic (secret = user:password) | header
    payload: str = "record"  # record | id
    signature_header: str = "X-Signature"
    timestamp_header: str = "X-Signature-Timestamp"
    max_attempts: int = 5
    backoff_seconds: float = 0.5

    def __post_init__(self) -> None:
        if self.auth not in ("hmac", "basic", "header") or self.payload not in ("record", "id"):
            raise ValueError("auth must be hmac, basic or header; payload record or id")


@dataclass(frozen=True)
class Delivery:
    response_id: int
    first_sent_at: float  # epoch seconds of the first attempt
    attempts: int
    status: int | None  # the last answer's status; None: no answer (connection refused or lost)


class WebhookSender:
    """One background thread posting events in order; `deliveries` records how each ended."""

    def __init__(self, target: WebhookTarget) -> None:
        self.target = target
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="cg-webhooks", daemon=True)
        self._thread.start()

    def send(self, record: dict[str, Any]) -> None:
        self._queue.put(record)

    def flush(self) -> None:
        """Wait until every event queued so far was delivered or given up."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            try:
                if record is None:
                    return
                self.deliveries.append(self._deliver(record))
            finally:
                self._queue.task_done()

    def _deliver(self, record: dict[str, Any]) -> Delivery:
        number = int(record["number_customergauge"])
        event: dict[str, Any] = {"event": "response.created"}
        event.update({"data": record} if self.target.payload == "record" else {"number_customergauge": number})
        body = json.dumps(event).encode()
        first, status = time.time(), None
        for attempt in range(1, self.target.max_attempts + 1):
            status = self._post(body)
            if status is not None and 200 <= status < 300:
                return Delivery(number, first, attempt, status)
            time.sleep(self.target.backoff_seconds * 2 ** (attempt - 1))
        return Delivery(number, first, self.target.max_attempts, status)

    def _post(self, body: bytes) -> int | None:
        request = urllib.request.Request(self.target.url, data=body, method="POST", headers=self._headers(body))
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return None

    def _headers(self, body: bytes) -> dict[str, str]:
        target = self.target
        headers = {"Content-Type": "application/json"}
        if target.auth == "basic":
            headers["Authorization"] = "Basic " + base64.b64encode(target.secret.encode()).decode()
        elif target.auth == "header":
            headers[target.signature_header] = target.secret
        else:
            message = body
            if target.timestamp_header:
                timestamp = str(int(time.time()))
                headers[target.timestamp_header] = timestamp
                message = timestamp.encode() + b"." + body
            headers[target.signature_header] = "sha256=" + hmac.new(target.secret.encode(), message, hashlib.sha256).hexdigest()
        return headers
