"""The body both resources share, as a chain of small generator stages:

    plan the window -> fetch its pages -> decode them -> (end the part) -> count -> tables for dlt

Each stage is a generator over the one before, so a page flows through all of them before the
next is asked for, and memory stays at a few pages whatever the window's size.

The part stage is only in the chain when the caller loads a window in parts (the command does,
`load_in_parts=True`): it ends the extract after about `rows_per_load` records and leaves the
feed position in the resource state, which dlt commits together with the rows; the next extract
(in this run, or the next run after a crash) continues the same window from there. Without it,
a plain `pipeline.run(customergauge())` pages the whole window into one load.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dlt
import pyarrow as pa

from .client import CustomerGaugeClient
from .decoding import DecodedPage, DecodePool, PageDecoder
from .errors import ContractViolation
from .options import FeedOptions
from .paging import FetchedPage, Period, feed_params, iter_pages
from .report import ExtractReport, FeedReport

log = logging.getLogger("nps.customergauge")

QUARANTINE_TABLE = "quarantine"
PROGRESS_EVERY_SECONDS = 15.0
# Pages are handed to dlt in batches of about this many rows: dlt's per-item work (cursor
# bookkeeping, schema checks, a parquet row group) is then paid once per batch, not per page.
ROWS_PER_BATCH = 10_000


@dataclass(frozen=True)
class Feed:
    """What tells the two sync endpoints apart."""

    table: str
    path: str
    period_field: str  # the `period[field]` the window filters on
    record_kind: str  # "response" | "non_response" (decoding.py)
    date_key: str  # the record key holding that date
    cursor_column: str  # the canonical column holding it, the resource's incremental cursor


@dataclass
class Window:
    """The day range one extract reads, the feed position it starts at and the one it reached."""

    period: Period
    start_cursor: int | None  # None: from the window's first page
    reached: int | None = field(init=False)  # feed position after the last page handed to dlt
    cut: bool = False  # the part ended before the window did

    def __post_init__(self) -> None:
        self.reached = self.start_cursor

    @property
    def resumed(self) -> bool:
        return self.start_cursor is not None


@dataclass(frozen=True)
class Page:
    """One decoded page and where the feed continues after it."""

    decoded: DecodedPage
    next_cursor: int
    last: bool  # every page of the window was fetched and this is the final one

    @property
    def records(self) -> int:
        return self.decoded.valid + self.decoded.rejected

    @property
    def response_ids(self) -> list[str]:
        rows = self.decoded.rows
        return [] if rows is None else rows.column("response_id").to_pylist()


def feed_tables(
    client: CustomerGaugeClient,
    options: FeedOptions,
    report: ExtractReport,
    cursor: dlt.sources.incremental[datetime],
    spec: Feed,
    load_in_parts: bool,
) -> Iterator[Any]:
    """One feed's rows and quarantined records for dlt: the window, or its next part."""
    positions = dlt.current.resource_state().setdefault("positions", {})
    last_seen = None if options.backfilling else cursor.get_state().get("last_value")
    window = plan_window(options, spec.period_field, positions.get(options.position_key), last_seen)
    progress = report.feed(spec.table)
    fetched_before = progress.fetched
    _start(progress, window, last_seen, options.backfilling)
    with DecodePool(options.decode_workers) as pool:
        pages = decode_pages(fetch_pages(client, spec, options, window), page_decoder(spec, options, report.run_id), pool, spec.path)
        if load_in_parts:
            pages = one_part(pages, window, options.rows_per_load, spec.table)
        yield from as_tables(counted(pages, progress))
    remember_position(positions, options.position_key, window)
    progress.complete = not window.cut
    if not options.backfilling:
        progress.cursor_after = cursor.get_state().get("last_value")
    log.info(
        "extract %s: %d records in this %s (%d pages, %d valid, %d quarantined so far)%s",
        spec.table,
        progress.fetched - fetched_before,
        "part" if load_in_parts else "load",
        progress.pages,
        progress.valid,
        progress.quarantined,
        "; more to come in the next part" if window.cut else "",
    )


def plan_window(options: FeedOptions, period_field: str, saved: dict[str, Any] | None, last_seen: datetime | None) -> Window:
    """Continue the window an earlier part left unfinished, or start the one the cursor implies."""
    if saved:
        return Window(Period.from_state(saved), int(saved["cursor"]))
    return Window(options.window(period_field, last_seen), None)


def _start(progress: FeedReport, window: Window, last_seen: datetime | None, backfilling: bool) -> None:
    """Book the window on the run's report (its first part only) and say what is read."""
    if progress.loads == 0:
        progress.window_start, progress.window_end = window.period.start, window.period.end
        progress.cursor_before = last_seen
        progress.resumed = window.resumed
    progress.loads += 1
    progress.complete = False
    log.info(
        "extract %s: %s %s..%s%s%s",
        progress.table,
        window.period.field,
        window.period.start,
        window.period.end,
        f", continuing at feed position {window.start_cursor}" if window.resumed else "",
        " (backfill; cursor untouched)" if backfilling else "",
    )


def page_decoder(spec: Feed, options: FeedOptions, run_id: str) -> PageDecoder:
    """The feed's page decoder (also serve's, for webhook records: the same validation and mapping)."""
    return PageDecoder(
        record_kind=spec.record_kind,
        table=spec.table,
        date_key=spec.date_key,
        cursor_column=spec.cursor_column,
        property_map=tuple(options.property_map.items()),
        tenant_tz=options.tenant_tz,
        run_id=run_id,
    )


def fetch_pages(client: CustomerGaugeClient, spec: Feed, options: FeedOptions, window: Window) -> Iterator[FetchedPage]:
    """Raw pages of the window from its start position, until CustomerGauge returns an empty one."""
    return iter_pages(client, spec.path, feed_params(options.expansions, window.period), window.start_cursor)


def decode_pages(pages: Iterable[FetchedPage], decoder: PageDecoder, pool: DecodePool, path: str) -> Iterator[Page]:
    """Validate and map pages on the pool's threads, in page order; check each against its envelope."""
    for fetched, decoded in pool.map_ordered(decoder, pages):
        _check(fetched.next_cursor, decoded, path)
        if decoded.rows is not None:
            decoded.rows = latest_copies(decoded.rows)
        yield Page(decoded, fetched.next_cursor, last=pool.drained)


def one_part(pages: Iterable[Page], window: Window, rows_per_load: int, table: str) -> Iterator[Page]:
    """Pages up to about `rows_per_load` records; `window` learns where the next part starts.

    A load package never holds a response twice (the merge relies on it, see
    `MERGE_UNIQUE_ROWS`). A response edited while its window is paged comes back at a later feed
    position; when a page repeats a response this part already holds, the part ends before that
    page, and the next part merges the newer copy over it.
    """
    held: set[str] = set()
    records = 0
    for page in pages:
        ids = page.response_ids
        if not held.isdisjoint(ids):
            log.info("extract %s: a response came back edited mid-window; it goes to the next part", table)
            window.cut = True
            return
        held.update(ids)
        yield page
        window.reached = page.next_cursor
        records += page.records
        if records >= rows_per_load and not page.last:
            window.cut = True
            return


def counted(pages: Iterable[Page], progress: FeedReport) -> Iterator[Page]:
    """Book each page on the run's report; log quarantine reasons, and progress every few seconds."""
    report_at = time.monotonic() + PROGRESS_EVERY_SECONDS
    for page in pages:
        progress.pages += 1
        progress.fetched += page.records
        progress.valid += page.decoded.valid
        progress.quarantined += page.decoded.rejected
        for reason in page.decoded.reasons:
            log.warning("quarantined a %s record: %s", progress.table, reason)
        if time.monotonic() >= report_at:
            report_at = time.monotonic() + PROGRESS_EVERY_SECONDS
            log.info(
                "extract %s: %d pages, %d records so far (%d quarantined)",
                progress.table,
                progress.pages,
                progress.fetched,
                progress.quarantined,
            )
        yield page


def as_tables(pages: Iterable[Page]) -> Iterator[Any]:
    """Valid rows in batches of about `ROWS_PER_BATCH`; rejected records at once, to quarantine."""
    batch: list[pa.Table] = []
    batched = 0
    for page in pages:
        if page.decoded.rows is not None:
            batch.append(page.decoded.rows)
            batched += page.decoded.rows.num_rows
            if batched >= ROWS_PER_BATCH:
                yield pa.concat_tables(batch)
                batch, batched = [], 0
        if page.decoded.quarantine is not None:
            yield _as_quarantine(page.decoded.quarantine)
    if batch:
        yield pa.concat_tables(batch)


def remember_position(positions: dict[str, Any], key: str, window: Window) -> None:
    """Keep where an unfinished window continues (committed with this part's rows), or forget it."""
    if window.cut:
        positions[key] = {**window.period.to_state(), "cursor": window.reached}
    else:
        positions.pop(key, None)


def latest_copies(rows: pa.Table) -> pa.Table:
    """A page with the same response twice keeps only its later copy (defensive; not seen)."""
    ids = rows.column("response_id").to_pylist()
    if len(set(ids)) == len(ids):
        return rows
    last = {response_id: index for index, response_id in enumerate(ids)}
    return rows.take(sorted(last.values()))


def _check(expected_cursor: int, decoded: DecodedPage, path: str) -> None:
    """The decoded page must agree with the cursor its envelope was read for."""
    if decoded.next_cursor != expected_cursor or decoded.valid + decoded.rejected == 0:
        raise ContractViolation(
            f"CustomerGauge page on {path} decoded to cursor {decoded.next_cursor} with "
            f"{decoded.valid + decoded.rejected} records, but its envelope said {expected_cursor}"
        )


def _as_quarantine(rows: pa.Table) -> Any:
    """Route rejected records to the `quarantine` table (merged on a hash of the raw payload)."""
    return dlt.mark.with_hints(
        rows,
        dlt.mark.make_hints(table_name=QUARANTINE_TABLE, write_disposition="merge", primary_key="quarantine_id"),
        create_table_variant=True,
    )
