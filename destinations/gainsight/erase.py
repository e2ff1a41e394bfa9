"""Delete one person's response records and Timeline entries from Gainsight (`forget`), confirmed by reads.

Records are found by what identifies them in Gainsight, not by what the ledger remembers: the response
object's key field (`ResponseId__gc` = the response id) and the activity's `ExternalId`
(`cg-nps-<response id>`), read through the documented query API (reference §4.4, §4.7). So a record
a killed run wrote without booking it is found too, and a second `forget` finds nothing to do.

Deletes (reference §4.4/§4.5 `DELETE /v1/data/objects/{obj}/{gsid}` [observed]; §4.7 `DELETE
/v1/ant/es/activity` by activityId [assumed], the id's place unknown) are judged by the read that
follows, never by their answer: an already deleted record answers `GSOBJ_1004` or 404, a delete
Gainsight took answers in a shape nobody documents. The activity delete is tried with the id as a
query parameter, then, for what the read still finds, in a JSON body. Anything still found after
that is an error naming how many: the caller keeps its local rows, and a later `forget` resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .client import GainsightClient
from .errors import GainsightError, GainsightUnavailable
from .records import external_id
from .settings import GainsightSettings

log = logging.getLogger("nps.gainsight.erase")

TIMELINE_OBJECT = "activity_timeline"


@dataclass
class Erased:
    responses: int = 0  # response records deleted (confirmed gone)
    activities: int = 0  # Timeline entries deleted (confirmed gone)


def erase_responses(client: GainsightClient, settings: GainsightSettings, response_ids: list[str]) -> Erased:
    """Delete the response records and Timeline entries of `response_ids`; confirmed gone, or raises."""
    obj, key = settings.response_object, settings.response_key_field
    records = _delete_until_gone(
        "response record",
        lambda: client.find_by_key(obj, key, response_ids, []),
        [lambda gsid: client.delete_record("response", obj, gsid)],
    )
    activities = _delete_until_gone(
        "Timeline entry",
        lambda: client.find_by_key(TIMELINE_OBJECT, "ExternalId", [external_id(r) for r in response_ids], []),
        [lambda gsid: client.delete_activity(gsid, in_body=False), lambda gsid: client.delete_activity(gsid, in_body=True)],
    )
    return Erased(records, activities)


def _delete_until_gone(
    what: str, find: Callable[[], dict[str, dict]], deletes: list[Callable[[str], GainsightError | None]]
) -> int:
    """Read, delete what is found (each way in turn), read again; returns how many were deleted."""
    found = _gsids(find())
    seen: set[str] = set()
    refusal: GainsightError | None = None
    for delete in deletes:
        for _ in range(2):  # a key shared by several records shows one of them per read
            if not found:
                return len(seen)
            seen.update(found)
            for gsid in found:
                refusal = delete(gsid) or refusal
            found = _gsids(find())
    if found:
        reason = f" (Gainsight's last refusal: {refusal})" if refusal else ""
        raise GainsightUnavailable(f"{len(found)} {what}(s) still found in Gainsight after deleting them{reason}")
    return len(seen)


def _gsids(rows: dict[str, dict]) -> list[str]:
    return [str(row["Gsid"]) for row in rows.values() if row.get("Gsid")]
