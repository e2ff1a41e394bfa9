"""The sandbox's record feed: hidden sync ids, pre-rendered JSON, cursor paging and period filters.

CustomerGauge's v7 sync endpoints page by an "internal primary key" (reference §3.1). The sandbox
models it as a hidden ``sync_id`` that increases with gaps whenever a record enters the feed, and
re-sequences a record when it changes (edit, late completion), so it reappears after a stored cursor
(the "re-sequence" mode of reference §5.3). A CGID appears in the feed at most once: its latest version.

Serving must be cheap because benchmarks measure the client against this server. Each record is
rendered to JSON once, split into a head (all always-present keys) and one fragment per expansion;
a page is a ``bytes.join`` of the fragments the request asked for, so there is one copy of the data
whatever expansion sets clients use. Period filters are resolved once per (field, start, end) into a
sorted array of feed positions, so a page costs O(log N + per_page); any mutation drops those caches.
"""

from __future__ import annotations

import json
import random
import re
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from operator import itemgetter
from typing import Any

#: Record keys a period filter can apply to (``period[field]=date_sent`` filters ``date_email_sent``).
PERIOD_KEYS = ("date_creation", "date_order", "date_email_sent", "date_survey_response")

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# For a raw record carrying a lone surrogate ("\ud800"): legal JSON only as an escape.
_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)
_DATETIME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}) (?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]")
_MAX_CACHED_PERIODS = 64


@dataclass(frozen=True)
class Period:
    """An inclusive range of whole days (``YYYY-MM-DD``) on one record key."""

    key: str
    start: str
    end: str


class RecordStore:
    """Records of one endpoint in sync-id order; safe to mutate while server threads page through it."""

    def __init__(self, expandable: tuple[str, ...], first_sync_id: int, rng: random.Random) -> None:
        """``expandable``: keys emitted only when requested via ``with[]``, in output order.
        ``first_sync_id`` keeps sync ids out of the CGID range, so a client that confuses the two
        gets visibly wrong pages instead of accidentally right ones."""
        self._lock = threading.Lock()
        self._expandable = expandable
        self._rng = rng
        self._last_sync_id = first_sync_id
        self._sync_ids = array("q")
        self._parts: list[tuple[bytes, ...]] = []
        self._days: dict[str, list[str | None]] = {key: [] for key in PERIOD_KEYS}
        self._sync_id_by_cgid: dict[int, int] = {}
        self._period_positions: dict[Period, array] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._parts)

    # -- mutations ---------------------------------------------------------------------------------

    def extend(self, records: Iterable[dict[str, Any]]) -> list[int]:
        """Append records in order, each with a new sync id; returns the sync ids."""
        with self._lock:
            return [self._append_locked(record) for record in records]

    def append(self, record: dict[str, Any]) -> int:
        """Append one record as is (it may be invalid); a record with the CGID of an existing one
        supersedes it, as CustomerGauge holds one version per CGID."""
        with self._lock:
            return self._append_locked(record)

    def edit(self, cgid: int, changes: dict[str, Any]) -> int:
        """Apply top-level ``changes`` to the record with this CGID and re-emit it at a new, higher
        sync id; returns that sync id. Unknown CGID -> ``KeyError``."""
        with self._lock:
            position = self._position_of(cgid)
            record = json.loads(b"".join(self._parts[position]) + b"}")
            record.update(changes)
            self._remove_locked(cgid)
            return self._append_locked(record)

    def _append_locked(self, record: dict[str, Any]) -> int:
        parts = _render(record, self._expandable)  # first, so a bad record changes nothing
        cgid = record.get("number_customergauge")
        if type(cgid) is int and cgid in self._sync_id_by_cgid:
            self._remove_locked(cgid)
        self._last_sync_id += self._rng.randint(1, 3)  # gaps, like a real auto-increment key
        self._sync_ids.append(self._last_sync_id)
        self._parts.append(parts)
        for key, days in self._days.items():
            days.append(_day(record.get(key)))
        if type(cgid) is int:
            self._sync_id_by_cgid[cgid] = self._last_sync_id
        self._period_positions.clear()
        return self._last_sync_id

    def _remove_locked(self, cgid: int) -> None:
        position = self._position_of(cgid)
        del self._sync_id_by_cgid[cgid]
        del self._sync_ids[position]
        del self._parts[position]
        for days in self._days.values():
            del days[position]
        self._period_positions.clear()

    def _position_of(self, cgid: int) -> int:
        sync_id = self._sync_id_by_cgid.get(cgid)
        if sync_id is None:
            raise KeyError(f"no record with number_customergauge {cgid!r}")
        return bisect_left(self._sync_ids, sync_id)

    # -- reads ---------------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """Every record with all expansions, in sync-id order (decoded fresh: callers may mutate)."""
        with self._lock:
            parts = list(self._parts)
        return [json.loads(b"".join(p) + b"}") for p in parts]

    def page(self, cursor: int, per_page: int, expansions: frozenset[str], period: Period | None) -> bytes:
        """The complete response body: records with sync id > ``cursor`` (passing ``period``),
        ascending, at most ``per_page``; ``cursor.next`` is the last one's sync id, or ``cursor``
        itself on an empty page."""
        with self._lock:
            if period is None:
                start = bisect_right(self._sync_ids, cursor)
                chosen = self._parts[start : start + per_page]
                next_cursor = self._sync_ids[start + len(chosen) - 1] if chosen else cursor
            else:
                positions = self._positions_in(period)
                start = bisect_right(positions, cursor, key=self._sync_ids.__getitem__)
                window = positions[start : start + per_page]
                chosen = [self._parts[p] for p in window]
                next_cursor = self._sync_ids[window[-1]] if window else cursor
        # Rendering happens outside the lock: the fragment tuples are immutable. One flat list and
        # one join, so each byte is copied once (a %-format of the data would copy it again).
        selected = (0,) + tuple(i + 1 for i, key in enumerate(self._expandable) if key in expansions)
        pieces: list[bytes] = [b'{"data":[']
        if len(selected) == len(self._expandable) + 1:
            for parts in chosen:
                pieces += parts
                pieces.append(b"},")
        elif len(selected) == 1:
            for parts in chosen:
                pieces.append(parts[0])
                pieces.append(b"},")
        else:
            pick = itemgetter(*selected)
            for parts in chosen:
                pieces += pick(parts)
                pieces.append(b"},")
        if chosen:
            pieces[-1] = b"}"
        pieces.append(b'],"cursor":{"next":%d}}' % next_cursor)
        return b"".join(pieces)

    def _positions_in(self, period: Period) -> array:
        """Feed positions (ascending, hence in sync-id order) whose ``period.key`` day is in range;
        a missing or unparseable date never matches. Cached until the next mutation."""
        positions = self._period_positions.get(period)
        if positions is None:
            start, end = period.start, period.end
            positions = array(
                "q",
                (i for i, day in enumerate(self._days[period.key]) if day is not None and start <= day <= end),
            )
            if len(self._period_positions) >= _MAX_CACHED_PERIODS:
                self._period_positions.clear()
            self._period_positions[period] = positions
        return positions


def _render(record: dict[str, Any], expandable: tuple[str, ...]) -> tuple[bytes, ...]:
    """(head, fragment per expandable key): head is the JSON object of the other keys without its
    closing brace; a fragment is ``,"key":value``, or empty when the record lacks that key."""
    base = {key: value for key, value in record.items() if key not in expandable}
    if not base and any(key in record for key in expandable):
        raise ValueError(f"a record needs at least one key besides {expandable}")
    head = _json(base)[:-1]
    return (head,) + tuple(
        b',"%b":%b' % (key.encode(), _json(record[key])) if key in record else b"" for key in expandable
    )


def _json(value: Any) -> bytes:
    """UTF-8 JSON; text UTF-8 cannot hold (a lone surrogate) is sent as `\\uXXXX` escapes."""
    try:
        return _ENCODER.encode(value).encode()
    except UnicodeEncodeError:
        return _ASCII_ENCODER.encode(value).encode()


def _day(value: Any) -> str | None:
    """The ``YYYY-MM-DD`` of an API datetime, or ``None`` if it is missing or not a real datetime."""
    if not isinstance(value, str):
        return None
    match = _DATETIME.fullmatch(value)
    return _real_day(match.group(1)) if match else None


@lru_cache(maxsize=8192)
def _real_day(day: str) -> str | None:
    # Cached: one shared string per calendar day keeps 4 date columns x 1M records small.
    try:
        date.fromisoformat(day)
    except ValueError:
        return None
    return day
