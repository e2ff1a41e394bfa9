"""Turning raw pages into canonical Arrow tables, on worker threads.

A page is decoded on the fast path (`arrow_pages.read_page`: pyarrow's JSON reader plus strict
checks, in C++ without the GIL) or, when that declines, through the pydantic schema, which also
names the reason for every invalid record. Decoding is a pure function of the page bytes, so it
runs on a small thread pool while the main thread fetches the next pages and feeds dlt. Results
come back in page order, so the output is identical to decoding inline.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from .arrow_pages import read_page, records_to_arrow
from .mapping import non_responses_table, quarantine_table, responses_table
from .models import PageValidator, RawNonResponse, RawResponse
from .paging import FetchedPage

_TABLE_BUILDERS: dict[str, Callable[..., pa.Table]] = {
    "response": responses_table,
    "non_response": non_responses_table,
}
_VALIDATORS: dict[str, PageValidator[Any]] = {
    "response": PageValidator(RawResponse),
    "non_response": PageValidator(RawNonResponse),
}


@dataclass
class DecodedPage:
    rows: pa.Table | None  # canonical rows of the valid records
    quarantine: pa.Table | None  # rejected records with reasons and raw payloads
    reasons: list[str]
    next_cursor: int
    valid: int
    rejected: int
    fast_path: bool


@dataclass(frozen=True)
class PageDecoder:
    """Validate one page and map it to canonical Arrow tables."""

    record_kind: str  # "response" | "non_response"
    table: str
    date_key: str
    cursor_column: str
    property_map: tuple[tuple[str, str], ...]
    tenant_tz: str
    run_id: str

    def __call__(self, body: bytes, fetched_at: datetime) -> DecodedPage:
        clean = read_page(body, self.record_kind)
        if clean is not None:
            return DecodedPage(
                rows=self._canonical(clean.records, fetched_at),
                quarantine=None,
                reasons=[],
                next_cursor=clean.next_cursor,
                valid=clean.records.num_rows,
                rejected=0,
                fast_path=True,
            )
        page = _VALIDATORS[self.record_kind].validate(body)
        rows = None
        if page.records:
            rows = self._canonical(records_to_arrow(page.records, self.record_kind, self.tenant_tz), fetched_at)
        quarantine = None
        if page.rejects:
            quarantine = quarantine_table(
                page.rejects, self.table, self.run_id, fetched_at, self.tenant_tz, self.date_key, self.cursor_column
            )
        return DecodedPage(
            rows=rows,
            quarantine=quarantine,
            reasons=[reject.reason for reject in page.rejects],
            next_cursor=page.next_cursor,
            valid=len(page.records),
            rejected=len(page.rejects),
            fast_path=False,
        )

    def _canonical(self, raw: pa.Table, fetched_at: datetime) -> pa.Table:
        return _TABLE_BUILDERS[self.record_kind](raw, dict(self.property_map), self.tenant_tz, fetched_at)


def default_workers() -> int:
    """Decoding threads: two keep up with one paging cursor; more would only wait for pages."""
    return min(2, os.cpu_count() or 1)


class DecodePool:
    """Ordered, bounded parallel map of a decoder over fetched pages (`workers=0`: inline)."""

    def __init__(self, workers: int):
        self.workers = workers
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="cg-decode") if workers else None
        self.drained = False  # every page was fetched and the one just yielded was the last

    def map_ordered(self, decode: PageDecoder, pages: Iterable[FetchedPage]) -> Iterator[tuple[FetchedPage, DecodedPage]]:
        """Decode pages, yielding (page, decoded) in page order with a few pages in flight."""
        if self._executor is None:
            for page in pages:
                yield page, decode(page.body, page.fetched_at)
            return
        in_flight: deque[tuple[FetchedPage, Future[DecodedPage]]] = deque()
        for page in pages:
            in_flight.append((page, self._executor.submit(decode, page.body, page.fetched_at)))
            if len(in_flight) > self.workers * 2:
                done, future = in_flight.popleft()
                yield done, future.result()
        while in_flight:
            done, future = in_flight.popleft()
            self.drained = not in_flight
            yield done, future.result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
