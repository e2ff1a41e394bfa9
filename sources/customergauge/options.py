"""The source's options, checked once and turned into typed values.

Every check names the config key and its environment variable, because the person reading the
error is editing `.dlt/config.toml` or a cron environment, not Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connector_common.schema import closest

from .decoding import default_workers
from .errors import InvalidSetting
from .mapping import day_in
from .paging import Period
from .settings import DEFAULT_EXPANSIONS, DEFAULT_PROPERTY_MAP, KNOWN_EXPANSIONS


@dataclass(frozen=True)
class FeedOptions:
    """Validated options shared by both feeds."""

    initial: datetime  # UTC instant the very first run starts from
    lookback_days: int
    tenant_tz: str
    property_map: Mapping[str, str]
    expansions: tuple[str, ...]
    backfill: tuple[date, date] | None
    decode_workers: int
    rows_per_load: int

    @classmethod
    def build(
        cls,
        *,
        initial_response_date: Any,
        lookback_days: Any,
        tenant_timezone: str,
        property_map: Mapping[str, str] | None,
        expansions: Sequence[str] | None,
        backfill_start: str | None,
        backfill_end: str | None,
        decode_workers: int | None,
        rows_per_load: Any,
    ) -> FeedOptions:
        zone = _zone(tenant_timezone)
        initial_day = _day(initial_response_date, "sources.customergauge.initial_response_date")
        try:
            lookback = int(lookback_days)
        except (TypeError, ValueError):
            lookback = -1
        if lookback < 0:
            raise InvalidSetting(
                f"sources.customergauge.lookback_days must be >= 0, got {lookback_days!r} "
                "(env SOURCES__CUSTOMERGAUGE__LOOKBACK_DAYS)"
            )
        _check_property_map(property_map or {})
        chosen = tuple(expansions) if expansions is not None else DEFAULT_EXPANSIONS
        if set(chosen) - KNOWN_EXPANSIONS or "properties" not in chosen:
            raise InvalidSetting(
                f"sources.customergauge.expansions may only hold {sorted(KNOWN_EXPANSIONS)} and must "
                f"include 'properties' (segments come from it), got {list(chosen)}"
            )
        try:
            per_load = int(rows_per_load)
        except (TypeError, ValueError):
            per_load = 0
        if per_load < 1000:
            raise InvalidSetting(
                f"sources.customergauge.rows_per_load must be an integer >= 1000, got {rows_per_load!r} "
                "(env SOURCES__CUSTOMERGAUGE__ROWS_PER_LOAD)"
            )
        backfill = _backfill(backfill_start, backfill_end)
        first_day = backfill[0] if backfill else initial_day
        return cls(
            initial=datetime.combine(first_day, datetime.min.time(), zone).astimezone(timezone.utc),
            lookback_days=lookback,
            tenant_tz=tenant_timezone,
            property_map={**DEFAULT_PROPERTY_MAP, **(property_map or {})},
            expansions=chosen,
            backfill=backfill,
            decode_workers=default_workers() if decode_workers is None else max(0, int(decode_workers)),
            rows_per_load=per_load,
        )

    @property
    def backfilling(self) -> bool:
        return self.backfill is not None

    @property
    def lag_seconds(self) -> float | None:
        """dlt's `lag`, wide enough that dlt never drops a row the API returned.

        The API's period filter already bounds what arrives; dlt's incremental only keeps the
        high-water mark of response dates. Without this, a window paged over several loads would
        lose late responses: the second load's dlt filter would start at the first load's maximum.
        dlt never lets the lag cross `initial`, so nothing older than the first day is admitted.
        """
        if self.backfilling:
            return None  # dlt ignores lag when end_value is set
        span = datetime.now(timezone.utc) - self.initial
        return span.total_seconds() + (self.lookback_days + 1) * 86400.0

    @property
    def backfill_end_exclusive(self) -> datetime | None:
        """dlt's `end_value` is exclusive; a backfill's end day is inclusive."""
        if self.backfill is None:
            return None
        next_day = datetime.combine(self.backfill[1] + timedelta(days=1), datetime.min.time(), ZoneInfo(self.tenant_tz))
        return next_day.astimezone(timezone.utc)

    @property
    def position_key(self) -> str:
        """Where an unfinished window's paging position is kept in the resource state; a
        backfill keeps its own, so it never disturbs a scheduled window in progress."""
        if self.backfill is None:
            return "scheduled"
        return f"backfill {self.backfill[0]}..{self.backfill[1]}"

    def window(self, period_field: str, last_seen: datetime | None) -> Period:
        """The day range to request: the backfill range, or (last seen − lookback) .. today.

        `last_seen` is the highest response date staged so far (dlt's raw cursor value).
        """
        if self.backfill is not None:
            return Period(period_field, *self.backfill)
        today = day_in(datetime.now(timezone.utc), self.tenant_tz)
        start = self.initial
        if last_seen is not None and last_seen - timedelta(days=self.lookback_days) > self.initial:
            start = last_seen - timedelta(days=self.lookback_days)
        return Period(period_field, min(day_in(start, self.tenant_tz), today), today)


def _check_property_map(property_map: Mapping[str, str]) -> None:
    """Only canonical property columns (connector_common/schema.py) can be filled from a label;
    any other key would be staged nowhere, so it is refused rather than ignored."""
    for column in property_map:
        if column not in DEFAULT_PROPERTY_MAP:
            near = closest(str(column), DEFAULT_PROPERTY_MAP)
            hint = f"did you mean {near}?" if near else f"known: {', '.join(DEFAULT_PROPERTY_MAP)}"
            raise InvalidSetting(
                f"sources.customergauge.property_map.{column} is not a canonical property column: {hint} "
                "(env SOURCES__CUSTOMERGAUGE__PROPERTY_MAP, a JSON object; a new column is one entry in "
                "connector_common/schema.py, README \"Adding a property\")"
            )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSetting(
            f"sources.customergauge.tenant_timezone {name!r} is not an IANA time zone such as "
            "'UTC' or 'Europe/Amsterdam' (env SOURCES__CUSTOMERGAUGE__TENANT_TIMEZONE)"
        ) from None


def _day(value: Any, what: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidSetting(f"{what} must be a YYYY-MM-DD date, got {value!r}") from None


def _backfill(start: str | None, end: str | None) -> tuple[date, date] | None:
    if not (start or end):
        return None
    if not (start and end):
        raise InvalidSetting("a backfill needs both a start and an end date (--start and --end)")
    first, last = _day(start, "backfill start"), _day(end, "backfill end")
    if first > last:
        raise InvalidSetting(f"backfill start {first} is after its end {last}")
    return first, last
