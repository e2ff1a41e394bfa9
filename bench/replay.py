"""Time to value: the connector's real call sequence replayed against Gainsight's documented windows.

A push benchmark runs against a Gainsight sandbox with quotas off, so its wall time says nothing
about a real tenant. What does is the order the connector makes its calls in. This module takes
the sandbox's request log (every API call, in arrival order) and computes when each call could
start at the earliest under Gainsight's limits (reference §2: sync 100/min and 50,000/day, Bulk
10/hour and 100/day, Timeline 200/min), then reports per kind of record when its last call starts.

The model, in five rules:

1. Each call belongs to one quota family (sync, bulk, timeline; the token call to none) and is
   about one kind of record (company, response, activity, person; other: metadata, users).
2. Calls of different families proceed in parallel; calls of one family start in log order.
3. Calls of one kind start in log order too (a Bulk status poll after its upload, a write after the
   read that decided it), and a response, activity or person call never starts before the last
   Company call logged before it (it carries that Company's GSID; the log does not say which one,
   so it waits for all of them: conservative).
4. Windows are fixed and start together at t = 0 (the push starts on a fresh minute, hour and day):
   a call that would exceed any window of its family waits for that window's end.
5. Calls take no time: latency and Gainsight's processing time (a Bulk job, an async people
   upsert) are left out, so the figures are what the quotas allow, the floor of a real run.

"Minutes until every response is in Gainsight" is then the start of the last response call (the
last Bulk status poll or reconciliation read, or the last sync write), and likewise for Timeline
entries and persons. Which quota family the bulk people calls count against is unknown (reference
§4.6), so a log is replayed under both readings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Quota family -> (calls allowed, window seconds), Gainsight's documented defaults (reference §2).
WINDOWS: dict[str, tuple[tuple[int, int], ...]] = {
    "sync": ((100, 60), (50_000, 86_400)),
    "bulk": ((10, 3_600), (100, 86_400)),
    "timeline": ((200, 60),),
}
#: How the bulk (async) people calls count: as sync calls, or against the async/bulk family.
READINGS = {"sync": "sync", "async": "bulk"}
KINDS = ("response", "activity", "person")
_DEPENDS_ON_COMPANY = frozenset(KINDS)
_DATA = re.compile(r"/v1/data/objects/(?:query/)?([^/]+)")
_BULK = "/v1.0/admin/connector/job/bulkimport"
_PEOPLE = ("/v1/peoplemgmt/", "/v1.0/api/people")
_PEOPLE_OBJECTS = frozenset({"person", "company_person"})


@dataclass(frozen=True)
class Call:
    """One logged API call as the replay sees it."""

    family: str | None  # quota family, None for calls no quota counts (the token)
    kind: str  # company, response, activity, person or other


def classify(path: str, response_object: str, people_family: str) -> Call:
    """A sandbox log entry's path -> its quota family and kind of record.

    `people_family` is the quota family of the async people upserts under the reading replayed;
    single People API upserts and the async calls' status polls are sync calls under both readings.
    """
    if path.startswith("/v1/users/m2m/oauth/token"):
        return Call(None, "other")
    if path.startswith(_BULK):
        return Call("sync" if "/status/" in path else "bulk", "response")
    if path.startswith("/v1/ant/es/activity"):
        return Call("timeline", "activity")
    if path.startswith(_PEOPLE):
        # the single upsert (.../people) and the async upsert's status polls are sync calls
        single = path.rstrip("/").endswith("/people") or "/status/" in path
        return Call("sync" if single else people_family, "person")
    match = _DATA.match(path)
    if match:
        obj = match.group(1).lower()
        if obj == "company":
            return Call("sync", "company")
        if obj == response_object.lower():
            return Call("sync", "response")
        return Call("sync", "person" if obj in _PEOPLE_OBJECTS else "other")
    return Call("sync", "other")  # metadata and anything else under the sync quota


def start_seconds(calls: Iterable[Call], windows: Mapping[str, tuple[tuple[int, int], ...]] = WINDOWS) -> list[float]:
    """The earliest start of each call under the model's rules (module docstring), in seconds."""
    family_time: dict[str, float] = {}
    kind_time: dict[str, float] = {}
    last_company = 0.0
    # (family, window seconds) -> [index of the current window, calls in it]; a family's calls
    # start in order, so only its current window needs counting.
    used: dict[tuple[str, int], list[int]] = {}
    starts = []
    for call in calls:
        t = kind_time.get(call.kind, 0.0)
        if call.kind in _DEPENDS_ON_COMPANY:
            t = max(t, last_company)
        if call.family is not None:
            t = max(t, family_time.get(call.family, 0.0))
            t = _first_free(t, call.family, windows[call.family], used)
            family_time[call.family] = t
        kind_time[call.kind] = t
        if call.kind == "company":
            last_company = t
        starts.append(t)
    return starts


def _first_free(t: float, family: str, limits: tuple[tuple[int, int], ...], used: dict[tuple[str, int], list[int]]) -> float:
    """The earliest time from `t` at which every window of the family has room; books the call."""
    while True:
        for limit, seconds in limits:
            index, count = used.get((family, seconds), (-1, 0))
            if int(t // seconds) == index and count >= limit:
                t = float((index + 1) * seconds)
                break
        else:
            break
    for _, seconds in limits:
        slot = used.setdefault((family, seconds), [-1, 0])
        index = int(t // seconds)
        if slot[0] != index:
            slot[0], slot[1] = index, 0
        slot[1] += 1
    return t


def minutes_to_value(calls: list[Call], windows: Mapping[str, tuple[tuple[int, int], ...]] = WINDOWS) -> dict[str, float | None]:
    """Kind -> minutes until its last call may start (None: the log has no call of that kind), plus
    "all": until the last call of any kind."""
    starts = start_seconds(calls, windows)
    result: dict[str, float | None] = dict.fromkeys(KINDS)
    for call, start in zip(calls, starts, strict=True):
        if call.kind in result:
            result[call.kind] = start / 60
    result["all"] = max(starts, default=0.0) / 60
    return result


def replay_log(paths: list[str], response_object: str, reading: str = "async") -> dict[str, float | None]:
    """`minutes_to_value` of a sandbox request log (paths in arrival order) under a reading of
    the bulk people quota (`READINGS`)."""
    return minutes_to_value([classify(path, response_object, READINGS[reading]) for path in paths])


def minutes(value: float | None) -> str:
    """A replay figure for a table: minutes (one decimal below 10), hours or days when long."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.1f} min"
    if value < 180:
        return f"{value:.0f} min"
    if value < 48 * 60:
        return f"{value / 60:.1f} h"
    return f"{value / 1440:.1f} days"
