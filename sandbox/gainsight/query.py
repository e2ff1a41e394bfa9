"""The query endpoint's language (reference §4.4): select, where (conditions + expression),
orderBy, limit, offset, with ``__gr`` lookup traversal.

``EQ`` and ``IN`` on a field of the queried object are answered from the store's hash index, so
the connector's 5000-key existence checks cost O(keys), not O(records); every other condition
scans. Field names are case-insensitive here because the documented samples write ``csm__gr.email``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.gainsight.envelope import bad_request
from sandbox.gainsight.schema import FieldSpec, ObjectSpec, Schema
from sandbox.gainsight.store import Store, Table, index_key
from sandbox.gainsight.values import Invalid, filter_value, to_json

MAX_LIMIT = 5000  # [documented]
DEFAULT_LIMIT = 100  # [assumed]: the real default is unknown; clients should always send a limit
_QUERY_KEYS = frozenset(("select", "where", "orderBy", "limit", "offset"))
_CONDITION_KEYS = frozenset(("name", "alias", "value", "operator"))
_TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z0-9_]+)")
#: operator -> how many values it takes (None: one or more).
OPERATORS: dict[str, int | None] = {
    "EQ": 1, "NE": 1, "GT": 1, "GTE": 1, "LT": 1, "LTE": 1, "BTW": 2, "IN": None, "NOT_IN": None,
    "IS_NULL": 0, "IS_NOT_NULL": 0, "CONTAINS": 1, "DOES_NOT_CONTAINS": 1, "STARTS_WITH": 1, "ENDS_WITH": 1,
}  # fmt: skip


@dataclass(frozen=True)
class FieldPath:
    """A field of the queried object, or one reached through lookups (``Csm__gr.Email``)."""

    hops: tuple[FieldSpec, ...]
    field: FieldSpec

    def get(self, store: Store, row: dict[str, Any]) -> Any:
        for hop in self.hops:
            gsid = row.get(hop.name)
            target = store.table(hop.references or "").rows.get(gsid) if gsid is not None else None
            if target is None:
                return None
            row = target
        return row.get(self.field.name)


def resolve_path(schema: Schema, spec: ObjectSpec, name: Any) -> FieldPath:
    if not isinstance(name, str) or not name:
        raise bad_request("GSOBJ_1002", f"Invalid field ({name})")
    *hops, last = name.split(".")
    resolved: list[FieldSpec] = []
    current = spec
    for hop in hops:
        # ``Csm`` is traversed as ``Csm__gr``, a custom ``Company_ID__gc`` as ``Company_ID__gr``.
        base = hop[:-4] if hop.lower().endswith("__gr") else None
        field = (current.field_ci(base + "__gc") or current.field_ci(base)) if base else None
        target = schema.object(field.references) if field is not None and field.references else None
        if field is None or target is None:
            raise bad_request("GSOBJ_1002", f"Invalid field ({name})")
        resolved.append(field)
        current = target
    field = current.field_ci(last)
    if field is None:
        raise bad_request("GSOBJ_1002", f"Invalid field ({name})")
    return FieldPath(tuple(resolved), field)


@dataclass(frozen=True)
class Condition:
    path: FieldPath
    operator: str
    values: tuple[Any, ...]


def _predicate(condition: Condition) -> Callable[[Any], bool]:
    """A test on one stored value; null matches only ``IS_NULL`` (and the negative text operators)."""
    field, op, values = condition.path.field, condition.operator, condition.values
    if op == "IS_NULL":
        return lambda x: x is None
    if op == "IS_NOT_NULL":
        return lambda x: x is not None
    if op in ("EQ", "IN", "NE", "NOT_IN"):
        wanted = {index_key(field, v) for v in values}
        if op in ("EQ", "IN"):
            return lambda x: x is not None and index_key(field, x) in wanted
        return lambda x: x is not None and index_key(field, x) not in wanted
    if op == "DOES_NOT_CONTAINS":
        absent = str(values[0]).lower()
        return lambda x: x is None or absent not in str(x).lower()
    if op in ("CONTAINS", "STARTS_WITH", "ENDS_WITH"):  # case-insensitive [assumed]
        needle = str(values[0]).lower()
        text_tests: dict[str, Callable[[str], bool]] = {
            "CONTAINS": lambda s: needle in s,
            "STARTS_WITH": lambda s: s.startswith(needle),
            "ENDS_WITH": lambda s: s.endswith(needle),
        }
        text_test = text_tests[op]
        return lambda x: x is not None and text_test(str(x).lower())
    low = values[0]
    compare: dict[str, Callable[[Any], bool]] = {
        "GT": lambda x: x > low,
        "GTE": lambda x: x >= low,
        "LT": lambda x: x < low,
        "LTE": lambda x: x <= low,
        "BTW": lambda x: low <= x <= values[1],
    }
    test = compare[op]
    return lambda x: x is not None and test(x)


@dataclass(frozen=True)
class Query:
    select: tuple[tuple[str, FieldPath], ...]
    conditions: dict[str, Condition]
    expression: list[str] | None
    order: tuple[tuple[FieldPath, bool], ...]  # (path, descending)
    limit: int
    offset: int


def parse_query(body: Any, spec: ObjectSpec, schema: Schema) -> Query:
    """Validate a query body; any problem rejects the call with 400 [assumed codes: unknown field
    GSOBJ_1002, anything else GSOBJ_1008]."""
    if not isinstance(body, dict):
        raise bad_request("GSOBJ_1008", "The query body must be a JSON object")
    unknown = set(body) - _QUERY_KEYS
    if unknown:
        raise bad_request("GSOBJ_1008", f"Unknown query keys {sorted(unknown)}; allowed: {sorted(_QUERY_KEYS)}")
    select = body.get("select")
    if not isinstance(select, list) or not select:
        raise bad_request("GSOBJ_1008", "select is required and must be a non-empty list of field names")
    selected = tuple((name, resolve_path(schema, spec, name)) for name in select)
    limit = body.get("limit", DEFAULT_LIMIT)
    offset = body.get("offset", 0)
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise bad_request("GSOBJ_1008", f"limit must be an integer from 1 to {MAX_LIMIT}")
    if type(offset) is not int or offset < 0:
        raise bad_request("GSOBJ_1008", "offset must be an integer >= 0")
    conditions, expression = _parse_where(body.get("where"), spec, schema)
    order_by = body.get("orderBy") or {}
    if not isinstance(order_by, dict) or not all(isinstance(d, str) and d.lower() in ("asc", "desc") for d in order_by.values()):
        raise bad_request("GSOBJ_1008", 'orderBy must map field names to "asc" or "desc"')
    order = tuple((resolve_path(schema, spec, name), d.lower() == "desc") for name, d in order_by.items())
    return Query(selected, conditions, expression, order, limit, offset)


def _parse_where(where: Any, spec: ObjectSpec, schema: Schema) -> tuple[dict[str, Condition], list[str] | None]:
    if where is None:
        return {}, None
    if not isinstance(where, dict) or set(where) - {"conditions", "expression"}:
        raise bad_request("GSOBJ_1008", "where must be {conditions, expression}")
    raw_conditions = where.get("conditions") or []
    if not isinstance(raw_conditions, list):
        raise bad_request("GSOBJ_1008", "where.conditions must be a list")
    conditions: dict[str, Condition] = {}
    for position, raw in enumerate(raw_conditions):
        if not isinstance(raw, dict) or set(raw) - _CONDITION_KEYS or not {"name", "operator"} <= set(raw):
            raise bad_request("GSOBJ_1008", f"Condition {position} must be {{name, alias, value, operator}}")
        alias = raw.get("alias", chr(ord("A") + position) if position < 26 else str(position))
        operator = raw["operator"]
        if operator not in OPERATORS:
            raise bad_request("GSOBJ_1008", f"Unsupported operator {operator!r}; supported: {sorted(OPERATORS)}")
        values = raw.get("value", [])
        arity = OPERATORS[operator]
        if not isinstance(values, list) or (len(values) != arity if arity is not None else not values):
            count = arity if arity is not None else "one or more"
            raise bad_request("GSOBJ_1008", f"Condition {alias}: {operator} takes {count} value(s) in a list")
        path = resolve_path(schema, spec, raw["name"])
        try:
            converted = tuple(filter_value(path.field, v) for v in values)
        except Invalid as invalid:
            raise bad_request(invalid.code, f"{invalid.message} ({raw['name']} = {values})") from None
        if not isinstance(alias, str) or alias in conditions:
            raise bad_request("GSOBJ_1008", f"Condition aliases must be unique strings, got {alias!r}")
        conditions[alias] = Condition(path, operator, converted)
    expression = where.get("expression")
    if expression in (None, ""):
        return conditions, None  # several conditions without an expression are ANDed [assumed]
    if not isinstance(expression, str):
        raise bad_request("GSOBJ_1008", "where.expression must be a string")
    tokens = _tokens(expression)
    _check_expression(tokens, conditions)
    return conditions, tokens


def _tokens(expression: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    expression = expression.rstrip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise bad_request("GSOBJ_1008", f"Invalid expression {expression!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _check_expression(tokens: list[str], conditions: dict[str, Condition]) -> None:
    """Grammar: expr = term (OR term)*; term = factor (AND factor)*; factor = alias | ( expr )."""
    for token in tokens:
        if token.upper() not in ("AND", "OR") and token not in "()" and token not in conditions:
            raise bad_request("GSOBJ_1008", f"Expression names unknown alias {token!r}")
    _Evaluator(tokens, lambda alias: set()).run()


class _Evaluator:
    """Recursive descent over the expression tokens, combining each alias's GSID set."""

    def __init__(self, tokens: list[str], matches: Callable[[str], set[str]]) -> None:
        self._tokens = tokens
        self._matches = matches
        self._position = 0

    def run(self) -> set[str]:
        result = self._expr()
        if self._position != len(self._tokens):
            raise bad_request("GSOBJ_1008", "Invalid expression")
        return result

    def _peek(self) -> str | None:
        return self._tokens[self._position].upper() if self._position < len(self._tokens) else None

    def _expr(self) -> set[str]:
        result = self._term()
        while self._peek() == "OR":
            self._position += 1
            result = result | self._term()
        return result

    def _term(self) -> set[str]:
        result = self._factor()
        while self._peek() == "AND":
            self._position += 1
            result = result & self._factor()
        return result

    def _factor(self) -> set[str]:
        token = self._peek()
        if token is None or token in ("AND", "OR", ")"):
            raise bad_request("GSOBJ_1008", "Invalid expression")
        self._position += 1
        if token == "(":
            result = self._expr()
            if self._peek() != ")":
                raise bad_request("GSOBJ_1008", "Invalid expression: unbalanced parentheses")
            self._position += 1
            return result
        return self._matches(self._tokens[self._position - 1])


def run_query(
    query: Query, table: Table, store: Store, dates: Callable[[Any, int], Any] | None = None
) -> list[dict[str, Any]]:
    """The answer's ``records``: rows in creation order unless ordered, projected on ``select``;
    ``dates`` renders DATETIME/DATE values (epoch ms without it)."""
    if query.conditions:
        cache: dict[str, set[str]] = {}

        def matches(alias: str) -> set[str]:
            if alias not in cache:
                cache[alias] = _matching(query.conditions[alias], table, store)
            return cache[alias]

        if query.expression is None:
            sets = [matches(alias) for alias in query.conditions]
            chosen = set.intersection(*sets)
        else:
            chosen = _Evaluator(query.expression, matches).run()
        gsids = [g for g in table.rows if g in chosen] if len(chosen) < len(table.rows) else list(table.rows)
    else:
        gsids = list(table.rows)
    rows = table.rows
    for path, descending in reversed(query.order):
        # Stable sorts from the last key to the first; nulls sort last ascending, first descending.
        gsids.sort(key=lambda g: _sort_key(path.get(store, rows[g])), reverse=descending)
    page = gsids[query.offset : query.offset + query.limit]
    return [{name: to_json(path.field, path.get(store, rows[g]), dates) for name, path in query.select} for g in page]


def _matching(condition: Condition, table: Table, store: Store) -> set[str]:
    path = condition.path
    if not path.hops and condition.operator in ("EQ", "IN"):
        return table.find_any(path.field, condition.values)
    test = _predicate(condition)
    return {gsid for gsid, row in table.rows.items() if test(path.get(store, row))}


def _sort_key(value: Any) -> tuple[bool, Any]:
    return (value is None, value if value is not None else 0)
