"""dlt source for CustomerGauge NPS responses (v7 sync API).

`customergauge()` is configured from `[sources.customergauge]` in `.dlt/config.toml` and
`.dlt/secrets.toml`, or the matching `SOURCES__CUSTOMERGAUGE__*` environment variables.

Incremental loading follows the response date, not the sync cursor: each run asks for
`period[field]=date_survey_response` from the last seen response date minus `lookback_days` up to
today. The lookback re-reads recent days on every run, which catches late-arriving responses
(partial completes that convert later) and edits to responses whose response date falls inside
the window. It cannot catch an edit to a response older than the window, because the API has no
updated-at filter; run a backfill over that range (`--start/--end`) when that matters.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Optional, Sequence

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from connector_common.first_contact import credential_problem, url_problem

from .auth import ClientCredentials
from .client import CustomerGaugeClient, RetryPolicy
from .decoding import DecodePool, PageDecoder
from .errors import ContractViolation, InvalidSetting
from .options import FeedOptions
from .paging import Period, feed_params, iter_pages
from .report import ExtractReport
from .settings import (
    API_BASE_URL,
    CREDENTIALS,
    NON_RESPONSES_PATH,
    RESPONSES_PATH,
    TOKEN_URL,
    default_api_base_url,
    default_token_url,
)

__all__ = ["customergauge", "ExtractReport"]

log = logging.getLogger("nps.customergauge")

RESPONSES_TABLE = "nps_responses"
NON_RESPONSES_TABLE = "nps_non_responses"
QUARANTINE_TABLE = "quarantine"
PROGRESS_EVERY_SECONDS = 15.0
# Pages are handed to dlt in batches of about this many rows: dlt's per-item work (cursor
# bookkeeping, schema checks, a parquet row group) is then paid once per batch, not per page.
ROWS_PER_BATCH = 10_000


@dlt.source(name="customergauge", section="customergauge")
def customergauge(
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    initial_response_date: str = dlt.config.value,
    region: str = "eu",
    api_base_url: Optional[str] = None,
    token_url: Optional[str] = None,
    lookback_days: int = 3,
    tenant_timezone: str = "UTC",
    property_map: Optional[dict[str, str]] = None,
    expansions: Optional[list[str]] = None,
    include_non_responses: bool = False,
    max_attempts: int = 6,
    retry_backoff_seconds: float = 1.0,
    max_retry_wait_seconds: float = 120.0,
    decode_workers: Optional[int] = None,
    rows_per_load: int = 100_000,
    backfill_start: Optional[str] = None,
    backfill_end: Optional[str] = None,
    report: Optional[ExtractReport] = None,
) -> Sequence[DltResource]:
    """CustomerGauge responses (and optionally non-responses) as canonical staging tables.

    Args:
        client_id, client_secret: the Connected App's OAuth2 client credentials (secrets).
        initial_response_date: YYYY-MM-DD the very first run starts from.
        region: eu, us or au; picks the default API and token hosts.
        api_base_url, token_url: full overrides of those hosts (proxies, the sandbox).
        lookback_days: days re-read before the last seen response date on every run.
        tenant_timezone: IANA zone CustomerGauge's naive datetimes are in (tenant setting).
        property_map: canonical column -> CustomerGauge property label, merged over the defaults.
        expansions: `with[]` values requested on every page.
        include_non_responses: also stage invitations without an answer.
        max_attempts, retry_backoff_seconds, max_retry_wait_seconds: the retry policy.
        decode_workers: threads that parse and map pages in parallel (None: by core count,
            0: all inline).
        rows_per_load: a window larger than this is extracted and loaded in parts of about this
            many rows, which bounds the memory a merge needs; an interrupted run resumes at the
            part it had reached.
        backfill_start, backfill_end: YYYY-MM-DD range to re-load without moving the cursor.
        report: filled with counts for the run summary (passed by the command, not config).
    """
    options = FeedOptions.build(
        initial_response_date=initial_response_date,
        lookback_days=lookback_days,
        tenant_timezone=tenant_timezone,
        property_map=property_map,
        expansions=expansions,
        backfill_start=backfill_start,
        backfill_end=backfill_end,
        decode_workers=decode_workers,
        rows_per_load=rows_per_load,
    )
    api_base_url, token_url = api_base_url or default_api_base_url(region), token_url or default_token_url(region)
    check_first_contact_settings(client_id, client_secret, api_base_url, token_url)
    client = CustomerGaugeClient(
        api_base_url,
        token_url,
        ClientCredentials(client_id, client_secret),
        RetryPolicy(max_attempts=max_attempts, backoff=retry_backoff_seconds, max_wait=max_retry_wait_seconds),
    )
    report = report or ExtractReport(run_id=datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    report.clients.append(client)
    resources = [responses(client, options, report, responded_at=_cursor("responded_at", options))]
    if include_non_responses:
        resources.append(non_responses(client, options, report, sent_at=_cursor("sent_at", options)))
    return resources


def check_first_contact_settings(client_id: str, client_secret: str, api_base_url: str, token_url: str) -> None:
    """Refuse credentials copied unfilled from the example, and plain http off loopback, before any call."""
    problems = [credential_problem(value, key) for value, key in zip((client_id, client_secret), CREDENTIALS)]
    problems += [url_problem(url, key) for url, key in ((api_base_url, API_BASE_URL), (token_url, TOKEN_URL))]
    found = [problem for problem in problems if problem]
    if found:
        raise InvalidSetting("; ".join(found))


def _cursor(column: str, options: FeedOptions) -> dlt.sources.incremental[datetime]:
    """The incremental cursor of a feed.

    The API's period filter chooses the rows; the cursor keeps the highest response date seen,
    from which the next window starts. `lag` keeps dlt from filtering on its own (see
    `FeedOptions.lag_seconds`); quarantined rows may carry no date
    (`on_cursor_value_missing="include"`); deduplication at the boundary is off (`primary_key=()`)
    because merging on the primary key already handles it.
    """
    return dlt.sources.incremental(
        column,
        initial_value=options.initial,
        end_value=options.backfill_end_exclusive,
        lag=options.lag_seconds,
        on_cursor_value_missing="include",
        primary_key=(),
    )


# Each load package holds every response at most once (see `_feed`), which lets the merge skip
# deduplicating the staged rows: a window function over full rows that made DuckDB's memory grow
# with the size of the load.
MERGE_UNIQUE_ROWS = {"disposition": "merge", "strategy": "delete-insert", "deduplicated": True}


@dlt.resource(name=RESPONSES_TABLE, primary_key="response_id", write_disposition=MERGE_UNIQUE_ROWS)
def responses(
    client: CustomerGaugeClient,
    options: FeedOptions,
    report: ExtractReport,
    responded_at: dlt.sources.incremental[datetime] = dlt.sources.incremental("responded_at"),
) -> Iterator[Any]:
    """Completed surveys, merged on `response_id` (latest version wins)."""
    yield from _feed(client, options, report, responded_at, RESPONSES_FEED)


@dlt.resource(name=NON_RESPONSES_TABLE, primary_key="response_id", write_disposition=MERGE_UNIQUE_ROWS)
def non_responses(
    client: CustomerGaugeClient,
    options: FeedOptions,
    report: ExtractReport,
    sent_at: dlt.sources.incremental[datetime] = dlt.sources.incremental("sent_at"),
) -> Iterator[Any]:
    """Invitations without an answer, filtered on the send date (`period[field]=date_sent`)."""
    yield from _feed(client, options, report, sent_at, NON_RESPONSES_FEED)


@dataclass(frozen=True)
class Feed:
    """What tells the two sync endpoints apart."""

    table: str
    path: str
    period_field: str  # the `period[field]` the window filters on
    record_kind: str  # "response" | "non_response" (decoding.py)
    date_key: str  # the record key holding that date
    cursor_column: str  # the canonical column holding it, the resource's incremental cursor


RESPONSES_FEED = Feed(
    RESPONSES_TABLE, RESPONSES_PATH, "date_survey_response", "response", "date_survey_response", "responded_at"
)
NON_RESPONSES_FEED = Feed(
    NON_RESPONSES_TABLE, NON_RESPONSES_PATH, "date_sent", "non_response", "date_email_sent", "sent_at"
)


def _feed(
    client: CustomerGaugeClient,
    options: FeedOptions,
    report: ExtractReport,
    cursor: dlt.sources.incremental[datetime],
    spec: Feed,
) -> Iterator[Any]:
    """Shared body of both feeds: page, decode (validate + map), route rejects to quarantine.

    Stops after about `rows_per_load` rows and records where it stopped in the resource state,
    which dlt commits together with the rows: the next extract (in this run, or the next run
    after a crash) continues the same window from there.

    A load package never holds a response twice. A response edited while its window is being
    paged comes back at a later feed position; when a page repeats a response this part already
    holds, the part ends before that page, and the next part merges the newer copy over it.
    """
    table = spec.table
    feed = report.feed(table)
    positions = dlt.current.resource_state().setdefault("positions", {})
    saved = positions.get(options.position_key)
    last_seen = None if options.backfilling else cursor.get_state().get("last_value")
    if saved:
        period, start_cursor = Period.from_state(saved), int(saved["cursor"])
    else:
        period, start_cursor = options.window(spec.period_field, last_seen), None
    if feed.loads == 0:
        feed.window_start, feed.window_end = period.start, period.end
        feed.cursor_before = last_seen
        feed.resumed = saved is not None
    feed.loads += 1
    log.info(
        "extract %s: %s %s..%s%s%s",
        table,
        period.field,
        period.start,
        period.end,
        f", continuing at feed position {start_cursor}" if start_cursor is not None else "",
        " (backfill; cursor untouched)" if options.backfilling else "",
    )
    decoder = PageDecoder(
        record_kind=spec.record_kind,
        table=table,
        date_key=spec.date_key,
        cursor_column=spec.cursor_column,
        property_map=tuple(options.property_map.items()),
        tenant_tz=options.tenant_tz,
        run_id=report.run_id,
    )
    pages = iter_pages(client, spec.path, feed_params(options.expansions, period), start_cursor)
    progress_at = time.monotonic() + PROGRESS_EVERY_SECONDS
    batch: list[pa.Table] = []
    extracted = 0
    part_ids: set[str] = set()
    resume_at = start_cursor
    feed.complete = False
    with DecodePool(options.decode_workers) as pool:
        for page, decoded in pool.map_ordered(decoder, pages):
            _check(page.next_cursor, decoded, spec.path)
            if decoded.rows is not None:
                decoded.rows = _latest_copies(decoded.rows)
                ids = decoded.rows.column("response_id").to_pylist()
                if not part_ids.isdisjoint(ids):
                    positions[options.position_key] = {**period.to_state(), "cursor": resume_at}
                    log.info("extract %s: a response came back edited mid-window; it goes to the next part", table)
                    break
                part_ids.update(ids)
            resume_at = page.next_cursor
            feed.pages += 1
            feed.fetched += decoded.valid + decoded.rejected
            feed.valid += decoded.valid
            extracted += decoded.valid + decoded.rejected
            if decoded.rows is not None:
                batch.append(decoded.rows)
                if sum(rows.num_rows for rows in batch) >= ROWS_PER_BATCH:
                    yield pa.concat_tables(batch)
                    batch = []
            if decoded.quarantine is not None:
                feed.quarantined += decoded.rejected
                for reason in decoded.reasons:
                    log.warning("quarantined a %s record: %s", table, reason)
                yield _as_quarantine(decoded.quarantine)
            if time.monotonic() >= progress_at:
                progress_at = time.monotonic() + PROGRESS_EVERY_SECONDS
                log.info("extract %s: %d pages, %d records so far (%d quarantined)", table, feed.pages, feed.fetched, feed.quarantined)
            if extracted >= options.rows_per_load and not pool.drained:
                positions[options.position_key] = {**period.to_state(), "cursor": page.next_cursor}
                break
        else:
            positions.pop(options.position_key, None)
            feed.complete = True
    if batch:
        yield pa.concat_tables(batch)
    if not options.backfilling:
        feed.cursor_after = cursor.get_state().get("last_value")
    log.info(
        "extract %s: %d records in this part (%d pages, %d valid, %d quarantined so far)%s",
        table,
        extracted,
        feed.pages,
        feed.valid,
        feed.quarantined,
        "" if feed.complete else "; more to come in the next part",
    )


def _latest_copies(rows: pa.Table) -> pa.Table:
    """A page with the same response twice keeps only its later copy (defensive; not seen)."""
    ids = rows.column("response_id").to_pylist()
    if len(set(ids)) == len(ids):
        return rows
    last = {response_id: index for index, response_id in enumerate(ids)}
    return rows.take(sorted(last.values()))


def _check(expected_cursor: int, decoded: Any, path: str) -> None:
    """The decoded page must agree with the cursor its envelope was read for."""
    if decoded.next_cursor != expected_cursor or decoded.valid + decoded.rejected == 0:
        raise ContractViolation(
            f"CustomerGauge page on {path} decoded to cursor {decoded.next_cursor} with "
            f"{decoded.valid + decoded.rejected} records, but its envelope said {expected_cursor}"
        )


def _as_quarantine(rows: Any) -> Any:
    """Route rejected records to the `quarantine` table (merged on a hash of the raw payload)."""
    return dlt.mark.with_hints(
        rows,
        dlt.mark.make_hints(table_name=QUARANTINE_TABLE, write_disposition="merge", primary_key="quarantine_id"),
        create_table_variant=True,
    )
