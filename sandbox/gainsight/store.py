"""Records of every object, with hash indexes so key lookups stay O(1) at benchmark volumes.

The connector resolves companies by external key with 5000-value ``IN`` queries, updates by keys
and upserts Bulk rows by key; over 100k records a scan per lookup would make the sandbox, not the
client, the bottleneck of every benchmark. A field's index is built the first time it is searched
and kept current on every write after that. The store itself is not locked: the server holds one
lock around each API call, which is what makes a call atomic.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from sandbox.common.clock import SandboxClock
from sandbox.gainsight.envelope import ObjectNotFound
from sandbox.gainsight.schema import FieldSpec, ObjectSpec, Schema


def index_key(field: FieldSpec, value: Any) -> Any:
    """The value as an index (and equality) compares it: e-mail addresses case-insensitively [assumed]."""
    if field.type == "EMAIL" and isinstance(value, str):
        return value.lower()
    return value


class Table:
    """One object's records in creation order (``rows``: GSID -> field -> stored value)."""

    def __init__(self, spec: ObjectSpec) -> None:
        self.spec = spec
        self.rows: dict[str, dict[str, Any]] = {}
        self._indexes: dict[str, dict[Any, dict[str, None]]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def _field(self, name: str) -> FieldSpec:
        field = self.spec.field(name)
        assert field is not None, name  # indexes are only built for fields of this object
        return field

    def find(self, field: FieldSpec, value: Any) -> list[str]:
        """GSIDs whose ``field`` equals ``value``, oldest first (FIRSTMATCH picks the oldest)."""
        if value is None:
            return []
        if field.name == "Gsid":
            return [value] if value in self.rows else []
        return list(self._index(field).get(index_key(field, value), ()))

    def find_any(self, field: FieldSpec, values: Iterable[Any]) -> set[str]:
        """GSIDs whose ``field`` equals any of ``values`` (an ``IN``)."""
        if field.name == "Gsid":
            return {v for v in values if v in self.rows}
        index = self._index(field)
        found: set[str] = set()
        for value in values:
            found.update(index.get(index_key(field, value), ()))
        return found

    def match(self, keys: tuple[str, ...], values: dict[str, Any]) -> list[str]:
        """GSIDs of records whose ``keys`` fields all equal ``values`` (update keys are ANDed), oldest first."""
        matched: list[str] = []
        for position, key in enumerate(keys):
            found = self.find(self._field(key), values[key])
            matched = found if position == 0 else [g for g in matched if g in set(found)]
        return matched

    def _index(self, field: FieldSpec) -> dict[Any, dict[str, None]]:
        index = self._indexes.get(field.name)
        if index is None:
            index = {}
            name = field.name
            for gsid, row in self.rows.items():
                value = row.get(name)
                if value is not None:
                    index.setdefault(index_key(field, value), {})[gsid] = None
            self._indexes[name] = index
        return index

    def put(self, gsid: str, row: dict[str, Any]) -> None:
        """Store a new record."""
        self.rows[gsid] = row
        for name, index in self._indexes.items():
            value = row.get(name)
            if value is not None:
                index.setdefault(index_key(self._field(name), value), {})[gsid] = None

    def change(self, gsid: str, changes: dict[str, Any]) -> None:
        """Apply field changes to an existing record."""
        row = self.rows[gsid]
        for name, value in changes.items():
            index = self._indexes.get(name)
            if index is not None:
                field = self._field(name)
                self._unindex(index, field, row.get(name), gsid)
                if value is not None:
                    index.setdefault(index_key(field, value), {})[gsid] = None
            row[name] = value

    def remove(self, gsid: str) -> None:
        row = self.rows.pop(gsid)
        for name, index in self._indexes.items():
            self._unindex(index, self._field(name), row.get(name), gsid)

    @staticmethod
    def _unindex(index: dict[Any, dict[str, None]], field: FieldSpec, value: Any, gsid: str) -> None:
        if value is None:
            return
        key = index_key(field, value)
        holders = index.get(key)
        if holders is not None:
            holders.pop(gsid, None)
            if not holders:
                del index[key]

    def clear(self) -> None:
        self.rows.clear()
        self._indexes.clear()


class Store:
    """Every object's table, GSID minting and the system fields Gainsight maintains."""

    def __init__(self, schema: Schema, clock: SandboxClock) -> None:
        self.schema = schema
        self._clock = clock
        self._tables = {spec.name.lower(): Table(spec) for spec in schema.objects}
        #: GsUser GSID recorded as CreatedBy/ModifiedBy: the user the API key acts as.
        self.actor: str | None = None

    def table(self, name: str) -> Table:
        """The table of an object named in any case; unknown -> ``ObjectNotFound``."""
        table = self._tables.get(name.lower())
        if table is None:
            raise ObjectNotFound(name)
        return table

    def tables(self) -> Iterator[Table]:
        return iter(self._tables.values())

    def exists(self, object_name: str, gsid: Any) -> bool:
        return isinstance(gsid, str) and gsid in self.table(object_name).rows

    def _new_gsid(self, table: Table) -> str:
        # keyPrefix + 32 random uppercase alphanumerics (hex digits are a subset), 36 in all (reference §3.2).
        while True:
            gsid = table.spec.key_prefix + os.urandom(16).hex().upper()
            if gsid not in table.rows:
                return gsid

    def insert(self, table: Table, values: dict[str, Any]) -> str:
        gsid = self._new_gsid(table)
        now = self._clock.datetime()
        row = dict.fromkeys(table.spec.fields_by_name)
        row.update(values)
        row.update(Gsid=gsid, CreatedDate=now, ModifiedDate=now, CreatedBy=self.actor, ModifiedBy=self.actor)
        table.put(gsid, row)
        return gsid

    def update(self, table: Table, gsid: str, values: dict[str, Any]) -> None:
        changes = {k: v for k, v in values.items() if k != "Gsid"}
        changes.update(ModifiedDate=self._clock.datetime(), ModifiedBy=self.actor)
        table.change(gsid, changes)
