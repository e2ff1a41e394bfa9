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

import contextlib
import functools
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connector_common.stop import STOP

from .client import GainsightClient
from .errors import GainsightRejected, QuotaExhausted
from .report import PushReport
from .scheduler import Scheduler, Step
from .settings import GainsightSettings
from .specs import SPECS, ObjectSpec
from .store import Ledger, now

log = logging.getLogger("nps.gainsight")

# Ledger statuses that say a record is in Gainsight, whatever its hash (activities booked by
# versions that kept no hash).
BOOKED = frozenset({"synced", "created", "exists", "updated"})
STATE_COLUMNS = ("status", "pushed_hash", "failed_hash", "attempts")
# How long a describe of an object's field lengths is used (`gainsight.tenant_facts`): an admin's
# change of a length reaches the push within this.
DESCRIBED_FOR = timedelta(minutes=5)


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


PAGE_ROWS = 20_000  # items of one object planned and written at a time (the push's memory follows this)


@dataclass
class ObjectPlan:
    """The plan of one page of an object's items (Arrow, one row each) and their actions."""

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
        """The items `indices`, in that order (all of them in order: the items table itself)."""
        if len(indices) == self.items.num_rows and all(i == position for position, i in enumerate(indices)):
            return self.items
        return self.items.take(pa.array(indices, pa.int64()))


@dataclass
class PushContext:
    """What every writer needs: settings, the client, the ledger, the report, the staged dataset."""

    settings: GainsightSettings
    client: GainsightClient
    ledger: Ledger
    report: PushReport
    dry_run: bool = False
    dataset: str = ""  # the staged responses' schema (Bulk reconciliation rebuilds what it sent)
    scheduler: Scheduler = field(default_factory=Scheduler)  # its clock and pause are the push's

    def clock(self) -> float:
        return self.scheduler.clock()

    def pause(self, seconds: float) -> None:
        """Wait; inside the push's steps, other objects' calls go on meanwhile (`scheduler.py`)."""
        self.scheduler.pause(seconds)
    _lengths: dict[str, dict[str, int]] = field(default_factory=dict)

    def field_lengths(self, obj: str) -> dict[str, int]:
        """Text field lengths of `obj`, described at most once per `DESCRIBED_FOR`, across runs (a
        `serve` webhook batch is a run: a describe each would be a third of its sync calls)."""
        if obj not in self._lengths:
            fact = f"field_lengths:{obj}"
            known = self.ledger.tenant_fact(fact, learned_after=now() - DESCRIBED_FOR)
            if known is None:
                self._lengths[obj] = self.client.field_lengths(obj)
                if not self.dry_run:
                    self.ledger.remember_tenant_fact(fact, json.dumps(self._lengths[obj], sort_keys=True))
            else:
                self._lengths[obj] = {name: int(length) for name, length in json.loads(known).items()}
        return self._lengths[obj]


# Specs other specs reference: only their confirmed ids are kept for the run (a few thousand
# Companies), never those of the 100k responses.
REFERENCED = frozenset(spec.depends_on for spec in SPECS if spec.depends_on)


class Book:
    """Books one object's outcomes in the ledger and the report; knows what is settled in the
    current page (and, for a referenced object, every id confirmed in the run)."""

    def __init__(self, ctx: PushContext, spec: ObjectSpec) -> None:
        self.ctx = ctx
        self.spec = spec
        self.counts = ctx.report[spec.name]
        self.settled: set[str] = set()  # of the page being written
        self.page: frozenset[str] = frozenset()  # its keys
        self.confirmed: dict[str, str | None] = {}  # key -> Gainsight id (referenced objects only)
        self.keeps_ids = spec.name in REFERENCED

    def next_page(self, keys: Iterable[str] = ()) -> None:
        self.settled.clear()
        self.page = frozenset(keys)

    def confirm(self, rows: list[dict[str, Any]], outcome: str, counted: bool = True) -> None:
        """Record confirmed writes (ledger rows with key, ids, hashes and status). `outcome`:
        created / updated / unchanged, for the report. Only the current page's keys are kept as
        settled: a Bulk file's reconciliation confirms every row of the upload (200k keys held
        until the end of the object otherwise, growing with the backfill)."""
        if not rows:
            return
        self.ctx.ledger.confirm(self.spec.name, rows)
        for row in rows:
            key = str(row[self.spec.key])
            if key in self.page:
                self.settled.add(key)
            if self.keeps_ids:
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
        """Leave `keys` for a later run because a quota (or the run's time budget) is used up."""
        keys = [key for key in keys if key not in self.settled]
        if not keys:
            return
        if not self.ctx.dry_run:
            self.ctx.ledger.mark(self.spec.name, keys, "deferred")
        self.ctx.report.defer_records(self.spec.name, keys)
        self.ctx.report.defer(exhausted.family, exhausted.window, exhausted.resume_at, exhausted.reason)
        log.warning("gainsight: %s; %d %s deferred to a later run", exhausted, len(keys), self.spec.name)


class Writer:
    """A writer kind: for each page of an object's plan, refines it with reads (`resolve`), then
    executes it (`write`); `finish` after the last page. The engine hands it the pages in order
    (`take`); see /README "Adding a Gainsight object" and docs in `Engine`."""

    def __init__(self, ctx: PushContext, spec: ObjectSpec) -> None:
        self.ctx = ctx
        self.spec = spec
        self.settings = ctx.settings
        self.book = Book(ctx, spec)
        self._plan: ObjectPlan | None = None

    @property
    def plan(self) -> ObjectPlan:
        assert self._plan is not None, "take() a page first"
        return self._plan

    def take(self, plan: ObjectPlan) -> None:
        """The next page to resolve and write (state of the previous page is dropped)."""
        self._plan = plan
        self.book.next_page(plan.keys)

    def put_down(self) -> None:
        """The page is planned and written: drop it before the next one is read."""
        self._plan = None

    def between_pages(self) -> None:
        """After a page is dropped, before the next is read: long work the page is not needed
        for (a full Bulk file's upload and reconciliation). Raises `QuotaExhausted` after
        deferring what it held."""

    def resolve(self) -> None:
        """Reads only (the dry run calls it too): what Gainsight holds that the ledger does not say."""

    def write(self) -> None:
        raise NotImplementedError

    def finish(self, stopped: QuotaExhausted | None = None) -> None:
        """After the last page: write what the writer held across pages (a Bulk file); when the
        run `stopped` (a quota, the time budget), defer it instead. Raises `QuotaExhausted` after
        deferring what it held, if a quota runs out meanwhile."""

    def confirmed(self) -> dict[str, str | None]:
        """key -> Gainsight id of every record of this page a dependent may reference now: what
        the ledger confirmed and this run booked; in a dry run, every record the plan leaves in
        Gainsight."""
        plan = self.plan
        if not self.ctx.dry_run:
            unchanged = {key: plan.state[key].get("gsid") for key in plan.keys_of(plan.indices(Action.UNCHANGED))}
            booked = {key: self.book.confirmed[key] for key in plan.keys if key in self.book.confirmed}
            return {**unchanged, **booked}
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


def with_company_gsids(spec: ObjectSpec, items: pa.Table, parents: Mapping[str, str | None]) -> pa.Table:
    """`items` with `company_gsid`: the Gainsight id of the record each references (`parents`)."""
    gsids: pa.Array | pa.ChunkedArray = pa.nulls(items.num_rows, pa.string())
    if spec.parent_key and parents:
        known = [key for key in parents if parents[key] is not None]
        gsids = pc.take(
            pa.array([parents[key] for key in known], pa.string()),
            pc.index_in(items[spec.parent_key], value_set=pa.array(known, pa.string())),
        )
    return items.append_column("company_gsid", gsids)


def plan_items(
    ctx: PushContext, spec: ObjectSpec, items: pa.Table, parents: Mapping[str, str | None] | None
) -> ObjectPlan:
    """The plan of `items` (with `company_gsid`) from the ledger, no Gainsight call. `parents`:
    the referenced records confirmed so far (None: every item's reference is known good)."""
    settings = ctx.settings
    digests = spec.digest(items, settings)
    failures = spec.failure_hash(items, settings) if spec.failure_hash else digests
    keys = [str(key) for key in items[spec.key].to_pylist()]
    if spec.parent_key and parents is not None:
        ready = [parent is None or parent in parents for parent in items[spec.parent_key].to_pylist()]
    else:
        ready = [True] * len(keys)
    columns = sorted({*STATE_COLUMNS, *spec.ledger_column_names})
    state = ctx.ledger.state(spec.name, keys, columns)
    actions = plan_actions(keys, digests, failures, ready, state, settings.max_attempts)
    return ObjectPlan(spec, items, keys, digests, failures, state, actions)


class Engine:
    """Runs every enabled spec over the loaded outbox (`Ledger.load_outbox`), in value order,
    through the scheduler (`scheduler.py`): while one quota family's window is full, the next
    object that calls another family goes on.

    Each object is planned and written a page (`PAGE_ROWS` items) at a time, read from the outbox
    table in DuckDB: only a referenced object's confirmed ids (Companies) outlive a page.
    """

    def __init__(self, ctx: PushContext, writers: Mapping[str, type[Writer]]) -> None:
        self.ctx = ctx
        self.writers = writers

    def run(self) -> None:
        """Plan (and, unless a dry run, write) every object of the loaded outbox: one scheduler
        step per object, in value order (`SPECS`), each after the objects it references."""
        settings = self.ctx.settings
        parents: dict[str, dict[str, str | None]] = {}
        enabled = [spec for spec in SPECS if spec.enabled(settings)]
        names = {spec.name for spec in enabled}

        def step(spec: ObjectSpec) -> None:
            STOP.enter(f"the push: {spec.name}")
            confirmed = self.run_object(spec, parents.get(spec.depends_on or "", {}))
            if spec.name in REFERENCED:
                parents[spec.name] = confirmed

        self.ctx.scheduler.run(
            [
                Step(spec.name, functools.partial(step, spec), tuple(name for name in (spec.depends_on,) if name in names))
                for spec in enabled
            ]
        )

    def pages(self, spec: ObjectSpec) -> Iterator[pa.Table]:
        """The spec's items in the loaded outbox, a page at a time (without `company_gsid`)."""
        after = -1
        while True:
            page = self.ctx.ledger.outbox_page(spec.key, spec.columns, spec.flags, spec.latest, after, PAGE_ROWS)
            if not page.num_rows:
                return
            after = page["_position"][-1].as_py()
            handed = [page.drop_columns(["_position"])]
            del page  # held by this frame, the page would outlive the engine's `del` until the next read
            yield handed.pop()

    def run_object(self, spec: ObjectSpec, parents: Mapping[str, str | None]) -> dict[str, str | None]:
        """Plan and write every page of one object; returns the ids a dependent may reference."""
        ctx = self.ctx
        writer = self.writers[spec.writer](ctx, spec)
        confirmed: dict[str, str | None] = {}
        planned: Counter[Action] = Counter()
        stopped: QuotaExhausted | None = None
        for page in self.pages(spec):
            plan = plan_items(ctx, spec, with_company_gsids(spec, page, parents), parents)
            writer.take(plan)
            if stopped is None:
                try:
                    writer.resolve()
                    if not ctx.dry_run:
                        writer.write()
                except QuotaExhausted as exhausted:
                    stopped = exhausted  # this page's rest and every later page wait for a later run
            if stopped is not None:
                writer.book.defer(plan.keys_of(plan.indices(*WRITES, Action.CONFIRM)), stopped)
            self.count(plan)
            planned.update(plan.actions)
            if spec.name in REFERENCED:
                confirmed.update(writer.confirmed())
            writer.put_down()
            del page, plan  # one page in memory at a time, not this one under the next one's read
            ctx.ledger.release_cache()
            if stopped is None and not ctx.dry_run:
                try:
                    writer.between_pages()
                except QuotaExhausted as exhausted:
                    stopped = exhausted  # every later page waits for a later run
        if not ctx.dry_run:
            with contextlib.suppress(QuotaExhausted):  # the writer deferred what it held
                writer.finish(stopped)
        log.info(
            "gainsight: %s: %s",
            spec.name,
            ", ".join(f"{planned[action]} {action.value}" for action in Action if planned[action]) or "nothing to do",
        )
        return confirmed

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
