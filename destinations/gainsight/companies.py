"""Step 1: make sure every account in the outbox is a Company in Gainsight, and know its GSID.

Companies are matched on the external key field (default `CG_Account_Id__gc`). The ledger answers
for accounts already confirmed with the same name; the rest are looked up in Gainsight (≤5000 keys
per query), inserted when missing (≤50 per call) and renamed when CustomerGauge's name changed.
Only GSIDs confirmed here are ever referenced by responses and Timeline activities.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from .client import WRITE_LIMIT
from .context import PushContext
from .errors import GainsightRejected, QuotaExhausted
from .outbox import latest_per
from .records import company_hash, company_record
from .writes import insert_reconciled, write_isolating

log = logging.getLogger("nps.gainsight.companies")

TABLE = "companies"


def resolve_companies(ctx: PushContext, outbox: pa.Table) -> dict[str, str]:
    """account_id -> Company GSID for every account of the outbox Gainsight confirmed."""
    accounts = {account: row["account_name"] for account, row in latest_per(ctx.ledger.db, outbox, "account_id", ["account_name"]).items()}
    if not accounts:
        return {}
    counts = ctx.report[TABLE]
    state = ctx.ledger.state(TABLE, list(accounts), ["gsid", "pushed_hash", "failed_hash", "attempts"])
    confirmed: dict[str, str] = {}
    pending: dict[str, str] = {}
    for account_id, name in accounts.items():
        row = state.get(account_id)
        digest = company_hash(account_id, name)
        if row and row["gsid"] and row["pushed_hash"] == digest:
            confirmed[account_id] = row["gsid"]
            counts.unchanged += 1
        elif ctx.ledger.gives_up(row, digest):
            counts.given_up += 1
        else:
            pending[account_id] = name
    if not pending:
        return confirmed
    settings = ctx.settings
    try:
        existing = ctx.client.find_by_key(settings.company_object, settings.company_key_field, list(pending), ["Name"])
    except QuotaExhausted as exhausted:
        ctx.defer(TABLE, pending, exhausted)
        return confirmed
    inserts, updates, same = [], [], []
    for account_id, name in pending.items():
        record = company_record(account_id, name, settings.company_key_field)
        found = existing.get(account_id)
        if found is None:
            inserts.append(record)
        elif found.get("Name") != record["Name"]:
            updates.append(record)
        else:
            same.append((record, found["Gsid"]))
    # Already right in Gainsight (created by someone else, or by a run that died before its ledger write).
    _confirm(ctx, confirmed, [r for r, _ in same], [{"Gsid": gsid} for _, gsid in same])
    counts.unchanged += len(same)
    for operation, records in (("insert", inserts), ("update", updates)):
        for start in range(0, len(records), WRITE_LIMIT):
            batch = records[start : start + WRITE_LIMIT]
            try:
                _write(ctx, operation, batch, confirmed)
            except QuotaExhausted as exhausted:
                rest = [r[settings.company_key_field] for r in records[start:]]
                if operation == "insert":
                    rest += [r[settings.company_key_field] for r in updates]
                ctx.defer(TABLE, rest, exhausted)
                return confirmed
    log.info(
        "gainsight: companies: %d confirmed (%d created, %d renamed, %d failed)",
        len(confirmed),
        counts.created,
        counts.updated,
        counts.failed,
    )
    return confirmed


def _write(ctx: PushContext, operation: str, batch: list[dict[str, Any]], confirmed: dict[str, str]) -> None:
    settings = ctx.settings
    key = settings.company_key_field
    counts = ctx.report[TABLE]

    def send(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if operation == "insert":
            return insert_reconciled(ctx.client, "company", settings.company_object, key, records)
        return ctx.client.update("company", settings.company_object, records, [key])

    def landed(records: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
        _confirm(ctx, confirmed, records, results)
        if operation == "insert":
            counts.created += len(records)
        else:
            counts.updated += len(records)

    def rejected(record: dict[str, Any], exc: GainsightRejected) -> None:
        account_id = record[key]
        ctx.ledger.fail(TABLE, account_id, company_hash(account_id, record["Name"]), exc.code, exc.reason, record)
        counts.failed += 1
        log.warning("gainsight: company %s dead-lettered: %s", account_id, exc)

    write_isolating(batch, send, landed, rejected)


def _confirm(ctx: PushContext, confirmed: dict[str, str], records: list[dict], results: list[dict]) -> None:
    key = ctx.settings.company_key_field
    rows = []
    for record, result in zip(records, results):
        account_id, gsid = record[key], result["Gsid"]
        confirmed[account_id] = gsid
        rows.append(
            {
                "account_id": account_id,
                "name": record["Name"],
                "gsid": gsid,
                "pushed_hash": company_hash(account_id, record["Name"]),
                "status": "synced",
            }
        )
    ctx.ledger.confirm(TABLE, rows)
