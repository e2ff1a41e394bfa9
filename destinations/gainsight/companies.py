"""Writer kind COMPANY: find each account's Company in Gainsight and know its GSID; never clobber the CRM.

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
from collections.abc import Sequence
from typing import Any

from .engine import Action, ObjectPlan, PushContext
from .matching import Company, match_accounts
from .records import company_record
from .specs import ObjectSpec
from .writes import SyncWriter

log = logging.getLogger("nps.gainsight.companies")


class CompanyWriter(SyncWriter):
    """Matches the planned accounts to Companies (reads), then keys, renames or creates them."""

    def __init__(self, ctx: PushContext, spec: ObjectSpec) -> None:
        super().__init__(ctx, spec)
        self.stamps: dict[int, Company] = {}  # item of the page -> the unkeyed Company its name matched
        self.waiting: list[dict[str, Any]] = []  # `company_waits` rows of the page

    def take(self, plan: ObjectPlan) -> None:
        super().take(plan)
        self.stamps, self.waiting = {}, []

    def resolve(self) -> None:
        plan, settings = self.plan, self.settings
        pending = plan.indices(Action.CREATE, Action.UPDATE)
        if not pending:
            return
        names = dict(zip(plan.keys, plan.items["account_name"].to_pylist(), strict=True))
        by_name = settings.company_match == "key_then_name"
        matches = match_accounts(self.ctx.client, settings, {plan.keys[i]: names[plan.keys[i]] for i in pending}, by_name)
        for index in pending:
            account_id = plan.keys[index]
            wanted = company_record(account_id, names[account_id], self.key_field)["Name"]
            if account_id in matches.by_key:
                company = plan.found[index] = matches.by_key[account_id]
                renamed = settings.rename_companies and company.get("Name") != wanted
                # Already right in Gainsight (keyed by an admin, or by a run that died before its ledger write).
                plan.actions[index] = Action.UPDATE if renamed else Action.CONFIRM
            elif account_id in matches.by_name:
                self.stamps[index] = plan.found[index] = matches.by_name[account_id]
                plan.actions[index] = Action.UPDATE
            elif account_id in matches.ambiguous:
                plan.actions[index] = Action.WAIT
                self.waiting.append(self.wait_row(account_id, names, "ambiguous_name", matches.ambiguous[account_id]))
            elif settings.create_missing_companies:
                plan.actions[index] = Action.CREATE
            else:
                plan.actions[index] = Action.WAIT
                self.waiting.append(self.wait_row(account_id, names, "no_match", []))

    def write(self) -> None:
        plan = self.plan
        same = plan.indices(Action.CONFIRM)
        self.confirm_rows([self.booking(i, None, {}) for i in same], "unchanged")
        updates = plan.indices(Action.UPDATE)
        self.write_all("update", [i for i in updates if i in self.stamps], ["Gsid"])
        self.write_all("update", [i for i in updates if i not in self.stamps], [self.key_field])
        self.write_all("insert", plan.indices(Action.CREATE), [])
        log.info(
            "gainsight: companies: %d confirmed (%d keyed after a name match), %d failed",
            len(self.book.confirmed),
            len(self.stamps),
            self.book.counts.failed,
        )
        if self.waiting:
            _report_waiting(self.ctx, self.waiting)

    def records(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A stamp keys the Company its name matched (by Gsid), so the next run finds it by key
        (renaming it only if asked); anything else is the spec's payload."""
        built = self.spec.payload(self.plan.rows(indices), self.settings, {})
        return [self.stamp(index, record) if index in self.stamps else record for index, record in zip(indices, built, strict=True)]

    def stamp(self, index: int, record: dict[str, Any]) -> dict[str, Any]:
        company = self.stamps[index]
        stamp: dict[str, Any] = {"Gsid": company["Gsid"], self.key_field: record[self.key_field]}
        if self.settings.rename_companies and company.get("Name") != record["Name"]:
            stamp["Name"] = record["Name"]
        return stamp

    def booking(self, index: int, gsid: str | None, record: dict[str, Any]) -> dict[str, Any]:
        """With the Company's Name in Gainsight, as written or as found."""
        found = self.plan.found.get(index) or {}
        return {**super().booking(index, gsid, record), "name": record.get("Name", found.get("Name"))}

    def confirm_rows(self, rows: list[dict[str, Any]], outcome: str) -> None:
        super().confirm_rows(rows, outcome)
        self.ctx.ledger.stop_waiting(row["account_id"] for row in rows)

    @staticmethod
    def wait_row(account_id: str, names: dict[str, Any], reason: str, candidates: list[Company]) -> dict[str, Any]:
        listed = "; ".join(f"{c.get('Name')} ({c['Gsid']})" for c in candidates) or None
        return {"account_id": account_id, "account_name": names[account_id], "reason": reason, "candidates": listed}


def _report_waiting(ctx: PushContext, waiting: list[dict[str, Any]]) -> None:
    """Book the accounts without a Company and count them, with the responses that wait for them."""
    started = ctx.ledger.wait_for_company(waiting)
    report = ctx.report.waiting
    report.account_ids.update(row["account_id"] for row in waiting)
    report.ambiguous_ids.update(row["account_id"] for row in waiting if row["reason"] == "ambiguous_name")
    report.started += started
    responses = ctx.ledger.outbox_responses_of([row["account_id"] for row in waiting])
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
