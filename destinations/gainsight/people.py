"""Writer kind PERSON: the people who answered, with their Company association (People API).

The People API takes one person per call (reference §4.6), so it is the most call-hungry object.
The plan sends a person only when new or when a pushed field (name, company) changed since the
ledger's last confirmed version, and a person whose account has no confirmed Company yet waits for
it, so the association is never dropped and re-added.

**Known persons cost nothing.** A person the ledger confirmed is planned unchanged while their
digest is; when it changed only in what a write would not send them (`adds_nothing`), they stay
unchanged without a read, so a steady stream of responses from known contacts makes no people call.

**Read before write.** Most respondents of a CRM-synced tenant already exist in Gainsight. Before
any write, `Person` is read by Email and `Company_Person` by person and Company (≤5000 values a
read, two reads per 5000 people); only persons that are missing, or lack the association, are
sent. A person who exists keeps the names the CRM gave them unless `update_person_names` is set,
in which case names that differ are written too. Persons already right are booked as confirmed
without a call. The split (exists / association added / names updated / created) is in the
report (`PushReport.people`).

The writes go through the single People API, or in batches of 50 through the async bulk People
API (`people_bulk.py`) when `people_writer` allows it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .client import QUERY_LIMIT, GainsightClient
from .engine import BOOKED, Action, ObjectPlan, Writer, write_isolating
from .errors import GainsightRejected
from .people_bulk import PeopleBulk

log = logging.getLogger("nps.gainsight.people")

LEDGER_BATCH = 200  # confirmations written per DuckDB statement; a crash re-sends at most these
PROBE_ABOVE = QUERY_LIMIT  # persons to read before writing above which an empty tenant is probed first
NAME_FIELDS = ("FirstName", "LastName", "Name")  # what `update_person_names` may overwrite

# Where a person stood before the write (`PeopleSplit` field names).
EXISTS, ASSOCIATION_ADDED, NAMES_UPDATED, CREATED = "exists", "association_added", "names_updated", "created"


def standing(found: dict[str, Any] | None, linked: bool, person: dict[str, Any]) -> str:
    """A person's standing from what the read found: `person` is what would be sent for them."""
    if found is None:
        return CREATED
    if not linked:
        return ASSOCIATION_ADDED
    if any(person.get(name) != (found.get(name) or None) for name in NAME_FIELDS if name in person):
        return NAMES_UPDATED
    return EXISTS


def adds_nothing(confirmed: dict[str, Any] | None, company_gsid: str | None, names_pushed: bool) -> bool:
    """Whether a person the ledger `confirmed` in Gainsight needs no call although their digest
    changed: what a write would send to a person who exists is the Company association (and the
    names only with `update_person_names`), and an association is never removed by an upsert.

    So a response without an account (no Company), or a name spelled another way, costs a
    webhook batch no `Person` / `Company_Person` read; a new Company for the person still does."""
    if names_pushed or not confirmed or confirmed.get("status") not in BOOKED:
        return False
    return company_gsid is None or company_gsid == confirmed.get("company_gsid")


def read_people(client: GainsightClient, emails: Sequence[str]) -> list[dict[str, Any] | None]:
    """The `Person` of each e-mail (its Gsid and names), or None: one read per 5000 e-mails."""
    found = client.find_people(list(emails), list(NAME_FIELDS))
    return [found.get(email.lower()) for email in emails]


def standings_of(client: GainsightClient, people: Sequence[dict[str, Any]], found: Sequence[dict[str, Any] | None]) -> list[str]:
    """Each person's standing: `people` are the People API records (with their `companies[]`),
    `found` what `read_people` found for them; the associations are read from `Company_Person`."""
    companies = [((person.get("companies") or [{}])[0]).get("Company_ID") for person in people]
    links = {str(p["Gsid"]): c for p, c in zip(found, companies, strict=True) if p is not None and c}
    held = client.find_company_people(links) if links else set()
    return [
        standing(p, company is None or (p is not None and (str(p["Gsid"]), company) in held), person)
        for person, p, company in zip(people, found, companies, strict=True)
    ]


@dataclass
class _Page:
    """What the read found for the items of one plan (the engine may plan an object page by page)."""

    plan: ObjectPlan
    standings: dict[int, str] = field(default_factory=dict)  # item -> its standing, from the read
    people: dict[int, dict[str, Any]] = field(default_factory=dict)  # item -> the People API record to send


class PersonWriter(Writer):
    # No __init__: the engine builds writers as it likes; the state below is made when first used.
    _page: _Page | None = None
    _bulk: PeopleBulk | None = None
    _processing: set[str] | None = None  # e-mails of async upserts an earlier run left processing
    _tenant_has_people: bool | None = None  # from one read, once per run (`existing`)

    @property
    def page(self) -> _Page:
        if self._page is None or self._page.plan is not self.plan:
            self._page = _Page(self.plan)
        return self._page

    @property
    def standings(self) -> dict[int, str]:
        return self.page.standings

    @property
    def people(self) -> dict[int, dict[str, Any]]:
        return self.page.people

    @property
    def bulk(self) -> PeopleBulk:
        """The async People API path, made once: its polling patience is shared by the whole run."""
        if self._bulk is None:
            self._bulk = PeopleBulk(self)
        return self._bulk

    def resolve(self) -> None:
        """Read `Person` by Email and `Company_Person` by person and Company; plan a write only for
        the persons that are missing, lack the association or (with `update_person_names`) the names."""
        plan = self.plan
        todo = plan.indices(Action.CREATE, Action.UPDATE)
        if todo and not self.ctx.dry_run:
            # Async upserts an earlier run left open are polled to the end first: their persons are
            # then found by the read below instead of being sent again.
            if self._processing is None:  # once per run
                self._processing = self.bulk.recover()
            for index in todo:
                if plan.keys[index] in self._processing:
                    plan.actions[index] = Action.WAIT
            todo = [i for i in todo if plan.actions[i] is not Action.WAIT and plan.keys[i] not in self.book.settled]
        companies = plan.items["company_gsid"].to_pylist()
        for index in todo:
            if adds_nothing(plan.state.get(plan.keys[index]), companies[index], self.settings.update_person_names):
                plan.actions[index] = Action.UNCHANGED  # not booked again: the ledger's row stays as confirmed
        todo = [i for i in todo if plan.actions[i] is not Action.UNCHANGED]
        if not todo:
            return
        client = self.ctx.client
        persons = self.existing(plan.keys_of(todo))
        rows = plan.rows(todo)
        exists = pa.array([p is not None for p in persons], pa.bool_())
        people = self.spec.payload(rows.append_column("exists", exists), self.settings, {})
        assert isinstance(people, list)
        for index, person, record, verdict in zip(todo, persons, people, standings_of(client, people, persons), strict=True):
            self.standings[index] = verdict
            self.people[index] = record
            if person is not None:
                plan.found[index] = person
            plan.actions[index] = {EXISTS: Action.CONFIRM, CREATED: Action.CREATE}.get(verdict, Action.UPDATE)
        if self.ctx.dry_run:
            for verdict in self.standings.values():
                self.count(verdict)
        tally = {s: sum(1 for v in self.standings.values() if v == s) for s in (EXISTS, ASSOCIATION_ADDED, NAMES_UPDATED, CREATED)}
        log.info("gainsight: people: read %d: %s", len(todo), ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in tally.items()))

    def existing(self, emails: list[str]) -> list[dict[str, Any] | None]:
        """`read_people`, except on a tenant that holds no Person at all: when the persons of a run's
        first large read (more than `PROBE_ABOVE`) would take several reads, one read of a single
        Person says whether there is any (a first backfill: 1 call instead of one per 5000), and if
        not, every person of the run is new. A person someone else creates meanwhile is upserted by
        Email, so at worst written once more, never twice."""
        if self._tenant_has_people is None and len(emails) > PROBE_ABOVE:
            self._tenant_has_people = bool(self.ctx.client.query("Person", ["Gsid"], limit=1))
            if not self._tenant_has_people:
                log.info("gainsight: people: the tenant holds no Person yet: every person of this run is new")
        if self._tenant_has_people is False:
            return [None] * len(emails)
        return read_people(self.ctx.client, emails)

    def count(self, verdict: str, n: int = 1) -> None:
        split = self.ctx.report.people
        setattr(split, verdict, getattr(split, verdict) + n)

    def booking(self, index: int, gsid: str | None, status: str = "synced") -> dict[str, Any]:
        """The ledger row of a person confirmed in Gainsight."""
        plan = self.plan
        return {
            "email": plan.keys[index],
            "gsid": gsid or (plan.found.get(index) or {}).get("Gsid"),
            "company_gsid": plan.items["company_gsid"][index].as_py(),
            "pushed_hash": plan.digests[index],
            "status": status,
        }

    def land(self, indices: Sequence[int], gsids: Sequence[str | None]) -> None:
        """Book persons written and confirmed, counted by the standing they had before."""
        booked: dict[str, list[dict[str, Any]]] = {"created": [], "updated": []}
        for index, gsid in zip(indices, gsids, strict=True):
            verdict = self.standings.get(index, CREATED)
            booked["created" if verdict == CREATED else "updated"].append(self.booking(index, gsid))
            self.count(verdict)
        for outcome, rows in booked.items():
            self.book.confirm(rows, outcome)

    def reject(self, index: int, code: str | None, message: str) -> None:
        plan = self.plan
        self.book.fail(plan.keys[index], plan.failure_hashes[index], code, message, self.people.get(index))

    def write(self) -> None:
        plan = self.plan
        same = plan.indices(Action.CONFIRM)
        for start in range(0, len(same), LEDGER_BATCH):
            chunk = same[start : start + LEDGER_BATCH]
            self.book.confirm([self.booking(i, None, "exists") for i in chunk], "unchanged")
            self.count(EXISTS, len(chunk))
        writes = [i for i in plan.indices(Action.UPDATE, Action.CREATE) if plan.keys[i] not in self.book.settled]
        # Booked as left for later until each lands: people come last (value order), so a run killed
        # here has confirmed their responses already, and only this status brings them back.
        self.ctx.ledger.mark(self.spec.name, plan.keys_of(writes), "deferred")
        if not writes or self.settings.people.writer == "single":
            self.upsert_singly(writes)
            return
        sent, singly, stopped = self.bulk.send(writes)
        self.upsert_singly(singly)  # on another quota than the async calls, which Gainsight processes meanwhile
        self.upsert_singly(self.bulk.finish(sent) if sent else [])  # did not land and no error named: the single API names it
        if stopped is not None:
            raise stopped  # the engine defers what is not settled

    def upsert_singly(self, indices: Sequence[int]) -> None:
        """One People API call per person; answers are booked in batches of `LEDGER_BATCH`."""
        pending: list[tuple[int, str | None]] = []

        def flush() -> None:
            if pending:
                self.land([i for i, _ in pending], [g for _, g in pending])
                pending.clear()

        def landed(batch: list[tuple[int, dict[str, Any]]], answer: dict[str, Any]) -> None:
            ((index, _),) = batch
            pending.append((index, answer.get("Gsid")))

        def rejected(item: tuple[int, dict[str, Any]], exc: GainsightRejected) -> None:
            self.reject(item[0], exc.code, exc.reason)

        client = self.ctx.client
        try:  # every answer received is booked, even when a stop or a quota ends the loop
            for position, index in enumerate(indices):
                write_isolating([(index, self.people[index])], lambda batch: client.upsert_person(batch[0][1]), landed, rejected)
                if len(pending) >= LEDGER_BATCH:
                    flush()
                    log.info("gainsight: people: %d of %d upserted", position + 1, len(indices))
        finally:
            flush()
