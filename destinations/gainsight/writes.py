"""Sync-API writes that survive Gainsight's all-or-nothing validation and lost answers.

Gainsight validates a write call as a whole: one bad record fails all 50 (reference §2). Retrying
the same batch cannot succeed, so a rejected batch is split in halves until the bad record stands
alone; only that record is dead-lettered and the rest land. Log2(50) < 6 extra calls per bad record.

An insert whose answer was lost (`MaybeApplied`) may or may not have been applied, and inserting
again could duplicate it; so the keys are queried first and only the missing records are re-sent.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from .client import GainsightClient
from .errors import GainsightRejected, MaybeApplied

Item = Any
Send = Callable[[list[Item]], list[dict[str, Any]]]


def write_isolating(
    items: Sequence[Item],
    send: Send,
    landed: Callable[[list[Item], list[dict[str, Any]]], None],
    rejected: Callable[[Item, GainsightRejected], None],
) -> None:
    """Send `items` in one call; on a validation rejection bisect until each bad item is alone."""
    batch = list(items)
    try:
        results = send(batch)
    except GainsightRejected as exc:
        # An unknown object or field never gets here: the client raises GainsightSettingError for
        # it, so one configuration mistake is not bisected into a dead letter per record.
        if exc.status != 400:
            raise  # not a validation verdict on the records: splitting cannot help
        if len(batch) == 1:
            rejected(batch[0], exc)
            return
        middle = len(batch) // 2
        write_isolating(batch[:middle], send, landed, rejected)
        write_isolating(batch[middle:], send, landed, rejected)
        return
    landed(batch, results)


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
        missing = [record for record, key in zip(records, keys) if key not in existing]
        inserted = iter(client.insert(endpoint, obj, missing) if missing else [])
        return [existing[key] if key in existing else next(inserted) for key in keys]
