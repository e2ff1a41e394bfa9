"""Step 1: find each outbox account's Company in Gainsight and know its GSID; never clobber the CRM.

A real tenant's Companies come from its CRM. So an account is matched by the key field (default
`CG_Account_Id__gc`), then, with `company_match = "key_then_name"`, by exact Name (see
`matching.py`); a name match stamps the key on that Company (update by Gsid) so the next run finds
it by key. Creating a missing Company (`create_missing_companies`) and renaming one to
CustomerGauge's name (`rename_companies`) are each an explicit opt-in. An account with no Company
waits: it is booked in `gainsight.company_waits` (view `accounts_waiting`), its people and
responses wait with it, and every run looks again, so a Company an admin creates or keys later is
picked up without anyone touching the connector. Only GSIDs confirmed here are ever referenced.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .client import WRITE_LIMIT
from .context import PushContext
from .errors import GainsightRejected, QuotaExhausted
from .matching import Company, match_accounts
from .records import company_hash, company_record
from .writes import insert_reconciled, write_isolating

log = logging.getLogger("nps.gainsight.companies")

TABLE = "companies"


def resolve_companies(ctx: PushContext, outbox: pa.Table) -> dict[str, str]:
    """account_id -> Company GSID for every account of the outbox Gainsight confirmed."""
    accounts = {account: row["account_name"] for account, row in ctx.ledger.latest_per(outbox, "account_id", ["account_name"]).items()}
    if not accounts:
        return {}
    resolver = CompanyResolver(ctx, accounts)
    waiting = resolver.run()
    if waiting:
        _report_waiting(ctx, outbox, waiting)
    return resolver.confirmed


class CompanyResolver:
    """Matches, writes (each write an opt-in or a key stamp) and books the outbox's accounts."""

    def __init__(self, ctx: PushContext, accounts: dict[str, str | None]) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.key = ctx.settings.company_key_field
        self.accounts = accounts
        self.counts = ctx.report[TABLE]
        self.confirmed: dict[str, str] = {}
        self.names: dict[str, str | None] = {}  # Name in Gainsight of Companies keyed by a name match

    def digest(self, account_id: str) -> str:
        return company_hash(account_id, self.accounts[account_id], self.settings.rename_companies)

    def run(self) -> list[dict[str, Any]]:
        """Resolve; returns the accounts that wait for a Company (as `company_waits` rows)."""
        state = self.ctx.ledger.state(TABLE, list(self.accounts), ["gsid", "pushed_hash", "failed_hash", "attempts"])
        pending: list[str] = []
        for account_id in self.accounts:
            row = state.get(account_id)
            if row and row["gsid"] and row["pushed_hash"] == self.digest(account_id):
                self.confirmed[account_id] = row["gsid"]
                self.counts.unchanged += 1
            elif self.ctx.ledger.gives_up(row, self.digest(account_id)):
                self.counts.given_up += 1
            else:
                pending.append(account_id)
        if not pending:
            return []
        by_name = self.settings.company_match == "key_then_name"
        try:
            matches = match_accounts(self.ctx.client, self.settings, {a: self.accounts[a] for a in pending}, by_name)
        except QuotaExhausted as exhausted:
            self.ctx.defer(TABLE, pending, exhausted)
            return []
        same: list[tuple[str, str, str]] = []
        renames: list[dict[str, Any]] = []
        for account_id, company in matches.by_key.items():
            record = company_record(account_id, self.accounts[account_id], self.key)
            if self.settings.rename_companies and company.get("Name") != record["Name"]:
                renames.append(record)
            else:
                same.append((account_id, company["Gsid"], company.get("Name")))
        # Already right in Gainsight (keyed by an admin, or by a run that died before its ledger write).
        self.confirm(same)
        self.counts.unchanged += len(same)
        stamps = [self.stamp(account_id, company) for account_id, company in matches.by_name.items()]
        creates = matches.unmatched if self.settings.create_missing_companies else []
        inserts = [company_record(account_id, self.accounts[account_id], self.key) for account_id in creates]
        self.write_all([("stamp", stamps), ("rename", renames), ("insert", inserts)])
        log.info(
            "gainsight: companies: %d confirmed (%d keyed after a name match, %d created, %d renamed, %d failed)",
            len(self.confirmed),
            len(stamps),
            len(inserts),
            len(renames),
            self.counts.failed,
        )
        missing = [] if creates else [self.waiting(a, "no_match", []) for a in matches.unmatched]
        return [self.waiting(a, "ambiguous_name", c) for a, c in matches.ambiguous.items()] + missing

    def stamp(self, account_id: str, company: Company) -> dict[str, Any]:
        """Key the Company its name matched, so the next run finds it by key (and rename it if asked)."""
        record: dict[str, Any] = {"Gsid": company["Gsid"], self.key: account_id}
        wanted = company_record(account_id, self.accounts[account_id], self.key)["Name"]
        if self.settings.rename_companies and company.get("Name") != wanted:
            record["Name"] = wanted
        self.names[account_id] = company.get("Name")
        return record

    def write_all(self, writes: list[tuple[str, list[dict[str, Any]]]]) -> None:
        """Each operation in ≤50-record calls; a used-up quota defers everything not yet written."""
        for position, (operation, records) in enumerate(writes):
            for start in range(0, len(records), WRITE_LIMIT):
                try:
                    self.write(operation, records[start : start + WRITE_LIMIT])
                except QuotaExhausted as exhausted:
                    rest = records[start:] + [record for _, later in writes[position + 1 :] for record in later]
                    self.ctx.defer(TABLE, [record[self.key] for record in rest], exhausted)
                    return

    def waiting(self, account_id: str, reason: str, candidates: list[Company]) -> dict[str, Any]:
        listed = "; ".join(f"{c.get('Name')} ({c['Gsid']})" for c in candidates) or None
        return {"account_id": account_id, "account_name": self.accounts[account_id], "reason": reason, "candidates": listed}

    def write(self, operation: str, batch: list[dict[str, Any]]) -> None:
        ctx, obj = self.ctx, self.settings.company_object

        def send(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if operation == "insert":
                return insert_reconciled(ctx.client, "company", obj, self.key, records)
            return ctx.client.update("company", obj, records, ["Gsid" if operation == "stamp" else self.key])

        def landed(records: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
            self.confirm(
                [
                    (r[self.key], result.get("Gsid") or r["Gsid"], r.get("Name", self.names.get(r[self.key])))
                    for r, result in zip(records, results)
                ]
            )
            if operation == "insert":
                self.counts.created += len(records)
            else:
                self.counts.updated += len(records)

        def rejected(record: dict[str, Any], exc: GainsightRejected) -> None:
            account_id = record[self.key]
            ctx.ledger.fail(TABLE, account_id, self.digest(account_id), exc.code, exc.reason, record)
            self.counts.failed += 1
            log.warning("gainsight: company %s dead-lettered: %s", account_id, exc)

        write_isolating(batch, send, landed, rejected)

    def confirm(self, companies: list[tuple[str, str, str | None]]) -> None:
        """Book (account_id, Company GSID, its Name in Gainsight) as confirmed."""
        for account_id, gsid, _ in companies:
            self.confirmed[account_id] = gsid
        rows = [
            {"account_id": a, "name": name, "gsid": gsid, "pushed_hash": self.digest(a), "status": "synced"}
            for a, gsid, name in companies
        ]
        self.ctx.ledger.confirm(TABLE, rows)
        self.ctx.ledger.stop_waiting(a for a, _, _ in companies)


def _report_waiting(ctx: PushContext, outbox: pa.Table, waiting: list[dict[str, Any]]) -> None:
    """Book the accounts without a Company and count them, with the responses that wait for them."""
    started = ctx.ledger.wait_for_company(waiting)
    accounts = pa.array([row["account_id"] for row in waiting], pa.string())
    needed = pc.and_(pc.fill_null(outbox["needs_response"], False), pc.is_in(outbox["account_id"], value_set=accounts))
    report = ctx.report.waiting
    report.account_ids.update(row["account_id"] for row in waiting)
    report.ambiguous_ids.update(row["account_id"] for row in waiting if row["reason"] == "ambiguous_name")
    report.started += started
    responses = pc.sum(needed).as_py() or 0
    report.responses += responses
    log.warning(
        "gainsight: %d account(s) wait for a Company (%d new this run, %d with an ambiguous name), holding %d "
        "response(s); see gainsight.accounts_waiting (company_match = %s, create_missing_companies = %s)",
        len(waiting),
        started,
        sum(1 for row in waiting if row["reason"] == "ambiguous_name"),
        responses,
        ctx.settings.company_match,
        str(ctx.settings.create_missing_companies).lower(),
    )
