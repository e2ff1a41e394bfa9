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
    """(rows to push now, their Gainsight records); rows whose company is not confirmed wait."""
    rows = outbox.filter(outbox["needs_response"])
    accounts = rows["account_id"].to_pylist()
    gsids = pa.array([companies.get(a) if a else None for a in accounts], pa.string())
    ready = pc.or_(pc.is_null(rows["account_id"]), pc.is_valid(gsids))
    waiting = rows.filter(pc.invert(ready))
    if waiting.num_rows:
        ctx.report[TABLE].deferred += waiting.num_rows
        log.info("gainsight: responses: %d wait for their company to be confirmed", waiting.num_rows)
    rows, gsids = rows.filter(ready), gsids.filter(ready)
    state = ctx.ledger.state(TABLE, rows["response_id"].to_pylist(), ["failed_hash", "attempts"])
    keep = [
        not ctx.ledger.gives_up(state.get(rid), digest)
        for rid, digest in zip(rows["response_id"].to_pylist(), rows["content_hash"].to_pylist())
    ]
    ctx.report[TABLE].given_up += keep.count(False)
    mask = pa.array(keep, pa.bool_())
    rows, gsids = rows.filter(mask), gsids.filter(mask)
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
    exists = {rid for rid in ids if (known.get(rid) or {}).get("gsid") or rid in found}
    all_records = batch_records(records)
    updates = [r for r in all_records if str(r[key]) in exists]
    inserts = [r for r in all_records if str(r[key]) not in exists]
    writer = ResponseWriter(ctx, hashes)
    for operation, batch_list in (("update", updates), ("insert", inserts)):
        for start in range(0, len(batch_list), WRITE_LIMIT):
            try:
                writer.write(operation, batch_list[start : start + WRITE_LIMIT])
            except QuotaExhausted as exhausted:
                rest = batch_list[start:] + (inserts if operation == "update" else [])
                ctx.defer(TABLE, [str(r[key]) for r in rest], exhausted)
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
