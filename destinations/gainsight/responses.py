"""Step 3: the NPS responses, as records of the response object keyed by `ResponseId__gc`.

Large outboxes go through the Bulk job (see `bulk.py`); small ones, and whatever Bulk could not
land, through the sync API: existing records (known GSID in the ledger, or found by key) are
updated by key, the rest inserted, ≤50 per call, with bad records isolated and dead-lettered.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .client import WRITE_LIMIT
from .context import PushContext
from .errors import GainsightRejected, QuotaExhausted
from .records import batch_records, response_table, truncated
from .writes import insert_reconciled, write_isolating

log = logging.getLogger("nps.gainsight.responses")

TABLE = "responses"
NO_MATCH = "GSOBJ_1011"


def pending_responses(ctx: PushContext, outbox: pa.Table, companies: dict[str, str]) -> tuple[pa.Table, pa.Table]:
    """(rows to push now, their Gainsight records); rows whose company is not confirmed wait.

    Column-wise in Arrow, one filter (none when every row goes): each filter copies the whole
    outbox, and per-row Python objects for 100k rows would stay in the heap for the rest of the run.
    Content given up after `max_attempts` never gets here (the outbox and `still_pending` leave it out).
    """
    needed = pc.fill_null(outbox["needs_response"], False)
    accounts = outbox["account_id"]
    gsids = pc.take(
        pa.array(list(companies.values()), pa.string()),
        pc.index_in(accounts, value_set=pa.array(list(companies), pa.string())),
    )
    ready = pc.or_(pc.is_null(accounts), pc.is_valid(gsids))
    waiting = outbox["response_id"].filter(pc.and_(needed, pc.invert(ready))).to_pylist()
    if waiting:
        ctx.report.defer_records(TABLE, waiting)
        log.info("gainsight: responses: %d wait for their company to be confirmed", len(waiting))
    keep = pc.and_(needed, ready)
    rows = outbox
    if not pc.all(keep).as_py():
        rows, gsids = outbox.filter(keep), pc.filter(gsids, keep)
    fields = ctx.settings.response_fields
    lengths = ctx.field_lengths() if rows.num_rows else {}
    for target, count in truncated(rows, fields, lengths).items():
        log.warning("gainsight: %d value(s) cut to the %d characters %s holds", count, lengths[target], target)
    return rows, response_table(rows, gsids, fields, lengths)


def push_sync(ctx: PushContext, rows: pa.Table, records: pa.Table) -> None:
    """Update-by-key what exists, insert the rest; ≤50 records per call."""
    if not rows.num_rows:
        return
    settings = ctx.settings
    key = settings.response_key_field
    ids = rows["response_id"].to_pylist()
    hashes = dict(zip(ids, rows["content_hash"].to_pylist()))
    known = ctx.ledger.state(TABLE, ids, ["gsid"])
    unknown = [rid for rid in ids if not (known.get(rid) or {}).get("gsid")]
    try:
        found = ctx.client.find_by_key(settings.response_object, key, unknown, []) if unknown else {}
    except QuotaExhausted as exhausted:
        ctx.defer(TABLE, ids, exhausted)
        return
    exists = [rid for rid in ids if (known.get(rid) or {}).get("gsid") or rid in found]
    present = pc.is_in(records[key], value_set=pa.array(exists, pa.string()))
    updates, inserts = records.filter(present), records.filter(pc.invert(present))
    writer = ResponseWriter(ctx, hashes)
    for operation, table in (("update", updates), ("insert", inserts)):
        # Dicts are made 50 at a time: a 100k-row outbox as dicts would cost hundreds of MB.
        for start in range(0, table.num_rows, WRITE_LIMIT):
            try:
                writer.write(operation, batch_records(table.slice(start, WRITE_LIMIT)))
            except QuotaExhausted as exhausted:
                rest = table.slice(start)[key].to_pylist() + (inserts[key].to_pylist() if operation == "update" else [])
                ctx.defer(TABLE, [str(rid) for rid in rest], exhausted)
                return
    log.info(
        "gainsight: responses (sync API): %d created, %d updated, %d failed",
        writer.created,
        writer.updated,
        writer.failed,
    )


class ResponseWriter:
    """Writes batches and books each outcome in the ledger and the report."""

    def __init__(self, ctx: PushContext, hashes: dict[str, str]) -> None:
        self.ctx = ctx
        self.hashes = hashes
        self.key = ctx.settings.response_key_field
        self.created = self.updated = self.failed = 0

    def write(self, operation: str, batch: list[dict[str, Any]]) -> None:
        settings = self.ctx.settings

        def send(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if operation == "insert":
                return insert_reconciled(self.ctx.client, "response", settings.response_object, self.key, records)
            return self.ctx.client.update("response", settings.response_object, records, [self.key])

        def landed(records: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
            self.confirm(records, [r.get("Gsid") for r in results], "sync")
            counts = self.ctx.report[TABLE]
            if operation == "insert":
                counts.created += len(records)
                self.created += len(records)
            else:
                counts.updated += len(records)
                self.updated += len(records)

        def rejected(record: dict[str, Any], exc: GainsightRejected) -> None:
            if operation == "update" and exc.code == NO_MATCH:
                # Deleted in Gainsight since we last wrote it: create it again.
                self.write("insert", [record])
                return
            rid = str(record[self.key])
            self.ctx.ledger.fail(TABLE, rid, self.hashes[rid], exc.code, exc.reason, record)
            self.ctx.report[TABLE].failed += 1
            self.failed += 1
            log.warning("gainsight: response %s dead-lettered: %s", rid, exc)

        write_isolating(batch, send, landed, rejected)

    def confirm(self, records: list[dict[str, Any]], gsids: list[str | None], via: str, upload_id: str | None = None) -> None:
        self.ctx.ledger.confirm(
            TABLE,
            [
                {
                    "response_id": str(record[self.key]),
                    "gsid": gsid,
                    "pushed_hash": self.hashes[str(record[self.key])],
                    "via": via,
                    "status": "synced",
                    "bulk_upload_id": upload_id,
                }
                for record, gsid in zip(records, gsids)
            ],
        )
