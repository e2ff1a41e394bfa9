"""Writer kind SYNC: records of a data-API object, inserted or updated by key, ≤50 per call.

Records the ledger does not know may exist in Gainsight anyway (made by hand, or by a run whose
ledger write was lost): they are found by key first and updated, never inserted twice. An update
that finds no record any more (deleted in Gainsight, `GSOBJ_1011`) becomes an insert. A spec with
`bulk` sends large batches through the Bulk job instead (`bulk.py`), and what Bulk could not land
through here, which names the error of each bad record.

An insert whose answer was lost (`MaybeApplied`) may or may not have been applied, and inserting
again could duplicate it; so the keys are queried first and only the missing records are re-sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .client import WRITE_LIMIT, GainsightClient
from .engine import Action, Writer, plan_items, write_isolating
from .errors import GainsightRejected, MaybeApplied, QuotaExhausted

if TYPE_CHECKING:
    from .bulk import BulkBatcher

NO_MATCH = "GSOBJ_1011"


def insert_reconciled(
    client: GainsightClient, endpoint: str, obj: str, key_field: str, records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Insert ≤50 records; if the answer is lost, find which landed by key and insert only the rest.

    Returns one result per record, in order, each with the record's `Gsid`.
    """
    try:
        return client.insert(endpoint, obj, records)
    except MaybeApplied:
        keys = [str(record[key_field]) for record in records]
        existing = client.find_by_key(obj, key_field, keys, [])
        missing = [record for record, key in zip(records, keys, strict=True) if key not in existing]
        inserted = iter(client.insert(endpoint, obj, missing) if missing else [])
        return [existing[key] if key in existing else next(inserted) for key in keys]


def record_slice(records: list[dict[str, Any]] | pa.Table, start: int, length: int) -> list[dict[str, Any]]:
    """Records `start`.. as dicts: an Arrow table is turned into dicts 50 at a time (100k rows as
    dicts would cost hundreds of MB)."""
    if isinstance(records, pa.Table):
        return records.slice(start, length).to_pylist()
    return records[start : start + length]


class SyncWriter(Writer):
    """Insert / update by key through the data API (and the Bulk job for a large `bulk` spec)."""

    _bulk: BulkBatcher | None = None
    _uses_bulk: bool | None = None

    @property
    def object_name(self) -> str:
        return self.spec.object_name(self.settings)

    @property
    def key_field(self) -> str:
        return self.spec.key_field(self.settings)

    def uses_bulk(self) -> bool:
        """Whether this run's records of the object go through the Bulk job: a `bulk` spec with a
        job configured and at least `bulk_min_rows` of them in the outbox (decided once, so every
        page packs into the same files)."""
        if self._uses_bulk is None:
            settings = self.settings
            self._uses_bulk = (
                self.spec.bulk
                and bool(settings.response_bulk_job_id)
                and self.ctx.ledger.outbox_count(self.spec.flags) >= settings.bulk_min_rows
            )
        return self._uses_bulk

    def resolve(self) -> None:
        """Find by key the records planned as new (the Bulk job is an Upsert: it needs no look-up)."""
        if not self.uses_bulk():
            self.look_up(self.plan.indices(Action.CREATE))

    def look_up(self, creates: Sequence[int]) -> None:
        if not creates:
            return
        keys = self.plan.keys_of(creates)
        found = self.ctx.client.find_by_key(self.object_name, self.key_field, keys, [])
        for index, key in zip(creates, keys, strict=True):
            if key in found:
                self.plan.actions[index] = Action.UPDATE
                self.plan.found[index] = found[key]

    def records(self, indices: Sequence[int]) -> list[dict[str, Any]] | pa.Table:
        """The payload of the items `indices`, in order."""
        lengths = self.ctx.field_lengths(self.object_name) if self.spec.field_lengths and indices else {}
        return self.spec.payload(self.plan.rows(indices), self.settings, lengths)

    def write(self) -> None:
        updates, creates = self.plan.indices(Action.UPDATE), self.plan.indices(Action.CREATE)
        if self.uses_bulk():
            if self._bulk is None:
                from .bulk import BulkBatcher  # packs the pages into files; hands back what did not land

                self._bulk = BulkBatcher(self.ctx, self.book, self.write_not_landed)
            todo = updates + creates
            sent = self.plan.items.select([self.spec.key, "content_hash"]).take(pa.array(todo, pa.int64()))
            self._bulk.add(sent, self.records(todo))
            return
        self.write_all("update", updates, [self.key_field])
        self.write_all("insert", creates, [])

    def between_pages(self) -> None:
        """Upload and reconcile a Bulk file the last page filled, now that the page is dropped."""
        if self._bulk is not None:
            self._bulk.flush_full()

    def finish(self, stopped: QuotaExhausted | None = None) -> None:
        """Upload the Bulk file still open (or, when the run stopped, defer its rows)."""
        if self._bulk is not None:
            self._bulk.finish(stopped)

    def write_not_landed(self, rows: pa.Table) -> None:
        """Responses a Bulk upload did not land: through the sync API, which names each one's error."""
        writer = type(self)(self.ctx, self.spec)
        writer._uses_bulk = False
        writer.take(plan_items(self.ctx, self.spec, rows, None))
        writer.resolve()
        writer.write()

    def write_all(self, operation: str, indices: Sequence[int], keys: list[str]) -> None:
        """Write the items `indices` in calls of ≤50 (`keys`: the update's match fields)."""
        if not indices:
            return
        records = self.records(indices)
        for start in range(0, len(indices), WRITE_LIMIT):
            batch = list(zip(indices[start : start + WRITE_LIMIT], record_slice(records, start, WRITE_LIMIT), strict=True))
            self.write_batch(operation, batch, keys)

    def write_batch(self, operation: str, batch: list[tuple[int, dict[str, Any]]], keys: list[str]) -> None:
        """One call (split by the engine's error policy); each outcome is booked as it lands."""
        client, endpoint = self.ctx.client, self.spec.endpoint

        def send(pairs: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
            records = [record for _, record in pairs]
            if operation == "insert":
                return insert_reconciled(client, endpoint, self.object_name, self.key_field, records)
            return client.update(endpoint, self.object_name, records, keys)

        def landed(pairs: list[tuple[int, dict[str, Any]]], results: list[dict[str, Any]]) -> None:
            rows = [self.booking(index, result.get("Gsid"), record) for (index, record), result in zip(pairs, results, strict=True)]
            self.confirm_rows(rows, "created" if operation == "insert" else "updated")

        def rejected(pair: tuple[int, dict[str, Any]], exc: GainsightRejected) -> None:
            index, record = pair
            if operation == "update" and exc.code == NO_MATCH:
                self.write_batch("insert", [pair], [])  # deleted in Gainsight since we wrote it: create it again
                return
            self.book.fail(self.plan.keys[index], self.plan.failure_hashes[index], exc.code, exc.reason, record)

        write_isolating(batch, send, landed, rejected)

    def confirm_rows(self, rows: list[dict[str, Any]], outcome: str) -> None:
        self.book.confirm(rows, outcome)

    def booking(self, index: int, gsid: str | None, record: dict[str, Any]) -> dict[str, Any]:
        """The ledger row of an item confirmed in Gainsight."""
        plan = self.plan
        known = plan.found.get(index) or plan.state.get(plan.keys[index]) or {}
        row = {
            self.spec.key: plan.keys[index],
            "gsid": gsid or record.get("Gsid") or known.get("Gsid") or known.get("gsid"),
            "pushed_hash": plan.digests[index],
            "status": "synced",
        }
        if self.spec.bulk:
            row.update(via="sync", bulk_upload_id=None)
        return row
