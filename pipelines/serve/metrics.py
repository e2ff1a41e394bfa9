"""Prometheus metrics of the serve process (`GET /metrics`), on a registry of its own.

prometheus-client writes the text exposition format (escaping, `_total`/`_bucket` series, content
type) that scrapers expect; a registry per process keeps in-process tests from sharing counters.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Webhook-to-Gainsight seconds: the target is p95 <= 10 s.
LATENCY_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 300.0, 900.0)


class Metrics:
    def __init__(self, spool_depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "nps_webhook_events_received", "Webhook events accepted into the spool", ["kind"], registry=r
        )
        self.rejected = Counter(
            "nps_webhook_calls_rejected", "Webhook calls refused, by HTTP status (nothing stored)", ["status"], registry=r
        )
        self.spool_depth = Gauge("nps_webhook_spool_depth", "Events waiting in the spool", registry=r)
        self.spool_depth.set_function(spool_depth)
        self.latency = Histogram(
            "nps_webhook_to_gainsight_seconds",
            "From accepting an event to the end of the push that delivered it",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.quota_left = Gauge(
            "nps_gainsight_quota_left", "Gainsight calls left in the current window", ["family", "window"], registry=r
        )
        self.last_exit_code = Gauge("nps_last_run_exit_code", "Exit code of the last run, by mode", ["mode"], registry=r)
        self.last_success = Gauge(
            "nps_last_successful_run_timestamp_seconds", "Unix time a run last completed (exit 0/10/11/12)", registry=r
        )
        self.runs = Counter("nps_runs", "Runs by mode and exit code", ["mode", "exit_code"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
