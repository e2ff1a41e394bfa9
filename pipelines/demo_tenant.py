"""The demo's Gainsight tenant as a CRM left it, and what the connector did to it.

A real tenant is not empty: its CRM made Companies (a few already carry the CustomerGauge key,
most only a Name, some share a Name) and Persons with the CRM's names. The demo seeds that, runs
with the company settings it prints, and then reports from the tenant's actual state what was
matched by key, matched by name (and keyed), created, left waiting, and whose names were kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from sandbox.customergauge import CustomerGaugeSandbox
from sandbox.gainsight import GainsightSandbox

KEY = "CG_Account_Id__gc"
COMPANY_SETTINGS = {
    "company_match": "key_then_name",
    "create_missing_companies": True,
    "rename_companies": False,
    "update_person_names": False,
}


@dataclass
class CrmTenant:
    keyed: set[str] = field(default_factory=set)  # GSIDs of Companies already carrying the key
    named: set[str] = field(default_factory=set)  # GSIDs of Companies with a Name only
    duplicates: int = 0
    persons: dict[str, str] = field(default_factory=dict)  # e-mail -> the CRM's FirstName


def seed_crm_tenant(customergauge: CustomerGaugeSandbox, gainsight: GainsightSandbox) -> CrmTenant:
    """Per four accounts: one keyed (CRM name), two by Name only (one upper-cased), one absent; one
    account's name is held by two Companies; three respondents exist as Persons with CRM names."""
    emails = list(dict.fromkeys(r["email"].lower() for r in customergauge.records if r.get("email") and "nps" in r))
    tenant = CrmTenant()
    ordered = list(customergauge.accounts().items())
    for position, (account_id, name) in enumerate(ordered[1:], start=1):
        kind = position % 4
        if kind == 1:
            tenant.keyed.add(gainsight.add_record("Company", {"Name": f"{name} (CRM)", KEY: account_id}))
        elif kind in (2, 3):
            tenant.named.add(gainsight.add_record("Company", {"Name": name.upper() if kind == 3 else name}))
    _, shared = ordered[0]
    for spelling in (shared, f" {shared} "):
        gainsight.add_record("Company", {"Name": spelling})
    tenant.duplicates = 2
    for email in emails[:3]:
        gainsight.add_record("Person", {"Email": email, "FirstName": "Crm", "LastName": "Maintained", "Name": "Crm Maintained"})
        tenant.persons[email] = "Crm"
    return tenant


def describe_seed(tenant: CrmTenant) -> str:
    settings = ", ".join(f"{key} = {str(value).lower()}" for key, value in COMPANY_SETTINGS.items())
    return (
        f"Gainsight sandbox seeded as a CRM left it: {len(tenant.keyed)} Companies with the key, "
        f"{len(tenant.named)} with a Name only, {tenant.duplicates} sharing one account's name, "
        f"{len(tenant.persons)} Persons with CRM names\n  company settings of this demo: {settings}"
    )


def show_companies(duckdb_path: Path, gainsight: GainsightSandbox, tenant: CrmTenant) -> None:
    companies = gainsight.records("Company")
    seeded = tenant.keyed | tenant.named
    renamed = sum(1 for c in companies if c["Gsid"] in tenant.keyed and not c["Name"].endswith("(CRM)"))
    stamped = sum(1 for c in companies if c["Gsid"] in tenant.named and c[KEY])
    created = sum(1 for c in companies if c["Gsid"] not in seeded and c[KEY])
    people = {p["Email"].lower(): p for p in gainsight.records("Person")}
    kept = sum(1 for email, first in tenant.persons.items() if people[email]["FirstName"] == first)
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        waiting: list[Any] = conn.execute(
            "SELECT account_id, account_name, reason, candidates, responses_waiting FROM gainsight.accounts_waiting"
        ).fetchall()
    print("\nCompanies and people (the CRM's records, matched before anything is created):")
    print(f"  {'matched by key, CRM name kept':<44}{len(tenant.keyed) - renamed:>5}")
    print(f"  {'matched by name, key stamped on them':<44}{stamped:>5}")
    print(f"  {'created (create_missing_companies = true)':<44}{created:>5}")
    print(f"  {'persons who kept their CRM names':<44}{kept:>5} of {len(tenant.persons)}")
    print(f"  waiting for a Company (gainsight.accounts_waiting): {len(waiting)}")
    for account_id, name, reason, candidates, responses in waiting:
        print(f"    {account_id} {name!r}: {reason}, {responses} responses wait; candidates: {candidates}")
