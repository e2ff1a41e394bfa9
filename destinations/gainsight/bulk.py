"""Responses through the Bulk API: CSV files packed up to the size limit, one upload each.

Bulk jobs are defined in Gainsight's UI (target object, operation, keys, column mapping); the
connector only runs one by `jobId` (reference §4.8), 10 uploads an hour at most. The job must be
an **Upsert keyed on the response id field**, which makes a re-upload after a crash harmless.

Every upload is logged in the ledger *before* it is sent, with the rows it carries, and updated
with its statusId and final counts. Bulk reports only counts, not which rows failed, so after
completion every row is queried back by key and compared with what was sent: rows that match are
confirmed; the others go through the sync API, which names the error of each bad record.

A run that dies (or stops waiting) while Gainsight is processing leaves an open upload in the log;
the next run polls it and reconciles it before anything new is pushed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from connector_common.stop import STOP

from .answers import epoch_ms
from .client import QUERY_LIMIT
from .engine import Book, PushContext, with_company_gsids
from .errors import MaybeApplied, QuotaExhausted, UploadUnsettled
from .multipart import BulkFile
from .specs import SPECS
from .store import now

log = logging.getLogger("nps.gainsight.bulk")

BULK = next(spec for spec in SPECS if spec.bulk)  # the object the Bulk job writes

FINAL_STATES = frozenset({"COMPLETED", "FAILED", "FAILED_WITH_ERRORS", "ABORTED", "CANCELLED"})
# Keys per query-back: a whole query page (20 queries per 100k rows). What Gainsight answers is
# held as Python dicts (~12 MB for 5000 rows); what was sent is compared `COMPARE_ROWS` at a time.
RECONCILE_KEYS = QUERY_LIMIT
COMPARE_ROWS = 500

# Rows written into a Bulk file at a time (the file grows by appends; each is checked against the limit).
APPEND_ROWS = 5_000


def rebuild(ctx: PushContext, hashes: dict[str, str]) -> tuple[pa.Table, pa.Table]:
    """(items, Gainsight records) of the uploaded responses whose staged content still has the
    hash they were sent with: what an upload carried, read back from the store a page at a time."""
    spec = BULK
    rows = ctx.ledger.staged_rows(ctx.dataset, hashes)
    items = with_company_gsids(spec, rows.select([spec.key, *spec.columns]), ctx.ledger.company_gsids())
    lengths = ctx.field_lengths(spec.object_name(ctx.settings)) if spec.field_lengths and items.num_rows else {}
    records = spec.payload(items, ctx.settings, lengths)
    assert isinstance(records, pa.Table)
    return items, records


class BulkBatcher:
    """Packs the pages of responses it is given into Bulk files up to the size limit, uploading and
    reconciling each file once it is full and the last one at `finish`: a 100k-row backfill is one
    upload, while the run holds one page of rows at a time (the file itself is on disk).

    A full file is uploaded and reconciled between pages (`flush_full`, which the engine calls
    after it dropped the page), not while the page that filled it is held: the upload, Gainsight's
    processing and the reconciliation of 260k rows take minutes, and the page (its items, their
    payload and the copy of what it wrote, ~20k responses with their comments) sat under all of
    it. Only the rows that did not fit are kept, copied out of the page, for the next file.
    """

    def __init__(self, ctx: PushContext, book: Book, not_landed: Callable[[pa.Table], None]) -> None:
        self.ctx, self.book, self.not_landed = ctx, book, not_landed
        self.job_id = ctx.settings.response_bulk_job_id or ""
        self.max_bytes = ctx.settings.bulk_max_bytes
        self.file: BulkFile | None = None
        self.upload_id = ""
        self.number = 0
        self.rest: tuple[pa.Table, pa.Table] | None = None  # what did not fit in the full file: (rows, records)

    def add(self, rows: pa.Table, records: pa.Table) -> None:
        """Append `records` (of the items `rows`: their key and `content_hash`) to the open file;
        when it is full, keep the rest for `flush_full`."""
        start = 0
        while start < records.num_rows:
            file = self.file or self._open()
            length = file.append_fitting(records.slice(start, APPEND_ROWS), self.max_bytes)
            if not length:
                if not file.rows:
                    raise ValueError(f"one response is larger than the Bulk file limit of {self.max_bytes} bytes")
                rest = pa.array(range(start, records.num_rows), pa.int64())
                self.rest = (rows.take(rest), records.take(rest))  # copies: the page itself can go
                return
            chunk = rows.slice(start, length)
            self.ctx.ledger.add_upload_rows(self.upload_id, chunk.select([self.book.spec.key, "content_hash"]))
            start += length

    def flush_full(self) -> None:
        """Between pages: upload and reconcile the file `add` filled, then start the next one
        with what did not fit. Raises `QuotaExhausted` after deferring the file's rows and the rest."""
        while self.rest is not None:
            rows, records = self.rest
            self.rest = None
            try:
                self.flush()
            except QuotaExhausted as exhausted:
                self.book.defer(rows.column(self.book.spec.key).to_pylist(), exhausted)
                raise
            self.add(rows, records)

    def finish(self, stopped: QuotaExhausted | None) -> None:
        if stopped is None:
            self.flush_full()
            self.flush()
            return
        if self.rest is not None:  # the run stops: what did not fit in a file was never sent
            self.book.defer(self.rest[0].column(self.book.spec.key).to_pylist(), stopped)
            self.rest = None
        if self.file is not None:  # nothing of this file was sent
            self.file.close()
            self.file = None
            self.ctx.ledger.update_upload(self.upload_id, status="NOT_SENT", reconciled_at=now())
            self.book.defer(self.ctx.ledger.unsettled_upload_keys(self.upload_id), stopped)

    def _open(self) -> BulkFile:
        self.number += 1
        self.upload_id = uuid.uuid4().hex
        name = f"nps_responses_{self.ctx.ledger.run_id}_{self.number}.csv"
        self.ctx.ledger.open_upload(self.upload_id, self.job_id, name)
        self.file = BulkFile(self.job_id, name)
        return self.file

    def flush(self) -> None:
        """Upload the open file, follow it to the end and reconcile it."""
        file, upload_id, ctx, book = self.file, self.upload_id, self.ctx, self.book
        if file is None:
            return
        self.file = None
        STOP.enter("the push: Bulk upload")
        try:
            file.seal()
            ctx.ledger.update_upload(upload_id, file_sha256=file.sha256(), rows=file.rows, bytes=file.csv_bytes, status="SENDING")
            log.info("gainsight: bulk upload %d: %s rows, %.1f MB", self.number, f"{file.rows:,}", file.csv_bytes / 1e6)
            status_id = ctx.client.bulk_upload(file)
        except QuotaExhausted as exhausted:
            ctx.ledger.update_upload(upload_id, status="NOT_SENT", reconciled_at=now())
            book.defer(ctx.ledger.unsettled_upload_keys(upload_id), exhausted)
            raise  # the engine defers what is left of the object
        except MaybeApplied as exc:
            # Unknown whether Gainsight got it; the rows stay in the outbox and the Upsert job
            # makes sending them again harmless.
            ctx.ledger.update_upload(upload_id, status="UNKNOWN", reconciled_at=now())
            _defer_upload(book, upload_id, "a Bulk upload got no answer (5xx or a lost connection)")
            log.warning("gainsight: bulk upload %d: %s; its %d rows are retried next run", self.number, exc, file.rows)
            return
        finally:
            file.close()  # up to 80 MB of temporary file: gone before the long wait for Gainsight
        ctx.ledger.update_upload(upload_id, status_id=status_id, status="INIT")
        ctx.report.bulk_uploads += 1
        ctx.report.bulk_rows += file.rows
        if follow(ctx, upload_id, status_id) is None:
            _defer_upload(book, upload_id, "Gainsight was still processing a Bulk upload when the run stopped waiting")
            return
        try:
            reconcile(book, upload_id, self._not_landed)
        except QuotaExhausted as exhausted:  # the upload stays open: the next run reconciles it
            book.defer(ctx.ledger.unsettled_upload_keys(upload_id), exhausted)
            raise

    def _not_landed(self, rows: pa.Table) -> None:
        log.info("gainsight: %d rows of a bulk upload did not land; sending them through the sync API to learn why", rows.num_rows)
        self.not_landed(rows)


def _defer_upload(book: Book, upload_id: str, reason: str) -> None:
    """The rows of an upload whose outcome this run cannot learn wait for the next run, which
    reconciles (or re-sends) them: deferred work, so the run exits with the deferral code."""
    keys = book.ctx.ledger.unsettled_upload_keys(upload_id)
    book.defer(keys, UploadUnsettled(reason))  # booked 'deferred' in the ledger, as the summary counts them
    book.settled.update(keys)  # not to be written again in this run


def recover_uploads(ctx: PushContext) -> int:
    """Poll and reconcile uploads an earlier run left open; returns how many were finished."""
    book = Book(ctx, BULK)
    finished = 0
    for upload in ctx.ledger.open_uploads():
        upload_id = upload["upload_id"]
        if not upload["status_id"]:
            # Died while writing or sending: Gainsight may or may not have it; the rows are still in the outbox.
            ctx.ledger.update_upload(upload_id, status="UNKNOWN", reconciled_at=now())
            continue
        log.info("gainsight: bulk upload %s (statusId %s) was left open by an earlier run", upload_id, upload["status_id"])
        if follow(ctx, upload_id, upload["status_id"]) is None:
            _defer_upload(book, upload_id, "Gainsight was still processing a Bulk upload when the run stopped waiting")
            continue
        try:
            reconcile(book, upload_id, None)  # what did not land is still in the outbox
        except QuotaExhausted as exhausted:  # the upload stays open: a later run reconciles the rest
            book.defer(ctx.ledger.unsettled_upload_keys(upload_id), exhausted)
            continue
        finished += 1
    ctx.report.recovered_uploads += finished
    return finished


def follow(ctx: PushContext, upload_id: str, status_id: str) -> dict[str, Any] | None:
    """Poll the job status with backoff until it is final; None if the run stops waiting."""
    settings = ctx.settings
    STOP.enter("the push: Bulk polling")
    deadline = ctx.clock() + settings.bulk_poll_timeout_seconds
    interval = settings.bulk_poll_interval_seconds
    last = None
    while True:
        try:
            status = ctx.client.bulk_status(status_id)
        except QuotaExhausted as exhausted:
            ctx.report.defer(exhausted.family, exhausted.window, exhausted.resume_at)
            return None
        state = str(status.get("jobStatus") or "").upper()
        if state != last:
            log.info("gainsight: bulk statusId %s: %s", status_id, state or "unknown")
            last = state
        ctx.ledger.update_upload(upload_id, status=state)
        if state in FINAL_STATES:
            ctx.ledger.update_upload(
                upload_id,
                total_count=status.get("totalCount"),
                success_count=status.get("successCount"),
                failure_count=status.get("failureCount"),
                finished_at=now(),
            )
            return status
        if ctx.clock() + interval > deadline:
            log.warning(
                "gainsight: bulk statusId %s still %s after %.0f s; the next run picks it up",
                status_id,
                state,
                settings.bulk_poll_timeout_seconds,
            )
            return None
        # The upload stays open in the log (the next run polls it to the end); other objects'
        # calls go on meanwhile, and a stop request ends the wait.
        ctx.pause(interval)
        interval = min(interval * 1.5, 30.0)


def reconcile(book: Book, upload_id: str, not_landed: Callable[[pa.Table], None] | None) -> None:
    """Confirm the rows Gainsight holds exactly as sent; hand the others (items) to `not_landed`.

    Works through the upload one query of `RECONCILE_KEYS` keys at a time, rebuilding what was sent
    from the store (`rebuild`), so memory follows the chunk, not the file.
    """
    ctx, spec = book.ctx, book.spec
    settings = ctx.settings
    key = spec.key_field(settings)
    datetime_fields = {settings.response_fields.get("responded_at")}
    landed_total = missed_total = 0
    after = ""
    while hashes := ctx.ledger.upload_rows(upload_id, after, RECONCILE_KEYS):
        after = max(hashes)
        rows, records = rebuild(ctx, hashes)
        ids = [str(rid) for rid in records[key].to_pylist()]
        before = ctx.ledger.state(spec.name, ids, ["gsid"])
        stored = ctx.client.find_by_key(spec.object_name(settings), key, ids, list(records.column_names))
        landed: dict[str, list[dict[str, Any]]] = {"created": [], "updated": []}
        missed: list[int] = []
        sent = (record for start in range(0, records.num_rows, COMPARE_ROWS) for record in records.slice(start, COMPARE_ROWS).to_pylist())
        for offset, (record, rid) in enumerate(zip(sent, ids, strict=True)):
            found = stored.get(rid)
            if found is not None and holds_as_sent(record, found, datetime_fields):
                outcome = "updated" if (before.get(rid) or {}).get("gsid") else "created"
                landed[outcome].append(
                    {
                        spec.key: rid,
                        "gsid": found.get("Gsid"),
                        "pushed_hash": hashes[rid],
                        "via": "bulk",
                        "status": "synced",
                        "bulk_upload_id": upload_id,
                    }
                )
            else:
                missed.append(offset)
        for outcome, booked in landed.items():
            book.confirm(booked, outcome)
            landed_total += len(booked)
        missed_total += len(missed)
        if missed and not_landed is not None:
            not_landed(rows.take(pa.array(missed, pa.int64())))
        del rows, records, stored, before, landed
        ctx.ledger.release_cache()  # the chunk's objects, and the blocks its rebuild scanned, before the next
    ctx.ledger.update_upload(upload_id, landed=landed_total, not_landed=missed_total, reconciled_at=now())
    log.info("gainsight: bulk upload reconciled: %d landed, %d did not", landed_total, missed_total)


def holds_as_sent(sent: dict[str, Any], stored: dict[str, Any], datetime_fields: set[str | None]) -> bool:
    """Whether Gainsight holds what was sent (reads give epoch ms for datetimes, ISO on some tenants)."""
    for name, value in sent.items():
        other = stored.get(name)
        if name in datetime_fields:
            if epoch_ms(value) != epoch_ms(other):
                return False
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not isinstance(other, (int, float)) or float(value) != float(other):
                return False
        elif (value or None) != (other or None):
            return False
    return True
