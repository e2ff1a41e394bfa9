"""A reusable loopback HTTP server for API sandboxes (CustomerGauge now, Gainsight later).

Tests, the demo and the benchmarks talk to the sandboxes over real HTTP so the client's transport,
keep-alive, retry and error handling are exercised exactly as in production. The server therefore
speaks HTTP/1.1 with keep-alive, disables Nagle, sends each body in one write and never logs to
stderr per request: a benchmark measures the client, so serving must stay cheap.

Subclasses register routes (``route``) and may override the vendor-specific envelopes
(``render_fault``, ``not_found``, ``method_not_allowed``, ``server_error``) and extend
``fault_kinds``. Every non-control request is logged
(``requests``/``count``) and passes through the fault plan before routing. Paths under
``/_sandbox/`` are emulator-only controls: never logged, never faulted.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from sandbox.common.clock import SandboxClock
from sandbox.common.faults import Fault, FaultPlan

CONTROL_PREFIX = "/_sandbox/"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Request:
    """What a route handler sees: the query is a dict of lists, as repeated keys are meaningful."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (an empty body is ``None``); raises ``ValueError`` if malformed."""
        return json.loads(self.body) if self.body else None


@dataclass
class Response:
    """A complete response, JSON unless told otherwise (a gateway may answer HTML); ``body`` is sent in
    one write with ``Content-Length`` always set."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """Compact UTF-8 JSON, like the vendors send (non-ASCII text stays as is, not ``\\u`` escaped)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, body, dict(headers or {}))


@dataclass(frozen=True)
class LoggedRequest:
    """One served (or dropped: ``status is None``) API request; ``timestamp`` is epoch seconds at arrival."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int | None
    timestamp: float
    accept: str | None = None  # the request's Accept header, so tests can assert the client sends one


class RequestLog:
    """Thread-safe record of API requests, so tests can assert what the client actually sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def append(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, path: str | None = None) -> list[LoggedRequest]:
        """All entries in arrival order, or only those for exactly ``path``."""
        with self._lock:
            return [e for e in self._entries if path is None or e.path == path]

    def count(self, path: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1
                for e in self._entries
                if (path is None or e.path == path) and (status is None or e.status == status)
            )

    def counts_by_path(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(e.path for e in self._entries))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


Handler = Callable[..., Response]
S = TypeVar("S", bound="SandboxServer")


class SandboxServer:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 in a background thread, with routing, log and faults.

    Use as a context manager (``__enter__`` starts and returns self, ``__exit__`` shuts down) or call
    ``start()``/``close()``. ``port=0`` picks a free ephemeral port.
    """

    #: Value of ``X-RateLimit-Limit`` on injected 429s (the real limits are unknown).
    rate_limit = 60
    #: Fault kinds this server can apply; vendor-specific kinds are added by subclasses.
    fault_kinds: frozenset[str] = frozenset({"status", "drop", "delay", "revoke_tokens"})

    def __init__(self, port: int = 0, clock: SandboxClock | None = None) -> None:
        self._requested_port = port
        #: Sandbox time: what tokens, limits and windows read; ``advance`` moves it (see clock.py).
        self.clock = clock or SandboxClock()
        self._routes: list[tuple[re.Pattern[str], str, Handler]] = []
        self._log = RequestLog()
        self._faults = FaultPlan()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.route("POST", r"/_sandbox/faults", self._control_add_fault)
        self.route("GET", r"/_sandbox/faults", self._control_list_faults)
        self.route("DELETE", r"/_sandbox/faults", self._control_clear_faults)
        self.route("POST", r"/_sandbox/tokens/revoke", self._control_revoke_tokens)
        self.route("POST", r"/_sandbox/advance", self._control_advance)
        self.route("GET", r"/_sandbox/requests", self._control_request_counts)
        self.route("DELETE", r"/_sandbox/requests", self._control_clear_log)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self: S) -> S:
        if self._httpd is not None:
            raise RuntimeError("sandbox server already started")
        self._httpd = _HTTPServer((HOST, self._requested_port), _RequestHandler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, close the listening socket and every kept-alive connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("sandbox server is not running")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -- routing ---------------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Serve ``method`` on paths fully matching the regex ``pattern``; groups become arguments."""
        self._routes.append((re.compile(pattern), method, handler))

    def not_found(self, request: Request) -> Response:
        return json_response(404, {"message": "Not Found"})

    def method_not_allowed(self, request: Request, allowed: list[str]) -> Response:
        return json_response(405, {"message": "Method Not Allowed"}, {"Allow": ", ".join(allowed)})

    def _route(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        allowed: list[str] = []
        for pattern, route_method, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if route_method == method:
                return handler(request, *match.groups())
            allowed.append(route_method)
        if not allowed:
            return self.not_found(request)
        if "GET" in allowed:
            allowed.append("HEAD")
        return self.method_not_allowed(request, allowed)

    # -- faults ----------------------------------------------------------------------------------

    def add_fault(self, fault: Fault | None = None, **fields: Any) -> Fault:
        """Emulator-only: plan a fault, given as a ``Fault`` or as its fields."""
        if fault is not None and fields:
            raise TypeError("pass either a Fault or its fields, not both")
        planned = fault if fault is not None else Fault(**fields)
        if planned.kind not in self.fault_kinds:
            raise ValueError(f"{type(self).__name__} supports fault kinds {sorted(self.fault_kinds)}, not {planned.kind!r}")
        self._faults.add(planned)
        return planned

    def pending_faults(self) -> list[Fault]:
        """Emulator-only: planned faults that have not been used up yet."""
        return self._faults.pending()

    def clear_faults(self) -> None:
        """Emulator-only: drop every planned fault."""
        self._faults.clear()

    def revoke_tokens(self) -> None:
        """Invalidate every issued token; servers that issue tokens override this (here: none)."""

    def advance(self, seconds: float) -> None:
        """Emulator-only: move the sandbox clock (windows roll, tokens expire, held answers go out)."""
        self.clock.advance(seconds)

    def hold(self, seconds: float) -> None:
        """How a ``delay`` fault waits: real seconds here; a sandbox whose delays are on its clock
        overrides this with ``self.clock.sleep``."""
        time.sleep(seconds)

    def server_error(self) -> Response:
        """What a crashed handler answers (a sandbox bug shows up as the vendor's 500)."""
        return json_response(500, {"message": "Server Error"})

    def too_many_attempts(self, retry_headers: dict[str, str], limit: int | None = None) -> Response:
        """Laravel's 429 with the rate-limit headers, plus ``Retry-After`` (and its ``Date``) when known."""
        headers = {"X-RateLimit-Limit": str(limit or self.rate_limit), "X-RateLimit-Remaining": "0", **retry_headers}
        return json_response(429, {"message": "Too Many Attempts."}, headers)

    def render_fault(self, fault: Fault) -> Response:
        """The response of a ``status`` fault, in the Laravel shape CustomerGauge is assumed to use."""
        if fault.status == 429:
            return self.too_many_attempts(fault.retry_after_headers(time.time()))
        if fault.status >= 500:
            return json_response(fault.status, {"message": "Server Error"})
        return json_response(fault.status, {"message": HTTPStatus(fault.status).phrase})

    # -- log -------------------------------------------------------------------------------------

    def requests(self, path: str | None = None) -> list[LoggedRequest]:
        """Emulator-only: logged API requests, optionally only those for exactly ``path``."""
        return self._log.entries(path)

    def count(self, path: str | None = None, status: int | None = None) -> int:
        """Emulator-only: how many logged API requests match ``path`` and ``status``."""
        return self._log.count(path, status)

    def clear_log(self) -> None:
        """Emulator-only: forget every logged request."""
        self._log.clear()

    # -- dispatch (called from the handler threads) ----------------------------------------------

    def dispatch(self, request: Request) -> Response | None:
        """Apply the fault plan, route, log. ``None`` means: drop the connection without a response."""
        if request.path.startswith(CONTROL_PREFIX):
            return self._safely_route(request)
        arrived = time.time()
        fault = self._faults.take(request.path)
        response: Response | None = None
        if fault is not None:
            if fault.kind == "revoke_tokens":
                self.revoke_tokens()
            elif fault.kind in ("status", "result_false"):
                response = self.render_fault(fault)
        if fault is None or fault.kind != "drop":
            response = response or self._safely_route(request)
        if fault is not None and fault.kind == "delay":
            # A slow server authenticates and reads on arrival, then answers late: a token valid when
            # the request arrived is not failed by the delay.
            self.hold(fault.delay)
        self._log.append(
            LoggedRequest(
                request.method,
                request.path,
                request.query,
                response.status if response is not None else None,
                arrived,
                request.headers.get("Accept"),
            )
        )
        return response

    def _safely_route(self, request: Request) -> Response:
        try:
            return self._route(request)
        except Exception:  # a sandbox bug: answer like a crashed server and show where it broke
            traceback.print_exc(file=sys.stderr)
            return self.server_error()

    # -- emulator-only controls shared by every sandbox -------------------------------------------

    def _control_add_fault(self, request: Request) -> Response:
        try:
            fields = request.json()
            if not isinstance(fields, dict):
                raise ValueError("body must be a JSON object of Fault fields")
            fault = self.add_fault(**fields)
        except (TypeError, ValueError) as exc:
            return json_response(400, {"message": str(exc)})
        return json_response(201, {"fault": asdict(fault)})

    def _control_list_faults(self, request: Request) -> Response:
        return json_response(200, {"faults": [asdict(f) for f in self.pending_faults()]})

    def _control_clear_faults(self, request: Request) -> Response:
        self.clear_faults()
        return json_response(200, {"faults": []})

    def _control_revoke_tokens(self, request: Request) -> Response:
        self.revoke_tokens()
        return json_response(200, {"revoked": True})

    def _control_advance(self, request: Request) -> Response:
        """``{"seconds": n}`` -> the new sandbox time."""
        try:
            self.advance(float(request.json()["seconds"]))
        except (KeyError, TypeError, ValueError) as error:
            return json_response(400, {"message": str(error)})
        return json_response(200, {"now": self.clock.now()})

    def _control_request_counts(self, request: Request) -> Response:
        counts = self._log.counts_by_path()
        return json_response(200, {"counts": counts, "total": sum(counts.values())})

    def _control_clear_log(self, request: Request) -> Response:
        self.clear_log()
        return json_response(200, {"total": 0})


class _HTTPServer(ThreadingHTTPServer):
    """Keeps a reference to its sandbox and to live connections, so ``close()`` can end keep-alives."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type, sandbox: SandboxServer) -> None:
        super().__init__(address, handler)
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (timeout, drop test) is routine here, not worth a traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def track(self, connection: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            (self._connections.add if alive else self._connections.discard)(connection)

    def close_connections(self) -> None:
        # Without this a pooled client connection would still be served by its handler thread
        # after the sandbox "closed".
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):  # the connection is gone already
                connection.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def version_string(self) -> str:
        return "sandbox"

    def setup(self) -> None:
        super().setup()
        self.server.track(self.request, alive=True)

    def finish(self) -> None:
        self.server.track(self.request, alive=False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: per-request stderr lines would dominate a benchmark (the request log has it all)."""

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _serve(self) -> None:
        if "Transfer-Encoding" in self.headers:
            self._send(Response(411, b'{"message":"Length Required"}'))
            self.close_connection = True
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._send(Response(400, b'{"message":"Bad Request"}'))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = Request(
            self.command,
            url.path,
            parse_qs(url.query, keep_blank_values=True),
            self.headers,
            body,
        )
        response = self.server.sandbox.dispatch(request)
        if response is None:
            self.close_connection = True  # "drop": not one byte goes back
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        if "Date" in response.headers:
            # The answer dates itself (a Retry-After HTTP-date is relative to it): send only that Date.
            self.send_response_only(response.status)
            self.send_header("Server", self.version_string())
        else:
            self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)
