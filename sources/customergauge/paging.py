"""Cursor paging over a v7 sync endpoint.

Every page repeats the same `per_page`, `with[]` and `period[...]` parameters plus the cursor.
(viadot, the one public client, sends only the cursor after page one, so its filters and expansions
silently stop applying; this is the bug not to copy.) Paging ends on the first empty `data`.

Pages are handed on as raw bytes so decoding can happen elsewhere (see `decoding.py`); to ask for
the next page without decoding this one, the cursor is read from the end of the body, where the
documented envelope `{"data":[...],"cursor":{"next":N}}` puts it. A body of any other shape is
parsed in full instead, and the decoder re-checks the cursor on every page. The last, empty page
ends paging whatever its cursor says: `"next": null` or no `next` at all is as final as a number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone

from .client import CustomerGaugeClient
from .errors import ContractViolation
from .settings import MAX_PER_PAGE

_TAIL_CURSOR = re.compile(rb'"cursor"\s*:\s*\{\s*"next"\s*:\s*(\d+)\s*\}\s*\}\s*$')
_SMALL_PAGE = 4096  # bytes; parsing a page this small in full costs nothing


@dataclass(frozen=True)
class Period:
    """An inclusive range of whole days on one of CustomerGauge's date fields."""

    field: str  # date_creation | date_order | date_sent | date_survey_response
    start: date
    end: date

    def to_state(self) -> dict[str, str]:
        return {"field": self.field, "start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_state(cls, state: dict[str, str]) -> Period:
        return cls(state["field"], date.fromisoformat(state["start"]), date.fromisoformat(state["end"]))

    def params(self) -> list[tuple[str, str]]:
        return [
            ("period[field]", self.field),
            ("period[start]", self.start.isoformat()),
            ("period[end]", self.end.isoformat()),
        ]


@dataclass(frozen=True)
class FetchedPage:
    body: bytes
    fetched_at: datetime
    next_cursor: int


def feed_params(expansions: Sequence[str], period: Period | None, per_page: int = MAX_PER_PAGE) -> list[tuple[str, str]]:
    """The query every page of one feed sends (the cursor is added per page)."""
    params = [("per_page", str(per_page))]
    params += [("with[]", name) for name in expansions]
    if period is not None:
        params += period.params()
    return params


def iter_pages(
    client: CustomerGaugeClient, path: str, params: Sequence[tuple[str, str]], cursor: int | None = None
) -> Iterator[FetchedPage]:
    """Yield raw non-empty pages until CustomerGauge returns an empty one, from `cursor` if given."""
    while True:
        query = list(params) if cursor is None else [*params, ("cursor", str(cursor))]
        body = client.get_page(path, query)
        fetched_at = datetime.now(timezone.utc)
        next_cursor, empty = peek(body)
        if empty:
            return
        if cursor is not None and next_cursor <= cursor:
            raise ContractViolation(
                f"CustomerGauge cursor did not advance on {path} (sent {cursor}, got "
                f"{next_cursor}); stopping instead of looping forever"
            )
        yield FetchedPage(body, fetched_at, next_cursor)
        cursor = next_cursor


def peek(body: bytes) -> tuple[int, bool]:
    """(cursor.next, whether `data` is empty) without decoding the records when possible.

    An empty page needs no cursor (-1 stands in): nothing follows it.
    """
    if len(body) > _SMALL_PAGE:
        match = _TAIL_CURSOR.search(body, len(body) - 256)
        if match:
            return int(match.group(1)), False
    try:
        envelope = json.loads(body)
        if isinstance(envelope, dict) and isinstance(envelope.get("data"), list) and not envelope["data"]:
            return -1, True
        return int(envelope["cursor"]["next"]), not envelope["data"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ContractViolation(
            f"CustomerGauge returned a page without the documented envelope ({type(exc).__name__}: "
            f"{exc}; {len(body)} bytes, starts {body[:80]!r})"
        ) from None
