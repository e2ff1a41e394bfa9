"""Strict validation of the v7 sync endpoints' query string, with Laravel-shaped 422 errors.

The sandbox must be at least as strict as CustomerGauge (DESIGN §9), and deliberately stricter in one
way: any query parameter it does not know is rejected, so client typos such as ``with=drivers`` or
``perpage=1000`` fail loudly in tests instead of being silently ignored in production. Messages
follow Laravel's wording (reference §3.5): one key per failing parameter, attribute names with
underscores as spaces, array members as ``with.0`` and ``period.start``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from sandbox.customergauge.store import Period

MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 100  # [assumed]: the real default is unknown (reference §5.2)
WITH_VALUES = ("drivers", "questions", "tags", "properties")
#: ``period[field]`` value -> record key it filters on.
PERIOD_FIELDS = {
    "date_creation": "date_creation",
    "date_order": "date_order",
    "date_sent": "date_email_sent",
    "date_survey_response": "date_survey_response",
}
_PERIOD_PARAMS = ("period[field]", "period[start]", "period[end]")
_KNOWN = frozenset(("per_page", "cursor", "with[]") + _PERIOD_PARAMS)
# PHP FILTER_VALIDATE_INT, which Laravel's "integer" rule uses: optional sign, no leading zeros.
_INTEGER = re.compile(r"[+-]?(?:0|[1-9][0-9]*)", re.ASCII)
_YMD = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)

Fail = Callable[[str, str], None]


@dataclass(frozen=True)
class SyncQuery:
    per_page: int
    cursor: int
    expansions: frozenset[str]
    period: Period | None


class InvalidQuery(Exception):
    """422: ``errors`` maps each failing parameter to its messages, as Laravel's validator does."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def parse_sync_query(query: dict[str, list[str]]) -> SyncQuery:
    """Validate every parameter and report every failure at once; raises ``InvalidQuery``."""
    errors: dict[str, list[str]] = {}

    def fail(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    def single(name: str) -> str | None:
        values = query.get(name)
        if not values:
            return None
        if len(values) > 1:
            fail(_attribute_key(name), f"The {_display(name)} field must not be repeated.")
            return None
        return values[0]

    per_page = _integer(single("per_page"), "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE, fail)
    cursor = _integer(single("cursor"), "cursor", 0, 0, None, fail)

    expansions = query.get("with[]", [])
    for index, value in enumerate(expansions):
        if value not in WITH_VALUES:
            fail(f"with.{index}", f"The selected with.{index} is invalid.")

    period = _period({name: single(name) for name in _PERIOD_PARAMS}, fail)

    for name in query:
        if name not in _KNOWN:
            fail(_attribute_key(name), f"The {_display(name)} field is prohibited.")

    if errors:
        raise InvalidQuery(errors)
    return SyncQuery(per_page, cursor, frozenset(expansions), period)


def _integer(
    raw: str | None, name: str, default: int, minimum: int, maximum: int | None, fail: Fail
) -> int:
    """Laravel's ``integer|min|max`` rules; an absent parameter takes ``default``."""
    if raw is None:
        return default
    label = _display(name)
    if not _INTEGER.fullmatch(raw):
        fail(name, f"The {label} must be an integer.")
        return default
    value = int(raw)
    if value < minimum:
        fail(name, f"The {label} must be at least {minimum}.")
    elif maximum is not None and value > maximum:
        fail(name, f"The {label} must not be greater than {maximum}.")
    return value


def _period(raw: dict[str, str | None], fail: Fail) -> Period | None:
    """All three ``period[...]`` parameters or none; dates are real ``Y-m-d`` days; start <= end."""
    # Laravel turns empty strings into null before validating, so "period[end]=" counts as absent.
    given = {name: value for name, value in raw.items() if value}
    if not given:
        return None
    keys = {name: _attribute_key(name) for name in _PERIOD_PARAMS}
    for name in _PERIOD_PARAMS:
        if name not in given:
            others = " / ".join(keys[other] for other in _PERIOD_PARAMS if other in given)
            fail(keys[name], f"The {keys[name]} field is required when {others} is present.")
    field = given.get("period[field]")
    if field is not None and field not in PERIOD_FIELDS:
        fail("period.field", "The selected period.field is invalid.")
    days: dict[str, str | None] = {}
    for name in ("period[start]", "period[end]"):
        value = given.get(name)
        if value is not None:
            days[name] = _real_day(value)
            if days[name] is None:
                fail(keys[name], f"The {keys[name]} does not match the format Y-m-d.")
    start, end = days.get("period[start]"), days.get("period[end]")
    if start and end and start > end:
        fail("period.end", "The period.end must be a date after or equal to period.start.")
    if field is None or field not in PERIOD_FIELDS or start is None or end is None or start > end:
        return None  # an error was reported above
    return Period(PERIOD_FIELDS[field], start, end)


def _real_day(value: str) -> str | None:
    if not _YMD.fullmatch(value):
        return None
    try:
        date.fromisoformat(value)
    except ValueError:  # 2024-02-30: PHP's date_format check rejects overflowing dates too
        return None
    return value


def _attribute_key(name: str) -> str:
    """PHP array syntax to Laravel's dotted key: ``period[start]`` -> ``period.start``, ``with[]`` -> ``with``."""
    return re.sub(r"\[([^\]]*)\]", lambda m: f".{m.group(1)}" if m.group(1) else "", name)


def _display(name: str) -> str:
    """How Laravel names an attribute in messages: ``per_page`` -> ``per page``."""
    return _attribute_key(name).replace("_", " ")
