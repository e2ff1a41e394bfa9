"""Webhook events as a dlt source of the same tables as the scheduled extract (serve's input).

CustomerGauge documents that outgoing webhooks exist, not what they carry (reference §3.7), so an
event is either a whole record in the v7 sync API's shape or only its id (`number_customergauge`).
Whole records go through the feed's own page decoder: the same validation, mapping and quarantine
as a scheduled run. The v7 API has no read-by-id, so ids are looked up in the lookback window of
response dates (today − `lookback_days` .. today in the tenant's time zone): a webhook announces a
response that was just given. An id not found there stays unresolved and the caller retries it
later; the scheduled reconciliation reads the same window anyway.

The source is named like the scheduled one (`customergauge`), so dlt keeps one schema for the
tables, and its resource writes `nps_responses` with the same merge on `response_id`. It carries no
incremental cursor: webhooks never move the cursor of the scheduled extract.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import dlt
from dlt.sources import DltResource

from . import MERGE_UNIQUE_ROWS, RESPONSES_FEED, RESPONSES_TABLE, build_client
from .client import CustomerGaugeClient
from .feed import Page, as_tables, counted, page_decoder
from .mapping import day_in
from .options import FeedOptions
from .paging import Period, feed_params, iter_pages
from .report import ExtractReport

ID_KEY = "number_customergauge"


@dataclass
class Events:
    """One batch: whole records (raw JSON objects, in arrival order) and ids to look up.

    `resolved` is filled while the source runs: the ids it found and staged.
    """

    records: list[bytes] = field(default_factory=list)
    ids: set[int] = field(default_factory=set)
    resolved: set[int] = field(default_factory=set)


@dlt.source(name="customergauge", section="customergauge")
def customergauge_events(
    events: Events,
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    initial_response_date: str = dlt.config.value,
    region: str = "eu",
    api_base_url: str | None = None,
    token_url: str | None = None,
    lookback_days: int = 3,
    tenant_timezone: str = "UTC",
    property_map: dict[str, str] | None = None,
    expansions: list[str] | None = None,
    max_attempts: int = 6,
    retry_backoff_seconds: float = 1.0,
    max_retry_wait_seconds: float = 120.0,
    report: ExtractReport | None = None,
) -> DltResource:
    """`events` as `nps_responses` rows (and `quarantine` rows); settings as `customergauge()`'s."""
    options = FeedOptions.build(
        initial_response_date=initial_response_date,
        lookback_days=lookback_days,
        tenant_timezone=tenant_timezone,
        property_map=property_map,
        expansions=expansions,
        backfill_start=None,
        backfill_end=None,
        decode_workers=0,
        rows_per_load=100_000,
    )
    client = None
    if events.ids:
        client = build_client(
            client_id, client_secret, region, api_base_url, token_url, max_attempts, retry_backoff_seconds, max_retry_wait_seconds
        )
    report = report or ExtractReport(run_id=datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    if client is not None:
        report.clients.append(client)
    return event_responses(events, client, options, report)


@dlt.resource(name=RESPONSES_TABLE, primary_key="response_id", write_disposition=MERGE_UNIQUE_ROWS)
def event_responses(
    events: Events, client: CustomerGaugeClient | None, options: FeedOptions, report: ExtractReport
) -> Iterator[Any]:
    """The batch's latest record per response, decoded as one page of the responses feed."""
    progress = report.feed(RESPONSES_TABLE)
    progress.loads += 1
    latest: dict[Any, bytes] = {}
    for raw in events.records:
        latest[json.loads(raw).get(ID_KEY)] = raw  # a later delivery of the same response wins
    if client is not None:
        period = lookup_window(options)
        progress.window_start, progress.window_end = period.start, period.end
        for number, raw in look_up(client, options.expansions, period, events.ids):
            latest[number] = raw  # what the API holds now is newer than any delivered copy
            events.resolved.add(number)
    if latest:
        body = b'{"data":[' + b",".join(latest.values()) + b'],"cursor":{"next":0}}'
        decoded = page_decoder(RESPONSES_FEED, options, report.run_id)(body, datetime.now(timezone.utc))
        yield from as_tables(counted([Page(decoded, 0, last=True)], progress))
    progress.complete = True


def lookup_window(options: FeedOptions) -> Period:
    """Response dates a just-announced response can have: the lookback days up to today (at least
    yesterday, so a response given just before midnight is found just after it)."""
    today = day_in(datetime.now(timezone.utc), options.tenant_tz)
    return Period(RESPONSES_FEED.period_field, today - timedelta(days=max(1, options.lookback_days)), today)


def look_up(
    client: CustomerGaugeClient, expansions: Sequence[str], period: Period, ids: set[int]
) -> Iterator[tuple[int, bytes]]:
    """(id, raw record) of each wanted id found in the window; stops paging once all are found."""
    wanted = set(ids)
    for page in iter_pages(client, RESPONSES_FEED.path, feed_params(expansions, period)):
        for record in json.loads(page.body).get("data") or []:
            number = record.get(ID_KEY) if isinstance(record, dict) else None
            if number in wanted:
                wanted.discard(number)
                yield number, json.dumps(record).encode()
        if not wanted:
            return
