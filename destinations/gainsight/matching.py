"""Which Gainsight Company is each CustomerGauge account's? Reads only, so `check` can ask too.

A real tenant's Companies come from its CRM and rarely carry the key field (`CG_Account_Id__gc`)
on day one. An account is matched by that key; with `company_match = "key_then_name"` an account
the key does not find is then matched by exact Name, compared case- and space-insensitively,
among the Companies that carry no key yet (a keyed Company belongs to another account). A name is
never guessed: two Companies with the name, or two accounts naming one Company, are ambiguous.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .client import QUERY_LIMIT, GainsightClient
from .settings import GainsightSettings

Company = dict[str, Any]  # a queried Company row: Gsid, Name (and the key field)


def normalized_name(name: str | None) -> str:
    """`"  ACME   Corp "` and `"Acme Corp"` are one name; nothing else is (no fuzzy matching)."""
    return " ".join((name or "").split()).lower()


@dataclass
class Matches:
    by_key: dict[str, Company] = field(default_factory=dict)
    by_name: dict[str, Company] = field(default_factory=dict)  # the one unkeyed Company of that name
    ambiguous: dict[str, list[Company]] = field(default_factory=dict)  # candidates, never chosen from
    unmatched: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CompanyMatchCounts:
    """Staged accounts by how they would find their Company (for `check`)."""

    accounts: int
    by_key: int
    by_name: int  # counted whatever `company_match` says: shows what key_then_name would match
    ambiguous: int
    unmatched: int


def match_accounts(
    client: GainsightClient, settings: GainsightSettings, accounts: dict[str, str | None], by_name: bool
) -> Matches:
    """Match `accounts` (account_id -> CustomerGauge name) by key, then, if `by_name`, by Name.

    One query per 5000 accounts by key; the name step pages through the unkeyed Companies
    (5000 per query) and only runs when some account is not found by key.
    """
    key_field = settings.company_key_field
    found = client.find_by_key(settings.company_object, key_field, list(accounts), ["Name"])
    matches = Matches(by_key={account: found[account] for account in accounts if account in found})
    rest = [account for account in accounts if account not in found]
    if not (rest and by_name):
        matches.unmatched = rest
        return matches
    named = unkeyed_companies(client, settings)
    claims: dict[str, list[str]] = defaultdict(list)
    companies: dict[str, Company] = {}
    for account in rest:
        candidates = named.get(normalized_name(accounts[account]), []) if accounts[account] else []
        if len(candidates) == 1:
            claims[candidates[0]["Gsid"]].append(account)
            companies[candidates[0]["Gsid"]] = candidates[0]
        elif candidates:
            matches.ambiguous[account] = candidates
        else:
            matches.unmatched.append(account)
    for gsid, claimants in claims.items():
        if len(claimants) == 1:
            matches.by_name[claimants[0]] = companies[gsid]
        else:  # several accounts share the name: stamping one key would be a guess
            matches.ambiguous.update({account: [companies[gsid]] for account in claimants})
    return matches


def unkeyed_companies(client: GainsightClient, settings: GainsightSettings) -> dict[str, list[Company]]:
    """Companies whose key field is empty, by normalized Name, paged in Gsid order."""
    condition = {"name": settings.company_key_field, "alias": "A", "value": [], "operator": "IS_NULL"}
    named: dict[str, list[Company]] = defaultdict(list)
    offset = 0
    while True:
        rows = client.query(
            settings.company_object, ["Gsid", "Name"], [condition], "A", offset=offset, order_by={"Gsid": "asc"}
        )
        for row in rows:
            if normalized_name(row.get("Name")):
                named[normalized_name(row.get("Name"))].append(row)
        if len(rows) < QUERY_LIMIT:
            return named
        offset += QUERY_LIMIT


def count_company_matches(
    accounts: dict[str, str | None], settings: GainsightSettings, client: GainsightClient
) -> CompanyMatchCounts:
    """How `accounts` (the staged ones: `store.staged_accounts`) would find their Companies, before
    anything is written (queries only)."""
    if not accounts:
        return CompanyMatchCounts(0, 0, 0, 0, 0)
    matches = match_accounts(client, settings, accounts, by_name=True)
    return CompanyMatchCounts(
        accounts=len(accounts),
        by_key=len(matches.by_key),
        by_name=len(matches.by_name),
        ambiguous=len(matches.ambiguous),
        unmatched=len(matches.unmatched),
    )
