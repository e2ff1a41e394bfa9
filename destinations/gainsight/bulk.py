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
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from connector_common.stop import STOP

from .answers import epoch_ms
from .engine import Book, PushContext
from .errors import MaybeApplied, QuotaExhausted
from .multipart import BulkFile
from .records import csv_bytes
from .store import now

if TYPE_CHECKING:
    from .writes import SyncWriter

log = logging.getLogger("nps.gainsight.bulk")

FINAL_STATES = frozenset({"COMPLETED", "FAILED", "FAILED_WITH_ERRORS", "ABORTED", "CANCELLED"})
SAMPLE_ROWS = 500
# Keys per query-back: below the 5000-row page on purpose. Each chunk is held as Python dicts
# twice (sent and stored); 2000 keeps that near 10 MB for 50 queries per 100k rows instead of 20.
RECONCILE_KEYS = 2000

# Rebuilds (rows, Gainsight records) for response ids whose staged content still has the given hash.
LoadRows = Callable[[dict[str, str]], tuple[pa.Table, pa.Table]]


def push_bulk(writer: SyncWriter, indices: Sequence[int], records: pa.Table) -> list[int]:
    """Upload the items `indices` (their `records`) in as few files as the size limit allows and
    reconcile each; returns the items that did not land, for the sync API to name their errors."""
    ctx, book = writer.ctx, writer.book
    STOP.enter("the push: Bulk upload")
    settings = ctx.settings
    job_id = settings.response_bulk_job_id or ""
    rows = writer.plan.rows(indices)
    per_row = bytes_per_row(records)
    start, number = 0, 0
    missed: list[int] = []
    while start < records.num_rows:
        number += 1
        name = f"nps_responses_{ctx.ledger.run_id}_{number}.csv"
        upload = fitting_file(job_id, name, records, start, settings.bulk_max_bytes, per_row)
        length = upload.rows
        chunk_rows, chunk_records = rows.slice(start, length), records.slice(start, length)
        chunk = indices[start : start + length]
        start += length
        upload_id = uuid.uuid4().hex
        try:
            ctx.ledger.start_upload(
                upload_id, job_id, name, upload.sha256(), chunk_rows.select([book.spec.key, "content_hash"]), upload.csv_bytes
            )
            log.info("gainsight: bulk upload %d: %s rows, %.1f MB", number, f"{length:,}", upload.csv_bytes / 1e6)
            status_id = ctx.client.bulk_upload(upload)
        except QuotaExhausted:
            ctx.ledger.update_upload(upload_id, status="NOT_SENT", reconciled_at=now())
            raise  # the engine defers every row not settled yet
        except MaybeApplied as exc:
            # Unknown whether Gainsight got it; the rows stay in the outbox and the Upsert job
            # makes sending them again harmless.
            ctx.ledger.update_upload(upload_id, status="UNKNOWN", reconciled_at=now())
            _defer_upload(book, chunk_rows, "a Bulk upload got no answer (5xx or a lost connection)")
            log.warning("gainsight: bulk upload %d: %s; its %d rows are retried next run", number, exc, length)
            continue
        finally:
            upload.close()  # up to 80 MB of temporary file: gone before the long wait for Gainsight
        ctx.ledger.update_upload(upload_id, status_id=status_id, status="INIT")
        ctx.report.bulk_uploads += 1
        ctx.report.bulk_rows += length
        if follow(ctx, upload_id, status_id) is None:
            _defer_upload(book, chunk_rows, "Gainsight was still processing a Bulk upload when the run stopped waiting")
            continue
        not_landed = reconcile(book, upload_id, chunk_rows, chunk_records)
        if not_landed:
            log.info(
                "gainsight: bulk upload %d: %d rows did not land; sending them through the sync API to learn why",
                number,
                len(not_landed),
            )
            missed += [chunk[offset] for offset in not_landed]
    return missed


def _defer_upload(book: Book, rows: pa.Table, reason: str) -> None:
    """The rows of an upload whose outcome this run cannot learn wait for the next run, which
    reconciles (or re-sends) them: deferred work, so the run exits with the deferral code."""
    keys = [str(key) for key in rows[book.spec.key].to_pylist()]
    book.settled.update(keys)  # not to be written again in this run
    book.ctx.report.defer_records(book.spec.name, keys)
    book.ctx.report.defer("bulk", "upload", None, reason)


def fitting_file(job_id: str, name: str, records: pa.Table, start: int, max_bytes: int, per_row: float) -> BulkFile:
    """The Bulk file of the most rows from `start` whose CSV stays under `max_bytes`."""
    length = min(records.num_rows - start, max(1, int(max_bytes * 0.95 / per_row)))
    while True:
        upload = BulkFile(job_id, name, records.slice(start, length))
        if upload.csv_bytes <= max_bytes:
            return upload
        upload.close()
        if length == 1:
            raise ValueError(f"one response is larger than the Bulk file limit of {max_bytes} bytes")
        length = max(1, int(length * max_bytes * 0.95 / upload.csv_bytes))


def bytes_per_row(records: pa.Table) -> float:
    sample = records.slice(0, SAMPLE_ROWS)
    return max(1.0, len(csv_bytes(sample)) / max(1, sample.num_rows))


def recover_uploads(book: Book, load_rows: LoadRows) -> int:
    """Poll and reconcile uploads an earlier run left open; returns how many were finished."""
    ctx = book.ctx
    finished = 0
    for upload in ctx.ledger.open_uploads():
        upload_id = upload["upload_id"]
        if not upload["status_id"]:
            # Died while sending: Gainsight may or may not have it; the rows are still in the outbox.
            ctx.ledger.update_upload(upload_id, status="UNKNOWN", reconciled_at=now())
            continue
        log.info("gainsight: bulk upload %s (statusId %s) was left open by an earlier run", upload_id, upload["status_id"])
        if follow(ctx, upload_id, upload["status_id"]) is None:
            continue
        rows, records = load_rows(ctx.ledger.upload_rows(upload_id))
        reconcile(book, upload_id, rows, records)
        finished += 1
    ctx.report.recovered_uploads += finished
    return finished


def follow(ctx: PushContext, upload_id: str, status_id: str) -> dict[str, Any] | None:
    """Poll the job status with backoff until it is final; None if the run stops waiting."""
    settings = ctx.settings
    STOP.enter("the push: Bulk polling")
    deadline = time.monotonic() + settings.bulk_poll_timeout_seconds
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
        if time.monotonic() + interval > deadline:
            log.warning(
                "gainsight: bulk statusId %s still %s after %.0f s; the next run picks it up",
                status_id,
                state,
                settings.bulk_poll_timeout_seconds,
            )
            return None
        STOP.wait(interval)  # the upload stays open in the log; the next run polls it to the end
        interval = min(interval * 1.5, 30.0)


def reconcile(book: Book, upload_id: str, rows: pa.Table, records: pa.Table) -> list[int]:
    """Confirm the rows Gainsight holds exactly as sent; return the positions of the others.

    Works through the upload one query of `RECONCILE_KEYS` keys at a time, with Python objects
    (records, keys, hashes) for that chunk only, so memory follows the chunk, not the file.
    """
    ctx, spec = book.ctx, book.spec
    settings = ctx.settings
    key = spec.key_field(settings)
    datetime_fields = {settings.response_fields.get("responded_at")}
    missed: list[int] = []
    landed_total = 0
    for start in range(0, records.num_rows, RECONCILE_KEYS):
        chunk = rows.slice(start, RECONCILE_KEYS)
        hashes = dict(zip(chunk[spec.key].to_pylist(), chunk["content_hash"].to_pylist(), strict=True))
        sent = records.slice(start, RECONCILE_KEYS).to_pylist()
        ids = [str(record[key]) for record in sent]
        before = ctx.ledger.state(spec.name, ids, ["gsid"])
        stored = ctx.client.find_by_key(spec.object_name(settings), key, ids, list(records.column_names))
        landed: dict[str, list[dict[str, Any]]] = {"created": [], "updated": []}
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
                missed.append(start + offset)
        for outcome, booked in landed.items():
            book.confirm(booked, outcome)
            landed_total += len(booked)
    ctx.ledger.update_upload(upload_id, landed=landed_total, not_landed=len(missed), reconciled_at=now())
    log.info("gainsight: bulk upload reconciled: %d landed, %d did not", landed_total, len(missed))
    return missed


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
