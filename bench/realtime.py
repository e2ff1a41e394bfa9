"""Real-time benchmark: CustomerGauge webhooks -> `serve` -> Gainsight, at a steady rate, quotas on.

    python bench/realtime.py                          # 1,000 events at 5 per second, known contacts
    python bench/realtime.py --events 200 --rate 1 --people 0   # every response from a new person

Both sandboxes run in this process with Gainsight's documented quotas on (100 sync calls a minute,
200 Timeline calls a minute) and the connector's own limiter as shipped. `serve` runs as a child
process, configured by env vars, exactly as an operator starts it. The CustomerGauge sandbox adds
one response at a time at the given rate, and its emulator-only webhook simulator posts each one to
`serve` (signed with HMAC).

Steady state, not a first backfill: CustomerGauge starts with `--history` responses of the last
days from a pool of `--people` contacts, which `serve`'s start-up reconciliation pushes before the
stream begins; the streamed responses come from the same contacts, as an established tenant's do.
Gainsight's People API takes one person per call (reference §4.6), so every new person costs one of
the 100 sync calls a minute: `--people 0` (a new person per response) shows that bound.

Latency per event: from the simulator's first POST to the moment the
Gainsight sandbox created the response record (its CreatedDate, on a clock at real time). Peak RSS
and CPU seconds are the `serve` process's (getrusage of the waited-for child).

Latency follows the machine's load (a batch is mostly CPU-bound dlt work), so the benchmark also
prints what does not: the sync calls per minute and per batch in the steady state (from the
Gainsight sandbox's request log, from the first POST until the last response landed), the busiest
calendar minute against the 100 allowed, and any "quota ... waiting" line `serve` logged after
the start-up reconciliation; and the load average at start and end.

Target (issue 11): p95 <= 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.customergauge import CustomerGaugeSandbox, SeedSpec  # noqa: E402
from sandbox.customergauge.webhooks import WebhookSender, WebhookTarget  # noqa: E402
from sandbox.gainsight import BulkJob, GainsightSandbox  # noqa: E402
from sandbox.gainsight.server import QUOTA_FAMILY, family_of  # noqa: E402

CG_ID, CG_SECRET = "bench-client", "bench-secret-0a1b2c"
ACCESS_KEY = "bench-gainsight-access-key"
WEBHOOK_SECRET = "bench-webhook-secret-9f8e7d6c"
RESPONSE_OBJECT = "CG_NPS_Response__gc"
BULK_JOB = "job-nps-responses-upsert"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=5.0, help="events per second (default 5)")
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--people", type=int, default=100, help="contacts the responses come from (0: a new one each)")
    parser.add_argument("--history", type=int, default=300, help="responses of earlier days, pushed before the stream")
    parser.add_argument("--payload", choices=["record", "id"], default="record")
    parser.add_argument(
        "--sync-per-minute", type=int, default=100,
        help="the sync quota, in the sandbox and the connector alike (default: Gainsight's documented 100); "
        "lower it to see the pacing bind on a loaded machine, whose batches are slow",
    )  # fmt: skip
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="realtime-bench-"))
    (work / ".dlt").mkdir()
    shutil.copy(ROOT / ".dlt" / "config.toml", work / ".dlt" / "config.toml")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    seed = SeedSpec(responses=args.history, days=7, accounts=args.accounts, people=args.people or None)
    with CustomerGaugeSandbox(CG_ID, CG_SECRET, seed) as cg, GainsightSandbox(
        ACCESS_KEY, bulk_jobs=[BulkJob(BULK_JOB, RESPONSE_OBJECT, "UPSERT", keys=("ResponseId__gc",))], quotas=True,
        quota_limits={("sync", "minute"): args.sync_per_minute},
    ) as gs:
        log = (work / "serve.log").open("w")
        serve = subprocess.Popen(
            [sys.executable, str(ROOT / "pipelines" / "nps_to_gainsight.py"), "serve", "--port", str(port)],
            cwd=work, env=_env(cg, gs, work, args.sync_per_minute), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait(lambda: _ready(url), 900)
            cg.webhooks = WebhookSender(WebhookTarget(url + "/webhooks/customergauge", WEBHOOK_SECRET, payload=args.payload))
            steady_from = len(gs.requests())  # after the start-up reconciliation
            started_at = time.time()
            started = time.monotonic()
            for index in range(args.events):
                time.sleep(max(0.0, started + index / args.rate - time.monotonic()))
                cg.add_responses(1)
            cg.webhooks.flush()
            sent = time.monotonic() - started
            _wait(lambda: gs.count_records(RESPONSE_OBJECT) >= args.history + args.events, 1800)
            ended_at = time.time()
            steady = gs.requests()[steady_from:]
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=600)
            log.close()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_mb = usage.ru_maxrss / 1024
        created = {record["ResponseId__gc"]: record["CreatedDate"] for record in gs.records(RESPONSE_OBJECT)}
        latencies = sorted(
            created[str(d.response_id)].timestamp() - d.first_sent_at for d in cg.webhooks.deliveries
        )
        refused = sum(1 for d in cg.webhooks.deliveries if d.status != 202)
        cg.webhooks.close()
    text = (work / "serve.log").read_text()
    batches = text.count("serve: delivering")
    waits = _quota_waits(text)
    calls = Counter(QUOTA_FAMILY.get(family_of(entry.path), "none") for entry in steady)
    per_family = Counter((family_of(entry.path)) for entry in steady if QUOTA_FAMILY.get(family_of(entry.path)) == "sync")
    minutes = max(1e-9, (ended_at - started_at) / 60)
    by_minute = Counter(int(entry.timestamp // 60) for entry in steady if QUOTA_FAMILY.get(family_of(entry.path)) == "sync")
    contacts = f"{args.people} known contacts" if args.people else "a new person each"
    split = ", ".join(f"{family} {n}" for family, n in sorted(per_family.items()))
    print(
        f"realtime: {args.events} events ({args.payload} payloads, {contacts}) at {args.rate:g}/s sent in {sent:.0f} s, "
        f"quotas on (sync {args.sync_per_minute} a minute)"
    )
    print(f"  webhook -> Gainsight latency: p50 {_pct(latencies, 50):.1f} s, p95 {_pct(latencies, 95):.1f} s, max {latencies[-1]:.1f} s")
    print(f"  batches {batches} (events per push: {args.events / max(1, batches):.1f}); webhook calls not 202: {refused}")
    print(
        f"  steady state ({minutes:.1f} min): sync calls {calls['sync']} ({calls['sync'] / minutes:.0f} a minute, "
        f"busiest minute {max(by_minute.values(), default=0)} of {args.sync_per_minute}; {split}), "
        f"{calls['sync'] / max(1, batches):.1f} per batch; timeline calls {calls['timeline']}; 429 answers "
        f"{sum(1 for entry in steady if entry.status == 429)}"
    )
    print(f"  quota waits in serve.log after the start-up reconciliation: {waits or 'none'}")
    cpu = usage.ru_utime + usage.ru_stime
    print(f"  serve peak RSS {peak_mb:.0f} MB, CPU {cpu:.0f} s; exit code {serve.returncode}; log {work / 'serve.log'}")
    print(f"  load average (1 min) at start {load_before:.1f}, at end {os.getloadavg()[0]:.1f}: wall-clock latency follows the load")


def _quota_waits(text: str) -> str:
    """The limiter's "quota ... waiting" lines logged after the first run (the start-up reconciliation)."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if "serve: delivering" in line), len(lines))
    waits = [line for line in lines[first:] if "quota for this" in line and "waiting" in line]
    return f"{len(waits)} (first: {waits[0].split('gainsight: ', 1)[-1]})" if waits else ""


def _env(cg: CustomerGaugeSandbox, gs: GainsightSandbox, work: Path, sync_per_minute: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__", "NPS_TO_GAINSIGHT__"))}
    env.update(
        RUNTIME__DLTHUB_TELEMETRY="false",
        SOURCES__CUSTOMERGAUGE__API_BASE_URL=cg.base_url,
        SOURCES__CUSTOMERGAUGE__TOKEN_URL=cg.token_url,
        SOURCES__CUSTOMERGAUGE__CLIENT_ID=CG_ID,
        SOURCES__CUSTOMERGAUGE__CLIENT_SECRET=CG_SECRET,
        SOURCES__CUSTOMERGAUGE__INITIAL_RESPONSE_DATE=time.strftime("%Y-%m-%d", time.gmtime(time.time() - 8 * 86400)),
        DESTINATION__DUCKDB__CREDENTIALS=str(work / "staging.duckdb"),
        DESTINATION__GAINSIGHT__BASE_URL=gs.base_url,
        DESTINATION__GAINSIGHT__ACCESS_KEY=ACCESS_KEY,
        DESTINATION__GAINSIGHT__RESPONSE_BULK_JOB_ID=BULK_JOB,
        DESTINATION__GAINSIGHT__CREATE_MISSING_COMPANIES="true",
        DESTINATION__GAINSIGHT__TIMELINE_AUTHOR_EMAIL="nps.connector@example.com",
        DESTINATION__GAINSIGHT__QUOTAS__SYNC_PER_MINUTE=str(sync_per_minute),
        NPS_TO_GAINSIGHT__SERVE__WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    return env


def _pct(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1] if len(values) > 1 else values[0]


def _ready(url: str) -> bool:
    """Healthy and past the start-up reconciliation: the benchmark measures the steady state."""
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as answer:
            return int(answer.status) == 200 and json.load(answer)["last_successful_run"] is not None
    except OSError:
        return False


def _wait(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("realtime: timed out waiting")
        time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    main()
