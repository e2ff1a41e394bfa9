"""Field values in and out: what a write accepts, how values are stored, how reads render them.

One set of rules serves the data API, People, Timeline and Bulk, so a value Bulk rejects is the
value the data API rejects too. Writes are strict [assumed where the reference is silent]:
DATETIME is ``yyyy-MM-dd'T'HH:mm:ss[.SSS]`` with a numeric offset (the documented ``Z`` pattern
letter means ``+0700``/``-07:00``; a literal ``Z`` and naive times are refused), DATE is
``yyyy-MM-dd``, NUMBER and BOOLEAN are JSON numbers and booleans (not strings). Stored values are
Python values (aware UTC datetimes, dates, picklist labels, GSID strings); reads render DATETIME and
DATE as epoch milliseconds and picklists as item GSIDs, as the documented query sample does.
Query filter values are read more leniently, because the documented samples themselves use
``"03-22-2018"`` and ``"2024-02-05 00:00:00"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sandbox.gainsight.schema import FieldSpec

_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{3}))?([+-])([0-9]{2}):?([0-9]{2})"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_US_DATE = re.compile(r"([0-9]{2})-([0-9]{2})-([0-9]{4})")
_SPACE_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_URL = re.compile(r"https?://[^\s/$.?#][^\s]*", re.IGNORECASE)
_NUMBER_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Invalid(Exception):
    """A value a field does not accept: the Gainsight code and the errorMessage to report."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_datetime(value: Any) -> datetime:
    """A write's DATETIME as an aware UTC datetime; anything else -> ``Invalid`` (GSOBJ_1005)."""
    match = _DATETIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise Invalid("GSOBJ_1005", "Invalid dateTime format")
    y, mo, d, h, mi, s, ms, sign, oh, om = match.groups()
    try:
        offset = timedelta(hours=int(oh), minutes=int(om))
        if offset >= timedelta(hours=24) or int(om) >= 60:
            raise ValueError("offset out of range")
        zone = timezone(offset if sign == "+" else -offset)
        moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), int(ms or 0) * 1000, zone)
    except ValueError:
        raise Invalid("GSOBJ_1005", "Invalid dateTime format") from None
    return moment.astimezone(timezone.utc)


def parse_date(value: Any) -> date:
    """A write's DATE; anything else -> ``Invalid`` (GSOBJ_1006)."""
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise Invalid("GSOBJ_1006", "Invalid date format")


def _text_writer(field: FieldSpec, pattern: re.Pattern[str] | None, what: str) -> Callable[[Any], str]:
    length = field.length if field.length is not None else math.inf

    def write(value: Any) -> str:
        if type(value) is not str or (pattern is not None and not pattern.fullmatch(value)):
            raise Invalid("GSOBJ_1008", f"Invalid {what} value")
        if len(value) > length:
            raise Invalid("GSOBJ_1001", f"Field exceeds maximum allowed length ({field.length})")
        return value

    return write


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Invalid("GSOBJ_1008", "Failed to parse value as number")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("GSOBJ_1008", "Invalid Boolean Value")
    return value


def _picklist_writer(field: FieldSpec) -> Callable[[Any], str]:
    options = frozenset(field.options)

    def write(value: Any) -> str:
        if type(value) is not str or value not in options:
            raise Invalid("GSOBJ_1012", "Invalid/Inactive value provided for picklist.")
        return value

    return write


def _gsid(value: Any) -> str:
    # Existence in the referenced object is checked by the caller, which has the store.
    if type(value) is not str or not value:
        raise Invalid("GSOBJ_1008", "Invalid GSID value")
    return value


def _number_cell(text: str) -> Any:
    if _NUMBER_TEXT.fullmatch(text):
        return float(text) if any(c in text for c in ".eE") else int(text)
    raise Invalid("GSOBJ_1008", "Failed to parse value as number")


def _boolean_cell(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise Invalid("GSOBJ_1008", "Invalid Boolean Value")
    return lowered == "true"


def writer(field: FieldSpec, cells: bool = False) -> Callable[[Any], Any]:
    """The function turning a non-null value written to ``field`` into its stored form (``Invalid``
    if not accepted); ``cells`` reads CSV text, where numbers and booleans are spelled as text."""
    kind = field.type
    if kind == "NUMBER":
        return _number_cell if cells else _number
    if kind == "BOOLEAN":
        return _boolean_cell if cells else _boolean
    if kind == "PICKLIST":
        return _picklist_writer(field)
    if kind == "DATE":
        return parse_date
    if kind == "DATETIME":
        return parse_datetime
    if kind == "GSID":
        return _gsid
    pattern = {"EMAIL": _EMAIL, "URL": _URL}.get(kind)
    return _text_writer(field, pattern, kind.lower() if kind != "STRING" else "string")


def from_json(field: FieldSpec, value: Any) -> Any:
    """The stored form of a non-null JSON value written to ``field``; ``Invalid`` if not accepted."""
    return writer(field)(value)


def epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def to_json(field: FieldSpec, value: Any, dates: Callable[[Any, int], Any] | None = None) -> Any:
    """A stored value as a query/get answer renders it; ``dates(value, epoch_ms)`` may render
    DATETIME/DATE another way than epoch ms (emulator-only variants)."""
    if value is None:
        return None
    if field.type in ("DATETIME", "DATE"):
        moment = value if field.type == "DATETIME" else datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
        return dates(value, epoch_ms(moment)) if dates else epoch_ms(moment)
    if field.type == "PICKLIST":
        return field.item_gsid(value)
    return value


def filter_value(field: FieldSpec, raw: Any) -> Any:
    """A query condition value in the stored form of ``field`` (lenient, see module docstring)."""
    kind = field.type
    if kind == "DATETIME":
        return _filter_datetime(raw)
    if kind == "DATE":
        return _filter_datetime(raw).date()
    if kind == "NUMBER":
        if isinstance(raw, str) and _NUMBER_TEXT.fullmatch(raw):
            return float(raw)
        return _number(raw)
    if kind == "BOOLEAN":
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        return _boolean(raw)
    if kind == "PICKLIST":
        for label in field.options:
            if raw == label or raw == field.item_gsid(label):
                return label
        raise Invalid("GSOBJ_1012", "Invalid/Inactive value provided for picklist.")
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise Invalid("GSOBJ_1008", "Invalid filter value")
    return raw if isinstance(raw, str) else str(raw)


def _filter_datetime(raw: Any) -> datetime:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return _EPOCH + timedelta(milliseconds=raw)
    if isinstance(raw, str):
        text = raw.strip()
        us = _US_DATE.fullmatch(text)
        if us:
            text = f"{us.group(3)}-{us.group(1)}-{us.group(2)}"
        try:
            if _DATE.fullmatch(text) or _SPACE_DATETIME.fullmatch(text):
                return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
            return parse_datetime(text)
        except ValueError:
            pass
        except Invalid:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                pass
            else:
                if moment.tzinfo is not None:
                    return moment.astimezone(timezone.utc)
    raise Invalid("GSOBJ_1005", "Invalid dateTime format")
