"""Writer kind PERSON: the people who answered, with their Company association (People API).

The People API takes one person per call (reference §4.6), so it is the most call-hungry object:
the plan sends a person only when new or when a pushed field (name, company) changed since the
ledger's last confirmed version, and a person whose account has no confirmed Company yet waits for
it, so the association is never dropped and re-added. A person who already exists in Gainsight
keeps the names the CRM gave them (only the association is added) unless `update_person_names` is
set: the person's payload reads the `exists` verdict this writer's look-up adds.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from .engine import Action, Writer, write_isolating
from .errors import GainsightRejected

log = logging.getLogger("nps.gainsight.people")

LEDGER_BATCH = 200  # confirmations written per DuckDB statement; a crash re-sends at most these


class PersonWriter(Writer):
    def resolve(self) -> None:
        """Persons the ledger does not know may exist in Gainsight (a CRM made them): a query of
        Person by Email (≤5000 per call; none when the ledger knows them all) finds them."""
        creates = self.plan.indices(Action.CREATE)
        if not creates:
            return
        emails = self.plan.keys_of(creates)
        found = {str(email).lower() for email in self.ctx.client.find_by_key("Person", "Email", emails, [])}
        for index, email in zip(creates, emails, strict=True):
            if email.lower() in found:
                self.plan.actions[index] = Action.UPDATE

    def write(self) -> None:
        plan = self.plan
        todo = plan.indices(Action.UPDATE, Action.CREATE)
        exists = [plan.actions[i] is Action.UPDATE for i in todo]
        rows = plan.rows(todo)
        companies = dict(zip(todo, rows["company_gsid"].to_pylist(), strict=True))
        people = self.spec.payload(rows.append_column("exists", pa.array(exists, pa.bool_())), self.settings, {})
        confirmations: dict[str, list[dict[str, Any]]] = {"created": [], "updated": []}

        def flush() -> None:
            for outcome, booked in confirmations.items():
                self.book.confirm(booked, outcome)
                booked.clear()

        def landed(batch: list[tuple[int, dict[str, Any]]], answer: dict[str, Any]) -> None:
            ((index, person),) = batch
            outcome = "updated" if plan.actions[index] is Action.UPDATE else "created"
            confirmations[outcome].append(
                {
                    "email": plan.keys[index],
                    "gsid": answer.get("Gsid"),
                    "company_gsid": companies[index],
                    "pushed_hash": plan.digests[index],
                    "status": "synced",
                }
            )

        def rejected(item: tuple[int, dict[str, Any]], exc: GainsightRejected) -> None:
            index, person = item
            self.book.fail(plan.keys[index], plan.failure_hashes[index], exc.code, exc.reason, person)

        try:  # every answer received is booked, even when a stop or a quota ends the loop
            for position, item in enumerate(zip(todo, people, strict=True)):
                write_isolating([item], lambda batch: self.ctx.client.upsert_person(batch[0][1]), landed, rejected)
                if sum(map(len, confirmations.values())) >= LEDGER_BATCH:
                    flush()
                    log.info("gainsight: people: %d of %d upserted", position + 1, len(todo))
        finally:
            flush()
