"""`--dry-run`: what a push would do, per object, from the outbox and the ledger alone.

No call reaches Gainsight. A record the ledger does not know is counted as a create; if it
already exists in Gainsight (made by hand, or by a run whose ledger write was lost) the real run
finds it by key and updates it instead.
"""

from __future__ import annotations

from .records import company_hash, person_hash
from .report import PushReport
from .settings import GainsightSettings
from .store import Connection, Ledger, read_outbox


def plan_push(db: Connection, dataset: str, settings: GainsightSettings, staged: int) -> PushReport:
    report = PushReport(dry_run=True)
    ledger = Ledger(db, "dry-run", settings.max_attempts)
    try:
        outbox = read_outbox(db, dataset, settings).read_all()  # after the ledger's DDL: a first run has none
        rows = outbox.to_pylist()
        companies = ledger.pushed("companies", ["gsid", "pushed_hash"])
        people = ledger.pushed("people", ["pushed_hash"])
        responses = ledger.pushed("responses", ["gsid"])
        activities = ledger.pushed("activities", ["pushed_hash"])
    finally:
        ledger.close()
    accounts: dict[str, str | None] = {}
    persons: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: r["responded_at"]):
        if row["account_id"]:
            accounts[row["account_id"]] = row["account_name"]
        if row["email"] and (row["needs_response"] or row["needs_retry"]):
            persons[row["email"]] = row
    for account_id, name in accounts.items():
        gsid, pushed = companies.get(account_id, (None, None))
        if gsid is None and not settings.create_missing_companies:
            report["companies"].deferred += 1  # the real run finds its Company or lets it wait (`check` says which)
            continue
        same = pushed == company_hash(account_id, name, settings.rename_companies) or not settings.rename_companies
        _count(report, "companies", gsid is not None, gsid is not None and same)
    for email, row in persons.items():
        company = companies.get(row["account_id"], (None, None))[0] if row["account_id"] else None
        (pushed,) = people.get(email, (None,))
        digest = person_hash(email, row["first_name"], row["last_name"], company)
        _count(report, "people", pushed is not None, pushed == digest)
    needs = [row for row in rows if row["needs_response"]]
    for row in needs:
        _count(report, "responses", responses.get(row["response_id"], (None,))[0] is not None, False)
    report["responses"].unchanged = max(0, staged - len(needs))
    for row in rows:
        if row["needs_activity"]:
            _count(report, "activities", row["response_id"] in activities, False)
    return report


def _count(report: PushReport, table: str, known: bool, same: bool) -> None:
    counts = report[table]
    if same:
        counts.unchanged += 1
    elif known:
        counts.updated += 1
    else:
        counts.created += 1
