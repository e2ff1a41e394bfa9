"""`serve`'s process: the listener, the worker thread and the signals that stop them."""


from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Generator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from connector_common.stop import SIGNALS
from destinations.gainsight import GainsightSettingError, GainsightSettings, load_settings

from ..errors import ConfigError, ExitCode, exit_code_for
from ..settings import RunSettings
from ..staging import StagingStore
from .app import WEBHOOK_PATH, build_app
from .auth import Authenticator
from .metrics import Metrics
from .settings import ServeSettings, load_serve_settings
from .spool import Spool
from .worker import Worker

log = logging.getLogger("nps.serve")


@dataclass
class Service:
    """Everything `serve` runs, around one open staging file: spool, metrics, worker, HTTP app."""

    store: StagingStore
    spool: Spool
    metrics: Metrics
    worker: Worker
    app: Starlette

    @classmethod
    def open(
        cls,
        settings: RunSettings,
        serve: ServeSettings,
        gainsight: GainsightSettings,
        source_options: dict[str, Any] | None = None,
        gainsight_options: dict[str, Any] | None = None,
    ) -> Service:
        """Take the staging file (the run lock, held until `close`) and wire the parts to it."""
        store = StagingStore.open(settings.duckdb_path, settings.dataset_name, settings.duckdb_memory_limit, "serve")
        try:
            spool = Spool(store.connection)
            metrics = Metrics(spool.depth)
            worker = Worker(
                settings, store, spool, metrics, gainsight, serve.reconcile_minutes, source_options, gainsight_options
            )
            app = build_app(spool, Authenticator(serve), metrics, worker, serve.max_body_bytes)
        except BaseException:
            store.close()
            raise
        return cls(store, spool, metrics, worker, app)

    def close(self) -> None:
        self.store.close()


def run_serve(settings: RunSettings, host: str | None = None, port: int | None = None) -> ExitCode:
    """Serve until signalled; returns the exit code (0 after a clean drain)."""
    try:
        serve = load_serve_settings()
        gainsight = load_settings()
        listener = _listen(host or serve.host, serve.port if port is None else port)
    except (ConfigError, GainsightSettingError) as exc:
        log.error("%s", exc)
        return exit_code_for(exc)
    try:
        service = Service.open(settings, serve, gainsight)
    except Exception as exc:  # locked by another process (exit 4), or unreadable
        listener.close()
        log.error("%s", exc)
        return exit_code_for(exc)
    worker = service.worker
    try:
        server = _Server(uvicorn.Config(service.app, log_config=None, access_log=False, lifespan="off"))
        address = listener.getsockname()
        if serve.webhook_auth == "hmac" and not serve.timestamp_header:
            log.warning("serve: hmac without timestamp_header: a captured call can be replayed (duplicates are harmless)")
        worker.on_failure = lambda: setattr(server, "should_exit", True)
        with _signals(server, worker) as signalled:
            worker.start()
            log.info(
                "serve: listening on http://%s:%d%s (auth %s, reconciliation every %s), staging file %s",
                address[0], address[1], WEBHOOK_PATH, serve.webhook_auth,
                f"{serve.reconcile_minutes} min" if serve.reconcile_minutes else "never", settings.duckdb_path,
            )  # fmt: skip
            server.run(sockets=[listener])
            log.info("serve: stopped accepting calls; delivering what is spooled, then exiting")
            worker.stop()
            left = service.spool.depth()
    finally:
        listener.close()
        service.close()
    if worker.failure is not None:
        return exit_code_for(worker.failure)
    forced = signalled.get("forced")
    if forced:
        log.warning("serve: stopped by a second %s at a safe point; the next start delivers the rest", signal.Signals(forced).name)
        return ExitCode(128 + forced)
    log.info("serve: drained; %d event(s) left in the spool for the next start (ids not found yet)", left)
    return ExitCode.OK


def _listen(host: str, port: int) -> socket.socket:
    """Bind before anything else is opened: a taken port is a clear error, not a half-started service."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family, reuse_port=False)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}): set --port or nps_to_gainsight.serve.port") from None


class _Server(uvicorn.Server):
    """Uvicorn's server without its own signal handling (serve installs its own, see `_signals`)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.contextmanager
def _signals(server: Any, worker: Worker) -> Generator[dict[str, int], None, None]:
    """First signal: stop accepting and drain; second: stop the run under way at a safe point.

    Installed for the whole life of the process, the drain included (uvicorn's own handlers are
    removed when it stops listening, and a signal then would kill the drain midway)."""
    signalled: dict[str, int] = {}

    def handle(number: int, frame: FrameType | None) -> None:
        if "first" not in signalled:
            signalled["first"] = number
            server.should_exit = True
            worker.end_reconciliation(number)
            log.info("serve: %s received: draining (send it again to stop at the next safe point)", signal.Signals(number).name)
        elif "forced" not in signalled:
            signalled["forced"] = number
            server.force_exit = True
            worker.force_stop(number)

    if threading.current_thread() is not threading.main_thread():
        yield signalled
        return
    previous = {number: signal.signal(number, handle) for number in SIGNALS}
    try:
        yield signalled
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
