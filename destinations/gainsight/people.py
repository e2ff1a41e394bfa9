"""Step 2: upsert the people who answered, with their Company association (People API).

The People API takes one person per call (reference §4.6), so it is the most call-hungry step: a
person is only sent when new or when a pushed field (name, company) changed since the ledger's
last confirmed version. A person whose account has no confirmed Company yet waits for it, so the
association is never dropped and re-added. A person who already exists in Gainsight keeps the
names the CRM gave them (only the association is added) unless `update_person_names` is set.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from connector_common.stop import StopRequested

from .context import PushContext
from .errors import GainsightRejected, QuotaExhausted
from .records import person_hash, person_record

log = logging.getLogger("nps.gainsight.people")

TABLE = "people"
LEDGER_BATCH = 200  # confirmations written per DuckDB statement; a crash re-sends at most these


def upsert_people(ctx: PushContext, outbox: pa.Table, companies: dict[str, str]) -> None:
    counts = ctx.report[TABLE]
    people = ctx.ledger.latest_per(outbox, "email", ["first_name", "last_name", "account_id"], only_needing_record=True)
    state = ctx.ledger.state(TABLE, list(people), ["pushed_hash", "failed_hash", "attempts"])
    todo: list[tuple[str, dict[str, Any], str, str | None]] = []  # (email, outbox row, hash, company)
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
            todo.append((email, row, digest, gsid))
    ctx.report.defer_records(TABLE, waiting)
    try:
        existing = _existing_people(ctx, [item[0] for item in todo], state)
    except QuotaExhausted as exhausted:
        ctx.defer(TABLE, [item[0] for item in todo], exhausted)
        return
    confirmations: list[dict[str, Any]] = []
    for position, (email, row, digest, company_gsid) in enumerate(todo):
        exists = email.lower() in existing
        names = ctx.settings.update_person_names or not exists
        person = person_record(email, row["first_name"], row["last_name"], company_gsid, names)
        try:
            answer = ctx.client.upsert_person(person)
        except QuotaExhausted as exhausted:
            ctx.ledger.confirm(TABLE, confirmations)
            ctx.defer(TABLE, [item[0] for item in todo[position:]], exhausted)
            return
        except StopRequested:
            ctx.ledger.confirm(TABLE, confirmations)  # every answer received is booked before the run stops
            raise
        except GainsightRejected as exc:
            ctx.ledger.fail(TABLE, email, digest, exc.code, exc.reason, person)
            counts.failed += 1
            log.warning("gainsight: person %s dead-lettered: %s", email, exc)
            continue
        counts.created += not exists
        counts.updated += exists
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


def _existing_people(ctx: PushContext, emails: list[str], state: dict[str, dict[str, Any]]) -> set[str]:
    """Lower-cased e-mails of the persons already in Gainsight, whose names the upsert must leave
    alone (the People API writes every field it is sent): the ledger's, then a query of Person by
    Email for the rest (≤5000 per call; none when the ledger knows them all)."""
    if not emails:
        return set()
    known = {email.lower() for email in emails if (state.get(email) or {}).get("pushed_hash")}
    rest = [email for email in emails if email.lower() not in known]
    if rest:
        known.update(str(email).lower() for email in ctx.client.find_by_key("Person", "Email", rest, []))
    return known
