"""People: read before write, against a Gainsight sandbox tenant seeded like a CRM-synced one.

Before any People API call the push reads `Person` by Email and `Company_Person` by person and
Company; persons already right are booked without a call, persons lacking the association get
only that. Counts, never times.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import destinations.gainsight.people as people_module
from pipelines.errors import ExitCode

from .staged import push_only

PEOPLE_PATH = "/v1/peoplemgmt/v1.0/people"
KEY = "CG_Account_Id__gc"


def respondents(cg) -> dict[str, str]:
    """E-mail -> account number of every respondent whose responses all name one account."""
    accounts: dict[str, set[str]] = {}
    for record in cg.records:
        number = next((p["reference"] for p in record.get("properties") or [] if p.get("field") == "Account Number"), None)
        if record.get("email") and "nps" in record and number:
            accounts.setdefault(record["email"].lower(), set()).add(number)
    return {email: next(iter(numbers)) for email, numbers in sorted(accounts.items()) if len(numbers) == 1}


def seed_tenant(cg, gs, right: list[str], unlinked: list[str]) -> dict[str, str]:
    """Companies keyed by account; `right` persons with their association, `unlinked` without.
    Returns the Company GSID per account number."""
    companies = {number: gs.add_record("Company", {"Name": name, KEY: number}) for number, name in cg.accounts().items()}
    accounts = respondents(cg)
    for position, email in enumerate(right + unlinked):
        spelled = email.upper() if position == 0 else email  # the CRM's spelling: matched case-insensitively
        person = gs.add_record("Person", {"Email": spelled, "FirstName": "CRM", "LastName": "Name", "Name": "CRM Name"})
        if email in right:
            gs.add_record("Company_Person", {"Person_ID": person, "Company_ID": companies[accounts[email]]})
    return companies


def people_in(gs) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Persons per e-mail and Company Person rows per (e-mail, Company GSID)."""
    persons = gs.records("Person")
    email_of = {p["Gsid"]: p["Email"].lower() for p in persons}
    links = Counter((email_of[link["Person_ID"]], link["Company_ID"]) for link in gs.records("Company_Person"))
    return Counter(email_of.values()), links


def test_read_before_write_sends_only_missing_persons_and_associations(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    cg, connector = staged_connector(gs)  # 40 responses of 3 accounts staged, nothing pushed
    connector = push_only(connector)
    emails = list(respondents(cg))
    assert len(emails) >= 12
    right, unlinked = emails[:6], emails[6:9]
    companies = seed_tenant(cg, gs, right, unlinked)

    code, result = connector.run(create_missing_companies=False)

    assert code == ExitCode.OK, result
    push: Any = result.push
    staged = {email for (email,) in connector.query("SELECT DISTINCT lower(email) FROM nps.nps_responses WHERE email IS NOT NULL")}
    new = staged - set(right) - set(unlinked)
    split = push.people
    assert (split.exists, split.association_added, split.names_updated, split.created) == (6, 3, 0, len(new))
    # one People API call per person lacking something; none for the persons already right
    assert len(gs.requests(path=PEOPLE_PATH)) == len(unlinked) + len(new)
    # two reads: Person by Email, Company_Person by person and Company
    assert len(gs.requests(path="/v1/data/objects/query/Person")) == 1
    assert len(gs.requests(path="/v1/data/objects/query/Company_Person")) == 1
    assert (push["people"].created, push["people"].updated, push["people"].unchanged) == (len(new), 3, 6)
    # every person once, with one association to its Company; the CRM's names kept
    persons, links = people_in(gs)
    assert set(persons) == staged and set(persons.values()) == {1}
    accounts = respondents(cg)
    assert all(links[(email, companies[accounts[email]])] == 1 for email in right + unlinked)
    assert set(links.values()) == {1}
    kept = {p["Email"].lower(): p["Name"] for p in gs.records("Person")}
    assert all(kept[email] == "CRM Name" for email in right + unlinked)
    # the ledger knows them all now: nothing new, nothing read or written again
    assert connector.scalar("SELECT count(*) FROM gainsight.people WHERE status = 'exists'") == 6
    gs.clear_log()
    code, result = connector.run(create_missing_companies=False)
    assert code == ExitCode.OK and gs.family_counts().get("people", 0) == 0
    assert result.push.people.total == 0


def test_update_person_names_writes_only_the_persons_whose_names_differ(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    cg, connector = staged_connector(gs)
    right = list(respondents(cg))[:4]
    seed_tenant(cg, gs, right, [])

    code, result = push_only(connector).run(create_missing_companies=False, update_person_names=True)

    assert code == ExitCode.OK
    split = result.push.people
    assert (split.exists, split.association_added, split.names_updated) == (0, 0, 4)
    staged = connector.scalar("SELECT count(DISTINCT email) FROM nps.nps_responses WHERE email IS NOT NULL")
    assert len(gs.requests(path=PEOPLE_PATH)) == staged and split.created == staged - 4
    assert all(p["Name"] != "CRM Name" for p in gs.records("Person"))


@pytest.mark.parametrize("crm_synced", [False, True], ids=["empty-tenant", "crm-synced-tenant"])
def test_a_large_read_asks_first_whether_the_tenant_holds_any_person(gs_sandbox, staged_connector, monkeypatch, crm_synced):
    # More persons than one read takes (5,000 in production; 10 here): one read of a single Person
    # first; on an empty tenant it is the only read before writing, on a CRM-synced one the reads follow.
    monkeypatch.setattr(people_module, "PROBE_ABOVE", 10)
    gs = gs_sandbox()
    cg, connector = staged_connector(gs)
    if crm_synced:
        seed_tenant(cg, gs, list(respondents(cg))[:6], [])

    code, result = push_only(connector).run(create_missing_companies=not crm_synced)

    assert code == ExitCode.OK
    split = result.push.people
    assert len(gs.requests(path="/v1/data/objects/query/Person")) == (2 if crm_synced else 1)
    assert len(gs.requests(path="/v1/data/objects/query/Company_Person")) == (1 if crm_synced else 0)
    assert split.exists == (6 if crm_synced else 0)
    persons, _ = people_in(gs)
    assert split.created == len(gs.requests(path=PEOPLE_PATH)) == len(persons) - split.exists
    assert set(persons.values()) == {1}
