"""One engine for every Gainsight object: plan from the outbox and the ledger, write, book.

For each spec (`specs.py`), in dependency order:

1. **Items**: the outbox rows the object is written for (per response, or one per key from its
   most recent response), each with the Gainsight id of the Company it references.
2. **Plan** (`plan_actions`, a pure function of the items and the ledger state): *wait* for a
   dependency not confirmed yet, *unchanged* (the ledger confirmed this content), *give up*
   (this content failed `max_attempts` times), *update* (Gainsight holds an older version) or
   *create*. The writer may refine it with reads only (a Company matched by key or name, a
   record that exists but the ledger lost): *confirm* (already right in Gainsight: booked, not
   written), update instead of create, or wait (no Company to reference).
3. **Write** through the spec's writer kind, booking every outcome in the ledger as it lands.

`--dry-run` stops after step 2 and counts the plan: the same plan the push executes, made with
reads only. One error policy applies to every writer:

- a per-record refusal (HTTP 400, or `result: false`) splits the call in halves until the bad
  record is alone (`write_isolating`), which is dead-lettered; the others land;
- an unknown object, field or setting (`GainsightSettingError`) stops the run with a config
  error naming the key; rejected credentials stop it with exit 7 (`GainsightCredentialsRejected`);
- a used-up quota (`QuotaExhausted`) defers what is not settled yet, and everything after it, to
  a later run;
- anything else the client already retried: it fails the run (the ledger is exact up to there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connector_common.stop import STOP

from .client import GainsightClient
from .errors import GainsightRejected, QuotaExhausted
from .report import PushReport
from .settings import GainsightSettings
from .specs import SPECS, ObjectSpec
from .store import Ledger

log = logging.getLogger("nps.gainsight")

# Ledger statuses that say a record is in Gainsight, whatever its hash (activities booked by
# versions that kept no hash).
BOOKED = frozenset({"synced", "created", "exists", "updated"})
STATE_COLUMNS = ("status", "pushed_hash", "failed_hash", "attempts")


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    CONFIRM = "confirm"  # already right in Gainsight (found by a read): booked, not written
    UNCHANGED = "unchanged"  # the ledger confirmed this content
    GIVE_UP = "give up"  # this content failed max_attempts times: not sent until it changes
    WAIT = "wait"  # the record it references is not confirmed (yet)


WRITES = (Action.CREATE, Action.UPDATE)


def plan_actions(
    keys: Sequence[str],
    digests: Sequence[str],
    failure_hashes: Sequence[str],
    ready: Sequence[bool],
    state: Mapping[str, Mapping[str, Any]],
    max_attempts: int,
) -> list[Action]:
    """What to do with each item, from the ledger state alone (no I/O: unit-testable).

    `ready[i]` says the record item i references is confirmed; `digests[i]` is the hash of what it
    would write (compared with `pushed_hash`), `failure_hashes[i]` what a failure is counted
    against (`failed_hash`).
    """
    actions = []
    for key, digest, failure, parent in zip(keys, digests, failure_hashes, ready, strict=True):
        row = state.get(key) or {}
        if not parent:
            actions.append(Action.WAIT)
        elif row.get("pushed_hash") == digest:
            actions.append(Action.UNCHANGED)
        elif row.get("failed_hash") == failure and (row.get("attempts") or 0) >= max_attempts:
            actions.append(Action.GIVE_UP)
        elif row.get("pushed_hash") or row.get("status") in BOOKED:
            actions.append(Action.UPDATE)
        else:
            actions.append(Action.CREATE)
    return actions


@dataclass
class ObjectPlan:
    """The plan of one object for one outbox: its items (Arrow, one row each) and their actions."""

    spec: ObjectSpec
    items: pa.Table  # the spec's key and columns, plus `company_gsid` of the referenced Company
    keys: list[str]  # per item, as the ledger keys it
    digests: list[str]
    failure_hashes: list[str]
    state: dict[str, dict[str, Any]]
    actions: list[Action]
    found: dict[int, dict[str, Any]] = field(default_factory=dict)  # what a read found, by item

    def indices(self, *actions: Action) -> list[int]:
        return [i for i, action in enumerate(self.actions) if action in actions]

    def keys_of(self, indices: Iterable[int]) -> list[str]:
        keys = self.keys
        return [keys[i] for i in indices]

    def count(self, action: Action) -> int:
        return sum(1 for planned in self.actions if planned is action)

    def rows(self, indices: Sequence[int]) -> pa.Table:
        """The items `indices`, in that order. All of them in order (a first backfill: every
        response is a create) is the items table itself: a copy of a 100k-row outbox costs ~100 MB."""
        if len(indices) == self.items.num_rows and all(i == position for position, i in enumerate(indices)):
            return self.items
        return self.items.take(pa.array(indices, pa.int64()))


@dataclass
class PushContext:
    """What every writer needs: settings, the client, the ledger, the report, the outbox."""

    settings: GainsightSettings
    client: GainsightClient
    ledger: Ledger
    report: PushReport
    dry_run: bool = False
    outbox: pa.Table | None = None
    _lengths: dict[str, dict[str, int]] = field(default_factory=dict)

    def field_lengths(self, obj: str) -> dict[str, int]:
        """Text field lengths of `obj`, described once per run."""
        if obj not in self._lengths:
            self._lengths[obj] = self.client.field_lengths(obj)
        return self._lengths[obj]


class Book:
    """Books one object's outcomes in the ledger and the report; knows what is settled."""

    def __init__(self, ctx: PushContext, spec: ObjectSpec) -> None:
        self.ctx = ctx
        self.spec = spec
        self.counts = ctx.report[spec.name]
        self.settled: set[str] = set()
        self.confirmed: dict[str, str | None] = {}  # key -> Gainsight id of what was booked

    def confirm(self, rows: list[dict[str, Any]], outcome: str, counted: bool = True) -> None:
        """Record confirmed writes (ledger rows with key, ids, hashes and status). `outcome`:
        created / updated / unchanged, for the report."""
        if not rows:
            return
        self.ctx.ledger.confirm(self.spec.name, rows)
        for row in rows:
            key = str(row[self.spec.key])
            self.settled.add(key)
            self.confirmed[key] = row.get("gsid")
        if counted:
            setattr(self.counts, outcome, getattr(self.counts, outcome) + len(rows))

    def fail(self, key: str, failure_hash: str, code: str | None, message: str, payload: Any) -> None:
        """Dead-letter one record; it is retried by later runs until `max_attempts`."""
        self.ctx.ledger.fail(self.spec.name, key, failure_hash, code, message, payload)
        self.settled.add(key)
        self.counts.failed += 1
        log.warning("gainsight: %s %s dead-lettered: %s %s", self.spec.name, key, code or "", message)

    def defer(self, keys: Iterable[str], exhausted: QuotaExhausted) -> None:
        """Leave `keys` for a later run because a quota is used up."""
        keys = [key for key in keys if key not in self.settled]
        if not keys:
            return
        if not self.ctx.dry_run:
            self.ctx.ledger.mark(self.spec.name, keys, "deferred")
        self.ctx.report.defer_records(self.spec.name, keys)
        self.ctx.report.defer(exhausted.family, exhausted.window, exhausted.resume_at)
        log.warning("gainsight: %s; %d %s deferred to a later run", exhausted, len(keys), self.spec.name)


class Writer:
    """A writer kind: refines a plan with reads (`resolve`), then executes it (`write`)."""

    def __init__(self, ctx: PushContext, plan: ObjectPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.spec = plan.spec
        self.settings = ctx.settings
        self.book = Book(ctx, plan.spec)

    def resolve(self) -> None:
        """Reads only (the dry run calls it too): what Gainsight holds that the ledger does not say."""

    def write(self) -> None:
        raise NotImplementedError

    def confirmed(self) -> dict[str, str | None]:
        """key -> Gainsight id of every record a dependent may reference now: what the ledger
        confirmed and this run booked; in a dry run, every record the plan leaves in Gainsight."""
        plan = self.plan
        if not self.ctx.dry_run:
            unchanged = {key: plan.state[key].get("gsid") for key in plan.keys_of(plan.indices(Action.UNCHANGED))}
            return {**unchanged, **self.book.confirmed}
        keys = plan.keys
        return {
            keys[i]: (plan.found.get(i) or {}).get("Gsid") or (plan.state.get(keys[i]) or {}).get("gsid")
            for i in plan.indices(Action.UNCHANGED, Action.CONFIRM, *WRITES)
        }


Send = Callable[[list[Any]], Any]


def write_isolating(
    items: Sequence[Any], send: Send, landed: Callable[[list[Any], Any], None], rejected: Callable[[Any, GainsightRejected], None]
) -> None:
    """Send `items` in one call; on a per-record refusal bisect until each bad item is alone.

    Gainsight validates a write call as a whole: one bad record fails all 50 (reference §2), and
    retrying the same batch cannot succeed. Log2(50) < 6 extra calls per bad record. A refusal
    that is not about the records (and a misconfiguration, `GainsightSettingError`, which the
    client raises for an unknown object or field) is raised: splitting cannot help.
    """
    batch = list(items)
    try:
        answer = send(batch)
    except GainsightRejected as exc:
        if not exc.per_record:
            raise
        if len(batch) == 1:
            rejected(batch[0], exc)
            return
        middle = len(batch) // 2
        write_isolating(batch[:middle], send, landed, rejected)
        write_isolating(batch[middle:], send, landed, rejected)
        return
    landed(batch, answer)


class Engine:
    """Runs every enabled spec over one outbox, in dependency order."""

    def __init__(self, ctx: PushContext, writers: Mapping[str, type[Writer]]) -> None:
        self.ctx = ctx
        self.writers = writers

    def run(self, outbox: pa.Table) -> dict[str, ObjectPlan]:
        """Plan (and, unless a dry run, write) every object of `outbox`; returns the plans."""
        ctx = self.ctx
        ctx.outbox = outbox
        parents: dict[str, dict[str, str | None]] = {}
        plans: dict[str, ObjectPlan] = {}
        stopped: QuotaExhausted | None = None
        for spec in SPECS:
            if not spec.enabled(ctx.settings):
                continue
            STOP.enter(f"the push: {spec.name}")
            plan = self.plan(spec, outbox, parents.get(spec.depends_on or "", {}))
            writer = self.writers[spec.writer](ctx, plan)
            if stopped is None:
                try:
                    writer.resolve()
                    if not ctx.dry_run:
                        writer.write()
                except QuotaExhausted as exhausted:
                    stopped = exhausted  # the quota is shared: what follows waits for the next run too
            if stopped is not None:
                writer.book.defer(plan.keys_of(plan.indices(*WRITES, Action.CONFIRM)), stopped)
            self.count(plan)
            parents[spec.name] = writer.confirmed()
            plans[spec.name] = plan
        return plans

    def plan(self, spec: ObjectSpec, outbox: pa.Table, parents: Mapping[str, str | None]) -> ObjectPlan:
        """The spec's items in `outbox` and the plan for each, from the ledger (no Gainsight call)."""
        items = self.items(spec, outbox, parents)
        settings = self.ctx.settings
        digests = spec.digest(items, settings)
        failures = spec.failure_hash(items, settings) if spec.failure_hash else digests
        keys = [str(key) for key in items[spec.key].to_pylist()]
        if spec.parent_key:
            parent_ids = items[spec.parent_key].to_pylist()
            ready = [parent is None or parent in parents for parent in parent_ids]
        else:
            ready = [True] * len(keys)
        columns = sorted({*STATE_COLUMNS, *spec.ledger_column_names})
        state = self.ctx.ledger.state(spec.name, keys, columns)
        actions = plan_actions(keys, digests, failures, ready, state, settings.max_attempts)
        return ObjectPlan(spec, items, keys, digests, failures, state, actions)

    def items(self, spec: ObjectSpec, outbox: pa.Table, parents: Mapping[str, str | None]) -> pa.Table:
        """One row per record of `spec` in `outbox`, with `company_gsid` from `parents`."""
        columns = [spec.key, *spec.columns]
        if spec.latest:
            latest = self.ctx.ledger.latest_per(outbox, spec.key, list(spec.columns), only_needing_record=bool(spec.flags))
            items = pa.Table.from_pylist(
                [{spec.key: key, **row} for key, row in latest.items()],
                pa.schema([outbox.schema.field(column) for column in columns]),
            )
        else:
            items = outbox.select(columns)
            selected = pa.chunked_array([pa.array([not spec.flags] * outbox.num_rows, pa.bool_())])
            for flag in spec.flags:
                selected = pc.or_(selected, pc.fill_null(outbox[flag], False))
            if not pc.all(selected).as_py():
                items = items.filter(selected)
        gsids: pa.Array | pa.ChunkedArray = pa.nulls(items.num_rows, pa.string())
        if spec.parent_key and parents:
            known = [key for key in parents if parents[key] is not None]
            gsids = pc.take(
                pa.array([parents[key] for key in known], pa.string()),
                pc.index_in(items[spec.parent_key], value_set=pa.array(known, pa.string())),
            )
        return items.append_column("company_gsid", gsids)

    def count(self, plan: ObjectPlan) -> None:
        """The report's counts the writer does not make: unchanged, given up, waiting (and, in a
        dry run, what would be created, updated or found as it should be)."""
        report = self.ctx.report
        counts = report[plan.spec.name]
        counts.unchanged += plan.count(Action.UNCHANGED)
        counts.given_up += plan.count(Action.GIVE_UP)
        waiting = plan.keys_of(plan.indices(Action.WAIT))
        if waiting and (plan.spec.parent_key or self.ctx.dry_run):
            report.defer_records(plan.spec.name, waiting)
        if self.ctx.dry_run:
            counts.created += plan.count(Action.CREATE)
            counts.updated += plan.count(Action.UPDATE)
            counts.unchanged += plan.count(Action.CONFIRM)
        log.info(
            "gainsight: %s: %s",
            plan.spec.name,
            ", ".join(f"{plan.count(action)} {action.value}" for action in Action if plan.count(action)) or "nothing to do",
        )
