"""Step 2: upsert the people who answered, with their Company association (People API).

The People API takes one person per call (reference §4.6), so it is the most call-hungry step: a
person is only sent when new or when a pushed field (name, company) changed since the ledger's
last confirmed version. A person whose account has no confirmed Company yet waits for it, so the
association is never dropped and re-added.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from .context import PushContext
from .errors import GainsightRejected, QuotaExhausted
from .outbox import latest_per
from .records import person_hash, person_record

log = logging.getLogger("nps.gainsight.people")

TABLE = "people"
LEDGER_BATCH = 200  # confirmations written per DuckDB statement; a crash re-sends at most these


def upsert_people(ctx: PushContext, outbox: pa.Table, companies: dict[str, str]) -> None:
    counts = ctx.report[TABLE]
    people = latest_per(ctx.ledger.db, outbox, "email", ["first_name", "last_name", "account_id"], only_needing_record=True)
    state = ctx.ledger.state(TABLE, list(people), ["pushed_hash", "failed_hash", "attempts"])
    todo: list[tuple[str, dict[str, Any], str, str | None]] = []
    waiting: list[str] = []
    for email, row in people.items():
        account_id = row["account_id"]
        if account_id and account_id not in companies:
            waiting.append(email)
            continue
        gsid = companies.get(account_id) if account_id else None
        digest = person_hash(email, row["first_name"], row["last_name"], gsid)
        known = state.get(email)
        if known and known["pushed_hash"] == digest:
            counts.unchanged += 1
        elif ctx.ledger.gives_up(known, digest):
            counts.given_up += 1
        else:
            todo.append((email, person_record(email, row["first_name"], row["last_name"], gsid), digest, gsid))
    counts.deferred += len(waiting)
    confirmations: list[dict[str, Any]] = []
    for position, (email, person, digest, company_gsid) in enumerate(todo):
        try:
            answer = ctx.client.upsert_person(person)
        except QuotaExhausted as exhausted:
            ctx.ledger.confirm(TABLE, confirmations)
            ctx.defer(TABLE, [item[0] for item in todo[position:]], exhausted)
            return
        except GainsightRejected as exc:
            ctx.ledger.fail(TABLE, email, digest, exc.code, exc.reason, person)
            counts.failed += 1
            log.warning("gainsight: person %s dead-lettered: %s", email, exc)
            continue
        created = email not in state or not state[email].get("pushed_hash")
        counts.created += created
        counts.updated += not created
        confirmations.append(
            {
                "email": email,
                "gsid": answer.get("Gsid"),
                "company_gsid": company_gsid,
                "pushed_hash": digest,
                "status": "synced",
            }
        )
        if len(confirmations) >= LEDGER_BATCH:
            ctx.ledger.confirm(TABLE, confirmations)
            confirmations = []
            log.info("gainsight: people: %d of %d upserted", position + 1, len(todo))
    ctx.ledger.confirm(TABLE, confirmations)
    log.info(
        "gainsight: people: %d upserted, %d unchanged, %d failed, %d waiting for their company",
        counts.created + counts.updated,
        counts.unchanged,
        counts.failed,
        len(waiting),
    )
