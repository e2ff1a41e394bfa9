"""`serve`: webhook security, the spool, batches through the normal push, kill -9 and SIGTERM.

Real HTTP on loopback to a real uvicorn, real DuckDB files, both sandboxes. The worker's runs are
called directly where the point is what a batch does (deterministic: no timing decides a batch);
a child process only where the process boundary is the point (kill -9, signals).
"""

from __future__ import annotations

import copy
import json
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import uvicorn

from destinations.gainsight import load_settings
from destinations.gainsight.settings import QuotaLimits
from destinations.gainsight.store import quota_log_reader
from pipelines.errors import ExitCode
from pipelines.serve.auth import Authenticator, sign
from pipelines.serve.command import Service
from pipelines.serve.pacing import Pacer, pause_for
from pipelines.serve.settings import ServeSettings
from sandbox.gainsight.server import QUOTA_FAMILY, family_of

from .cli import cli_env, push_env, run_main, start_cli, wait_for
from .conftest import RESPONSE_OBJECT
from .test_push import by_key, write_calls

SECRET = "test-webhook-secret-5be1c9a7"
URL_PATH = "/webhooks/customergauge"


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {"X-Signature": sign(secret, body, timestamp), "X-Signature-Timestamp": timestamp}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    """An in-process `serve`: its parts, its URL, and the connector it pushes with."""

    service: Service
    url: str
    connector: Any

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.post(self.url + URL_PATH, data=body, headers=headers, timeout=30)

    def post_signed(self, document: Any) -> requests.Response:
        body = json.dumps(document).encode()
        return self.post(body, signed(body))

    def webhook_runs(self) -> int:
        """Runs of the webhook batches, read through the service's own connection (it holds the file)."""
        db = self.service.store.connection.cursor()
        try:
            if not db.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'run_history'").fetchone()[0]:
                return 0
            return int(db.execute("SELECT count(*) FROM gainsight.run_history WHERE mode = 'webhook'").fetchone()[0])
        finally:
            db.close()


@pytest.fixture
def served(cg_sandbox, gs_sandbox, connector_for) -> Iterator[Served]:
    cg, gs = cg_sandbox(responses=20, days=5, accounts=4), gs_sandbox()
    connector = connector_for(cg, gs, name="serve")
    serve = ServeSettings(webhook_secret=SECRET, reconcile_minutes=0, max_body_bytes=4096)
    service = Service.open(
        connector.staging.settings,
        serve,
        load_settings(connector.gs_options()),
        connector.staging.options(),
        connector.gs_options(),
    )
    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(service.app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30)
    try:
        yield Served(service, f"http://127.0.0.1:{listener.getsockname()[1]}", connector)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
        service.close()


def test_refused_calls_store_nothing(served):
    record = served.connector.staging.sandbox.records[0]
    body = json.dumps(record).encode()
    forged = signed(body, secret="not-the-secret-at-all")
    stale = signed(body, at=time.time() - 3600)
    oversized = json.dumps({**record, "comment": "x" * 5000}).encode()
    calls = [
        (body, {}, 401),  # unsigned
        (body, {"X-Signature": signed(body)["X-Signature"]}, 401),  # no timestamp
        (body, forged, 403),
        (body, stale, 403),
        (body, {**signed(body), "X-Signature": "sha256=" + "0" * 64}, 403),
        (body + b" ", signed(body), 403),  # the body changed after signing
        (oversized, signed(oversized), 413),
        (b"{not json", signed(b"{not json"), 400),
    ]
    for shape in ([1, 2], {"data": []}, {"nps": 9}, {"number_customergauge": "12"}, {"data": [record, "x"]}):
        raw = json.dumps(shape).encode()
        calls.append((raw, signed(raw), 422))
    for raw, headers, status in calls:
        answer = served.post(raw, headers)
        assert answer.status_code == status, (status, answer.text)
    # streamed without a Content-Length, the limit is enforced while reading
    chunks = iter([oversized[:3000], oversized[3000:]])
    assert requests.post(served.url + URL_PATH, data=chunks, headers=signed(oversized), timeout=30).status_code == 413

    assert served.service.spool.depth() == 0
    assert served.webhook_runs() == 0
    metrics = requests.get(served.url + "/metrics", timeout=30).text
    assert 'nps_webhook_calls_rejected_total{status="403"} 4.0' in metrics
    assert 'nps_webhook_calls_rejected_total{status="422"} 5.0' in metrics
    # the positive control: the same record, signed, is accepted and spooled
    assert served.post(body, signed(body)).status_code == 202
    assert served.service.spool.depth() == 1


def test_other_auth_modes():
    basic = Authenticator(ServeSettings(webhook_auth="basic", webhook_secret="cg:" + SECRET))
    assert basic.refuse({"authorization": "Basic " + _b64("cg:" + SECRET)}, b"{}") is None
    assert basic.refuse({}, b"{}").status == 401
    assert basic.refuse({"authorization": "Basic " + _b64("cg:wrong")}, b"{}").status == 403
    header = Authenticator(ServeSettings(webhook_auth="header", webhook_secret=SECRET, signature_header="X-Api-Key"))
    assert header.refuse({"x-api-key": SECRET}, b"{}") is None
    assert header.refuse({"x-api-key": SECRET[:-1]}, b"{}").status == 403
    body_only = Authenticator(ServeSettings(webhook_secret=SECRET, timestamp_header=""))
    assert body_only.refuse({"x-signature": sign(SECRET, b"{}", None)}, b"{}") is None


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def test_burst_is_one_batch_through_the_push_and_duplicates_are_harmless(served):
    cg, gs = served.connector.staging.sandbox, served.connector.gainsight
    ids = cg.add_responses(14)
    records = {record["number_customergauge"]: record for record in cg.records}
    for number in ids[:10]:  # whole records, each in one of the accepted shapes
        record = records[number]
        shape = [record, {"data": record}, {"event": "response.created", "data": [record]}][number % 3]
        assert served.post_signed(shape).status_code == 202
    for number in ids[10:]:  # id-only events: looked up through the source
        assert served.post_signed({"number_customergauge": number}).status_code == 202
    assert served.post_signed({"number_customergauge": 987654321}).status_code == 202  # CustomerGauge has no such response
    assert served.service.spool.depth() == 15

    assert served.service.worker.deliver() == ExitCode.OK
    assert served.webhook_runs() == 1  # one batch, one push
    pushed = by_key(gs.records(RESPONSE_OBJECT))
    assert {str(number) for number in ids} <= set(pushed) and set(pushed.values()) == {1}
    assert served.service.spool.depth() == 1  # the unknown id waits for a later try

    writes = write_calls(gs)
    for number in ids[:6]:  # delivered again: staged again, nothing new for Gainsight
        assert served.post_signed(records[number]).status_code == 202
    served.service.worker.deliver()
    assert write_calls(gs) == writes
    assert set(by_key(gs.records(RESPONSE_OBJECT)).values()) == {1}


def test_a_batch_stages_while_a_webhook_is_being_spooled(served):
    """A webhook spooled while a batch loads holds a write transaction on the file (the spool's
    sequence), which makes DuckDB refuse the load's CHECKPOINT: the batch still goes through."""
    record = served.connector.staging.sandbox.records[0]
    assert served.post_signed(record).status_code == 202
    appending = served.service.store.connection.cursor()
    appending.execute("BEGIN TRANSACTION")
    appending.execute("SELECT nextval('webhooks.spool_seq')")  # what an append does first
    try:
        assert served.service.worker.deliver() == ExitCode.OK
    finally:
        appending.execute("ROLLBACK")
        appending.close()
    assert served.service.spool.depth() == 0
    assert str(record["number_customergauge"]) in by_key(served.connector.gainsight.records(RESPONSE_OBJECT))


def test_event_for_a_response_the_schedule_pushed_makes_no_write(served):
    cg, gs = served.connector.staging.sandbox, served.connector.gainsight
    assert served.service.worker.reconcile() == ExitCode.OK  # the scheduled lookback run
    writes = write_calls(gs)
    record = cg.records[-1]
    assert served.post_signed(record).status_code == 202
    assert served.post_signed({"number_customergauge": cg.records[-2]["number_customergauge"]}).status_code == 202
    assert served.service.worker.deliver() == ExitCode.OK
    assert write_calls(gs) == writes
    assert served.service.spool.depth() == 0
    health = requests.get(served.url + "/healthz", timeout=30)
    assert health.status_code == 503  # in this test the worker thread was never started
    assert health.json()["last_successful_run"]["mode"] == "webhook"


def sync_calls(gs, since: int) -> Counter[str]:
    """Calls on Gainsight's sync quota from the `since`-th logged request, by path."""
    return Counter(e.path for e in gs.requests()[since:] if QUOTA_FAMILY.get(family_of(e.path)) == "sync")


def test_a_batch_from_known_persons_reads_no_people_and_makes_two_sync_calls(served):
    cg, gs = served.connector.staging.sandbox, served.connector.gainsight
    assert served.service.worker.reconcile() == ExitCode.OK  # every person confirmed in the ledger
    known = [record for record in cg.records if record.get("email") and "nps" in record][:6]
    for offset, record in enumerate(known):  # new responses of the same persons
        fresh = {**record, "number_customergauge": 990_000 + offset}
        if offset == 0:  # no account this time: nothing a person upsert would add
            fresh["properties"] = [p for p in record["properties"] if p["field"] != "Account Number"]
        if offset == 1:  # another spelling of the name, which a person who exists keeps
            fresh["contact"] = {"first_name": "Renamed", "last_name": "Person"}
        assert served.post_signed(fresh).status_code == 202
    since = len(gs.requests())
    assert served.service.worker.deliver() in (ExitCode.OK, ExitCode.DEFERRED)
    calls = sync_calls(gs, since)
    assert not [path for path in calls if path.endswith(("/Person", "/Company_Person")) or "people" in path], calls
    assert sum(calls.values()) <= 2, calls  # the response look-up and insert, one each for the batch
    pushed = by_key(gs.records(RESPONSE_OBJECT))
    assert {str(990_000 + offset) for offset in range(1, 6)} <= set(pushed)


def test_pace_spends_a_window_evenly_and_gathers_when_it_cannot_afford_a_batch():
    assert pause_for(left=100, resets_in=60.0, cost=2.0, since_last=float("inf")) == 0.0  # a quiet stream: at once
    assert pause_for(left=100, resets_in=60.0, cost=2.0, since_last=0.5) == pytest.approx(0.7)  # 50 batches in 60 s
    assert pause_for(left=10, resets_in=6.0, cost=2.0, since_last=0.0) == pytest.approx(1.2)
    assert pause_for(left=1, resets_in=10.0, cost=2.0, since_last=30.0) == 10.0  # wait for the reset, not inside the push


def test_a_nearly_used_sync_window_gathers_the_events_into_one_batch_after_it_resets(served):
    worker, store = served.service.worker, served.service.store
    assert worker.reconcile() == ExitCode.OK
    minute = (int(time.time()) // 60 + 30) * 60  # a window of the pacer's clock no real call counts in
    now = [minute + 50.0]
    documented = copy.copy(worker.gainsight)  # the tests' connector runs with quotas raised out of the way
    documented.quotas = QuotaLimits()  # 100 sync calls a minute
    worker.pacer = Pacer(documented, lambda: quota_log_reader(store.connection), clock=lambda: now[0])
    store.connection.execute(
        "INSERT INTO gainsight.quota_log VALUES ('sync', 'minute', to_timestamp(?), 99)", [minute]
    )  # fmt: skip
    cg = served.connector.staging.sandbox
    ids = cg.add_responses(6)
    records = {record["number_customergauge"]: record for record in cg.records}
    for number in ids[:3]:
        assert served.post_signed(records[number]).status_code == 202
    assert worker.pacer.pause() == 10.0  # one call left, a batch costs two: gather until the minute ends
    for number in ids[3:]:  # arrive meanwhile
        assert served.post_signed(records[number]).status_code == 202
    now[0] = minute + 60.0
    assert worker.pacer.pause() == 0.0
    gs = served.connector.gainsight
    since = len(gs.requests())
    assert worker.deliver() == ExitCode.OK
    assert served.webhook_runs() == 1  # the six events in one batch
    assert {str(number) for number in ids} <= set(by_key(gs.records(RESPONSE_OBJECT)))
    cost = sum(sync_calls(gs, since).values())  # look-up, insert, and six new persons' reads and upserts
    assert worker.pacer.cost("sync") == cost
    assert worker.pacer.pause() == pytest.approx(cost * 60.0 / 100.0)  # the next batch: the window's pace


def test_serve_refuses_to_start_without_a_secret(cg_sandbox, gs_sandbox, project):
    env = push_env(cg_sandbox(responses=0), gs_sandbox(), project)
    result = run_main("serve", "--port", str(free_port()), cwd=project, env=env)
    assert result.returncode == ExitCode.CONFIG_ERROR
    assert "NPS_TO_GAINSIGHT__SERVE__WEBHOOK_SECRET" in result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"WEBHOOK_SECRET": "short"}, "webhook_secret too short (min 16 characters) (env NPS_TO_GAINSIGHT__SERVE__WEBHOOK_SECRET)"),
        ({"WEBHOOK_AUTH": "basic"}, "must be user:password when webhook_auth is basic (env NPS_TO_GAINSIGHT__SERVE__WEBHOOK_SECRET)"),
        ({"WEBHOOK_AUTH": "token"}, "got 'token' (env NPS_TO_GAINSIGHT__SERVE__WEBHOOK_AUTH)"),
        ({"MAX_BODY_BYTES": "10"}, "max_body_bytes must be at least 1024, got 10 (env NPS_TO_GAINSIGHT__SERVE__MAX_BODY_BYTES)"),
    ],
)
def test_each_serve_setting_error_names_its_env_var(project, settings: dict[str, str], message: str):
    env = cli_env(project=project, NPS_TO_GAINSIGHT__SERVE__WEBHOOK_SECRET=SECRET)
    env.update({f"NPS_TO_GAINSIGHT__SERVE__{key}": value for key, value in settings.items()})
    result = run_main("serve", "--port", str(free_port()), cwd=project, env=env)
    assert result.returncode == ExitCode.CONFIG_ERROR and message in result.stderr
    assert SECRET not in result.stderr and "short" not in result.stderr.replace("too short", "")


def test_kill_9_mid_stream_then_restart_delivers_every_acknowledged_event_once_and_sigterm_drains(
    cg_sandbox, gs_sandbox, project
):
    """Two child processes (the process boundary is the point): about 10 CPU-s, mostly their start-up."""
    cg, gs = cg_sandbox(responses=0), gs_sandbox()
    port = free_port()
    env = push_env(
        cg, gs, project,
        NPS_TO_GAINSIGHT__SERVE__WEBHOOK_SECRET=SECRET,
        NPS_TO_GAINSIGHT__SERVE__RECONCILE_MINUTES="0",
        NPS_TO_GAINSIGHT__SERVE__PORT=str(port),
    )  # fmt: skip
    cg.add_responses(16)
    records = cg.records
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return requests.get(url + "/healthz", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def post(record: dict[str, Any]) -> bool:
        body = json.dumps(record).encode()
        try:
            return requests.post(url + URL_PATH, data=body, headers=signed(body), timeout=10).status_code == 202
        except requests.ConnectionError:
            return False

    first = start_cli("serve", cwd=project, env=env)
    acknowledged = []
    try:
        wait_for(healthy, timeout=60)
        for record in records[:8]:
            if post(record):
                acknowledged.append(record["number_customergauge"])
    finally:
        first.kill()
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL

    second = start_cli("serve", cwd=project, env=env)
    try:
        wait_for(healthy, timeout=60)
        for record in records[8:]:
            if post(record):
                acknowledged.append(record["number_customergauge"])
        held = run_main("status", cwd=project, env=env)  # serve owns the file: the verb is told by whom
        assert held.returncode == ExitCode.LOCKED
        assert f"held by `serve` (PID {second.pid}, since " in held.stderr and "/healthz" in held.stderr
        assert "stop serve" in held.stderr
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    assert "Traceback" not in stderr and SECRET not in stderr
    assert "drained; 0 event(s) left" in stderr

    assert len(acknowledged) == 16
    pushed = by_key(gs.records(RESPONSE_OBJECT))
    assert set(pushed) == {str(number) for number in acknowledged}
    assert set(pushed.values()) == {1}
    activities = Counter(activity["ExternalId"] for activity in gs.records("activity_timeline"))
    assert set(activities) == {f"cg-nps-{number}" for number in acknowledged} and set(activities.values()) == {1}


def test_sandbox_webhook_simulator_signs_retries_and_sends_both_payloads(served):
    """The CustomerGauge sandbox's emulator-only webhooks, end to end through serve."""
    from sandbox.customergauge.webhooks import WebhookSender, WebhookTarget

    cg, gs = served.connector.staging.sandbox, served.connector.gainsight
    url = served.url + URL_PATH
    for target in (WebhookTarget(url, SECRET), WebhookTarget(url, SECRET, payload="id")):
        cg.webhooks = WebhookSender(target)
        cg.add_responses(3)
        cg.webhooks.flush()
        assert [(d.status, d.attempts) for d in cg.webhooks.deliveries] == [(202, 1)] * 3
        cg.webhooks.close()
    cg.webhooks = WebhookSender(WebhookTarget(url, "a-wrong-secret-of-length", max_attempts=2, backoff_seconds=0.01))
    cg.add_responses(1)
    cg.webhooks.flush()
    assert [(d.status, d.attempts) for d in cg.webhooks.deliveries] == [(403, 2)]
    cg.webhooks.close()
    cg.webhooks = None

    assert served.service.spool.depth() == 6
    assert served.service.worker.deliver() == ExitCode.OK
    assert served.service.spool.depth() == 0
    assert len(gs.records(RESPONSE_OBJECT)) == 6
