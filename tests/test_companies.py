"""Companies and people on first contact with a tenant whose CRM already made them.

Each mode of `[destination.gainsight]` company_match / create_missing_companies / rename_companies /
update_person_names against the Gainsight sandbox seeded like a real tenant: Companies keyed,
Companies by Name only, duplicates by Name, and Persons with CRM names.
"""

from __future__ import annotations

from collections import Counter

import pytest

from destinations.gainsight import GainsightSettingError, load_settings
from destinations.gainsight.client import GainsightClient
from destinations.gainsight.matching import count_company_matches, match_accounts, normalized_name
from destinations.gainsight.quota import QuotaLimiter
from destinations.gainsight.store import staged_accounts
from pipelines.errors import ExitCode

from .conftest import ACCESS_KEY, read_only
from .staged import push_only

COMPANY_QUERY = "/v1/data/objects/query/Company"
KEY = "CG_Account_Id__gc"


def companies(gs) -> dict[str | None, dict]:
    """Company records by key value (None collects the unkeyed ones: must not be duplicated)."""
    rows = gs.records("Company")
    assert set(Counter(r[KEY] for r in rows if r[KEY]).values()) <= {1}
    return {r[KEY]: r for r in rows}


def responses_of(connector, account_ids) -> set[str]:
    rows = connector.query(
        "SELECT response_id FROM nps.nps_responses WHERE list_contains(?, account_id)", [list(account_ids)]
    )
    return {row[0] for row in rows}


def pushed_ids(connector) -> set[str]:
    return {r["ResponseId__gc"] for r in connector.records()}


def test_key_only_waits_for_unmatched_accounts_then_picks_them_up(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    cg, connector = staged_connector(gs, responses=40, days=5, accounts=4)  # staged, nothing pushed
    accounts = cg.accounts()
    keyed, by_name, absent, late = list(accounts)
    keyed_gsid = gs.add_record("Company", {"Name": "Keyed Co (CRM name)", KEY: keyed})
    gs.add_record("Company", {"Name": accounts[by_name]})  # the CRM's, without the key

    code, result = connector.run(dry_run=True, create_missing_companies=False)
    connector = push_only(connector)
    # The dry run asks Gainsight: the keyed Company is found as it should be, the others wait (not promised)
    plan = result.push["companies"]
    assert (plan.created, plan.unchanged, plan.deferred) == (0, 1, 3)

    code, result = connector.run(create_missing_companies=False)

    assert code == ExitCode.DEFERRED  # three accounts started waiting: an admin has something to do
    stored = companies(gs)
    assert len(gs.records("Company")) == 2  # nothing created
    assert stored[keyed]["Name"] == "Keyed Co (CRM name)"  # nothing renamed
    assert stored[None]["Name"] == accounts[by_name]  # key mode never matches by name
    assert pushed_ids(connector) == responses_of(connector, [keyed])
    assert {r["CompanyId__gc"] for r in connector.records()} == {keyed_gsid}
    waiting = responses_of(connector, [by_name, absent, late])
    assert (result.push.waiting.accounts, result.push.waiting.started, result.push.waiting.responses) == (3, 3, len(waiting))
    view = connector.query("SELECT account_id, reason, candidates, responses_waiting FROM gainsight.accounts_waiting")
    assert {row[0] for row in view} == {by_name, absent, late}
    assert {row[1] for row in view} == {"no_match"} and {row[2] for row in view} == {None}
    assert sum(row[3] for row in view) == len(waiting)
    assert connector.scalar(
        "SELECT count(*) FROM gainsight.response_status WHERE gainsight_status = 'waiting for its company'"
    ) == len(waiting)

    gs.clear_log()
    code, result = connector.run(create_missing_companies=False)

    assert code == ExitCode.OK  # the same accounts still wait: reported, not re-alerted
    assert (result.push.waiting.accounts, result.push.waiting.started) == (3, 0)
    assert len(gs.records("Company")) == 2

    # An admin creates the Company (with the key) for one account; the next run picks it up itself.
    late_gsid = gs.add_record("Company", {"Name": "Late Co", KEY: late})
    code, result = connector.run(create_missing_companies=False)

    assert code == ExitCode.OK
    assert result.push.waiting.accounts == 2
    assert pushed_ids(connector) == responses_of(connector, [keyed, late])
    assert {r["CompanyId__gc"] for r in connector.records()} == {keyed_gsid, late_gsid}
    assert companies(gs)[late]["Name"] == "Late Co"
    assert {row[0] for row in connector.query("SELECT account_id FROM gainsight.accounts_waiting")} == {by_name, absent}


def test_key_then_name_stamps_the_key_so_the_next_run_matches_by_key(gs_sandbox, staged_connector, connector_for):
    gs = gs_sandbox()
    cg, connector = staged_connector(gs)  # 40 responses of 3 accounts staged, nothing pushed
    accounts = cg.accounts()
    # The CRM's spelling: other case and spacing, no key.
    crm = {account: gs.add_record("Company", {"Name": f"  {name.upper().replace(' ', '   ')} "}) for account, name in accounts.items()}

    code, result = push_only(connector).run(company_match="key_then_name", create_missing_companies=False)

    assert code == ExitCode.OK
    stored = companies(gs)
    assert len(gs.records("Company")) == len(accounts)  # matched, none created
    assert {account: stored[account]["Gsid"] for account in accounts} == crm  # key stamped on the CRM's Company
    assert all(stored[a]["Name"] != accounts[a] for a in accounts)  # the CRM's name kept
    assert result.push["companies"].updated == len(accounts) and result.push.waiting.accounts == 0
    assert pushed_ids(connector) == responses_of(connector, accounts)
    assert gs.count(path=COMPANY_QUERY) == 2  # by key, then the unkeyed Companies by name

    gs.clear_log()
    fresh = connector_for(cg, gs, name="fresh")  # a new ledger: only Gainsight can tell
    code, result = fresh.run(company_match="key_then_name", create_missing_companies=False)

    assert code == ExitCode.OK
    assert gs.count(path=COMPANY_QUERY) == 1  # every account found by key: no name query
    assert result.push["companies"].unchanged == len(accounts) and result.push["companies"].updated == 0
    assert len(gs.records("Company")) == len(accounts)


def test_an_ambiguous_name_is_never_guessed(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    cg, connector = staged_connector(gs, accounts=2)  # 40 responses staged, nothing pushed
    (single, twice), names = list(cg.accounts()), cg.accounts()
    gs.add_record("Company", {"Name": names[single]})
    duplicates = [gs.add_record("Company", {"Name": names[twice]}), gs.add_record("Company", {"Name": names[twice].lower()})]

    # Even with creation switched on: a name several Companies share means one exists, which one is unknown.
    code, result = push_only(connector).run(company_match="key_then_name", create_missing_companies=True)

    assert code == ExitCode.DEFERRED
    assert len(gs.records("Company")) == 3
    assert [r[KEY] for r in gs.records("Company") if r["Gsid"] in duplicates] == [None, None]
    assert companies(gs)[single]["Name"] == names[single]
    ((account, reason, candidates, waiting),) = connector.query(
        "SELECT account_id, reason, candidates, responses_waiting FROM gainsight.accounts_waiting"
    )
    assert (account, reason) == (twice, "ambiguous_name")
    assert all(gsid in candidates for gsid in duplicates)
    assert waiting == len(responses_of(connector, [twice])) == result.push.waiting.responses
    assert result.push.waiting.ambiguous == 1
    assert pushed_ids(connector) == responses_of(connector, [single])


def test_create_and_rename_are_each_an_opt_in(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    cg, connector = staged_connector(gs, accounts=2)  # 40 responses staged, nothing pushed
    accounts = cg.accounts()
    keyed, missing = list(accounts)
    gs.add_record("Company", {"Name": "CRM name", KEY: keyed})

    code, result = push_only(connector).run(create_missing_companies=True, rename_companies=False)

    assert code == ExitCode.OK
    stored = companies(gs)
    assert stored[keyed]["Name"] == "CRM name"
    assert stored[missing]["Name"] == accounts[missing]
    assert result.push["companies"].created == 1 and result.push["companies"].updated == 0

    # Switching renames on re-checks an account once, the next time it has something to push.
    latest = connector.scalar(
        "SELECT max_by(response_id, responded_at) FROM nps.nps_responses WHERE account_id = ?", [keyed]
    )
    cg.edit_response(int(latest), comment="Edited: follow-up done.")
    code, result = connector.run(create_missing_companies=True, rename_companies=True)

    assert code == ExitCode.OK
    assert companies(gs)[keyed]["Name"] == accounts[keyed]
    assert result.push["companies"].updated == 1 and len(gs.records("Company")) == 2

    cg.edit_response(int(latest), comment="Edited again.")
    code, result = connector.run(create_missing_companies=True, rename_companies=True)
    assert (result.push["companies"].updated, result.push["companies"].unchanged) == (0, 1)


@pytest.mark.parametrize("update_names", [False, True], ids=["names-kept", "names-updated"])
def test_existing_people_keep_their_crm_names_unless_asked(gs_sandbox, staged_connector, update_names):
    gs = gs_sandbox()
    cg, connector = staged_connector(gs, accounts=2)  # 40 responses staged, nothing pushed
    respondent = next(r for r in cg.records if r.get("email") and "nps" in r)
    email = respondent["email"].lower()
    gs.add_record("Person", {"Email": email, "FirstName": "Bob", "LastName": "CRM", "Name": "Bob CRM"})

    code, result = push_only(connector).run(update_person_names=update_names)

    assert code == ExitCode.OK
    people = {p["Email"].lower(): p for p in gs.records("Person")}
    person = people[email]
    staged_first, staged_last = connector.query(
        "SELECT first_name, last_name FROM nps.nps_responses WHERE lower(email) = ? LIMIT 1", [email]
    )[0]
    if update_names:
        assert (person["FirstName"], person["LastName"]) == (staged_first, staged_last)
    else:
        assert (person["FirstName"], person["LastName"], person["Name"]) == ("Bob", "CRM", "Bob CRM")
    # the Company association is added either way
    links = [link for link in gs.records("Company_Person") if link["Person_ID"] == person["Gsid"]]
    assert len(links) == 1
    # persons new to Gainsight get CustomerGauge's names
    others = [p for e, p in people.items() if e != email]
    assert others and all(p["FirstName"] for p in others)
    assert result.push["people"].created == len(others) and result.push["people"].updated == 1


def test_check_counts_matches_without_writing(gs_sandbox, staged_staging):
    cg, staging = staged_staging(responses=40, days=5, accounts=4)  # staged by an earlier run
    by_key, by_name, ambiguous, none = list(cg.accounts())
    names = cg.accounts()
    gs = gs_sandbox()
    gs.add_record("Company", {"Name": "Anything", KEY: by_key})
    gs.add_record("Company", {"Name": names[by_name]})
    gs.add_record("Company", {"Name": names[ambiguous]})
    gs.add_record("Company", {"Name": f" {names[ambiguous]}"})
    settings = load_settings({"base_url": gs.base_url, "access_key": ACCESS_KEY, "timeline_max_age_days": 0})

    with read_only(staging.settings.duckdb_path) as db:
        limiter = QuotaLimiter(settings.quotas, None, settings.max_rate_limit_wait_seconds)
        client = GainsightClient(settings, limiter)
        try:
            counts = count_company_matches(staged_accounts(db, "nps"), settings, client)
        finally:
            client.close()

    assert (counts.accounts, counts.by_key, counts.by_name, counts.ambiguous, counts.unmatched) == (4, 1, 1, 1, 1)
    assert len(gs.records("Company")) == 4 and all(entry.path == COMPANY_QUERY for entry in gs.requests())
    assert none not in {r[KEY] for r in gs.records("Company")}


def test_company_settings_are_validated_naming_key_and_env_var(monkeypatch):
    base = {"base_url": "https://acme.gainsightcloud.com", "access_key": "k", "timeline_max_age_days": 0}
    with pytest.raises(GainsightSettingError, match="company_match.*DESTINATION__GAINSIGHT__COMPANY_MATCH.*'name'"):
        load_settings({**base, "company_match": "name"})
    monkeypatch.setenv("DESTINATION__GAINSIGHT__CREATE_MISSING_COMPANIES", "maybe")
    with pytest.raises(GainsightSettingError, match="create_missing_companies.*DESTINATION__GAINSIGHT__CREATE_MISSING_COMPANIES"):
        load_settings(base)
    monkeypatch.setenv("DESTINATION__GAINSIGHT__CREATE_MISSING_COMPANIES", "true")
    monkeypatch.setenv("DESTINATION__GAINSIGHT__COMPANY_MATCH", "key_then_name")
    settings = load_settings(base)
    assert settings.create_missing_companies is True and settings.company_match == "key_then_name"
    defaults = load_settings({**base, "create_missing_companies": False, "company_match": "key"})
    assert not (defaults.rename_companies or defaults.update_person_names or defaults.create_missing_companies)


def test_names_compare_case_and_space_insensitively_and_nothing_more():
    assert normalized_name("  ACME   Corp ") == normalized_name("acme corp") == "acme corp"
    assert normalized_name("Acme Corp.") != normalized_name("Acme Corp")
    assert normalized_name(None) == ""


def test_two_accounts_naming_one_company_are_both_ambiguous(gs_sandbox):
    gs = gs_sandbox()
    acme = gs.add_record("Company", {"Name": "Acme"})
    gs.add_record("Company", {"Name": "Globex", KEY: "other-account"})  # keyed: never a name candidate
    settings = load_settings({"base_url": gs.base_url, "access_key": ACCESS_KEY, "timeline_max_age_days": 0})
    client = GainsightClient(settings, QuotaLimiter(settings.quotas, None, settings.max_rate_limit_wait_seconds))
    try:
        matches = match_accounts(client, settings, {"A1": "Acme", "A2": " ACME ", "A3": "Globex", "A4": None}, True)
    finally:
        client.close()

    assert set(matches.ambiguous) == {"A1", "A2"} and [c["Gsid"] for c in matches.ambiguous["A1"]] == [acme]
    assert matches.by_name == {} and matches.by_key == {} and sorted(matches.unmatched) == ["A3", "A4"]
