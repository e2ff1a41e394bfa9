"""People in bulk: the async People API in the Gainsight sandbox, and the bulk people writer over it.

The sandbox serves each plausible variant of what the reference leaves unknown (body wrapper, row
numbering, status path, a tenant without the API); the writer must work across them. Counts and
order only: the sandbox's processing time runs on its own clock.
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import pytest
import requests

from destinations.gainsight import load_settings
from destinations.gainsight.client import GainsightClient
from destinations.gainsight.errors import GainsightRejected
from destinations.gainsight.people_bulk import name_errors, state_of
from destinations.gainsight.quota import QuotaLimiter
from pipelines.errors import ExitCode
from sandbox.gainsight import Variants

from .cli import push_env, run_main, start_cli, stop_and_collect
from .conftest import ACCESS_KEY, read_only
from .staged import push_only

ASYNC_PATH = "/v1/peoplemgmt/v1.0/people/async"
PEOPLE_PATH = "/v1/peoplemgmt/v1.0/people"
HEADERS = {"accesskey": ACCESS_KEY, "Accept": "application/json"}


def client_for(gs, **people: Any) -> GainsightClient:
    settings = load_settings(
        {"base_url": gs.base_url, "access_key": ACCESS_KEY, "timeline_max_age_days": 0, "people": people, "retry_backoff_seconds": 0.01}
    )
    return GainsightClient(settings, QuotaLimiter(settings.quotas, None, settings.max_rate_limit_wait_seconds))


# --- the sandbox's async People API ---------------------------------------------------------------


def test_sandbox_async_people_api_is_strict_takes_a_while_and_lands_people(gs_sandbox):
    gs = gs_sandbox(time_scale=0, people_async_seconds=30)
    company = gs.add_record("Company", {"Name": "Acme"})
    persons = [{"Email": f"p{n}@acme.example.com", "FirstName": f"P{n}", "companies": [{"Company_ID": company}]} for n in range(3)]
    persons[1]["Email"] = "not an e-mail"
    url = gs.base_url + ASYNC_PATH

    assert requests.put(url, json=persons, headers={"Accept": "application/json"}, timeout=10).status_code == 401
    too_many = requests.put(url, json=[{"Email": f"x{n}@a.example.com"} for n in range(51)], headers=HEADERS, timeout=10)
    assert too_many.status_code == 400 and too_many.json()["errorCode"] == "GSOBJ_1008" and "50" in too_many.json()["errorDesc"]
    assert requests.put(url, json={"records": persons}, headers=HEADERS, timeout=10).status_code == 400  # bare list by default
    assert not gs.people_async.executions()

    client = client_for(gs)
    try:
        status_id = client.upsert_people_async(persons, ASYNC_PATH)
        status_path = f"{ASYNC_PATH}/status/{status_id}"
        assert client.people_async_status(status_path)["status"] == "INIT"
        gs.clock.advance(30)
        assert client.people_async_status(status_path)["status"] == "INPROGRESS"
        assert gs.count_records("Person") == 0  # nothing lands before it completes
        gs.clock.advance(30)
        for path in (status_path, f"{ASYNC_PATH}/{status_id}", f"{PEOPLE_PATH}/status/{status_id}"):  # every plausible path
            status = client.people_async_status(path)
            assert (status["status"], status["successCount"], status["failureCount"]) == ("COMPLETED", 2, 1)
        (error,) = status["errors"]
        assert (error["rowNumber"], error["fieldName"], error["values"]) == (2, "Email", ["not an e-mail"])
        landed = client.find_people(["p0@acme.example.com", "p2@acme.example.com"], [])
        links = client.find_company_people({str(p["Gsid"]): company for p in landed.values()})
        assert len(landed) == 2 and len(links) == 2
    finally:
        client.close()
    assert gs.family_counts()["people_async"] == 4  # the refused calls are logged too


def test_sandbox_async_people_api_variants(gs_sandbox):
    gs = gs_sandbox(variants=Variants(people_async_body="records", people_async="method_not_allowed"), quotas=True)
    client = client_for(gs, bulk_body="records")
    try:
        assert client.find_people(["a@b.example.com"], []) == {}  # the tenant answered: a 404 is about the route now
        with pytest.raises(GainsightRejected) as refused:
            client.upsert_people_async([{"Email": "a@b.example.com"}], ASYNC_PATH)
        assert refused.value.status == 405
        gs.variants.people_async = "not_found"
        with pytest.raises(GainsightRejected) as refused:
            client.upsert_people_async([{"Email": "a@b.example.com"}], ASYNC_PATH)
        assert refused.value.status == 404
        gs.variants.people_async = "served"
        client.upsert_people_async([{"Email": "a@b.example.com"}], ASYNC_PATH)
        assert gs.quota_state()["bulk"]["hour"]["used"] == 1  # the conservative reading by default
        gs.variants.people_async_quota = "sync"
        client.upsert_people_async([{"Email": "a@b.example.com"}], ASYNC_PATH)
        assert gs.quota_state()["bulk"]["hour"]["used"] == 1
    finally:
        client.close()


def test_status_errors_name_a_person_only_when_one_fits():
    emails = ["a@x.example.com", "b@x.example.com", "c@x.example.com", "d@x.example.com"]
    by_email = {"rowNumber": 9, "values": ["B@X.example.com"], "errorCode": "E1", "errorMessage": "bad", "fieldName": "Email"}
    by_row = {"rowNumber": 4, "values": ["X" * 300], "errorCode": "E2", "errorMessage": "long"}
    # b is named by its e-mail (its row number, 9, teaches nothing); row 4 fits d (from 1) or nobody (from 0)
    assert name_errors([by_email, by_row], emails, [1, 3]) == {1: ("E1", "bad (Email)"), 3: ("E2", "long")}
    # b (position 1) and c (position 2) both missing: row 2 is b counted from 1, c counted from 0
    ambiguous = {"rowNumber": 2, "values": ["X"], "code": "E3"}
    assert name_errors([ambiguous], emails, [1, 2]) == {}
    # c named by its e-mail on row 3 teaches "from 1": row 2 is then b
    learnt = {"rowNumber": 3, "values": ["c@x.example.com"], "code": "E1"}
    named = name_errors([learnt, ambiguous], emails, [1, 2])
    assert {position: code for position, (code, _) in named.items()} == {2: "E1", 1: "E3"}
    assert state_of({"state": "inProgress"}) == "INPROGRESS" and state_of({}) == ""


# --- the bulk people writer -------------------------------------------------------------------------


def staged_emails(connector) -> set[str]:
    return {row[0] for row in connector.query("SELECT DISTINCT lower(email) FROM nps.nps_responses WHERE email IS NOT NULL")}


def dead_letters(connector) -> dict[str, str]:
    return dict(connector.query("SELECT record_key, error_code FROM gainsight.dead_letters WHERE object = 'people'"))


@pytest.mark.parametrize(
    "body, rows",
    [("bare_list", "one_based"), ("records", "zero_based")],
    ids=["bare-list-rows-from-1", "records-rows-from-0"],
)
def test_bulk_writer_dead_letters_the_persons_gainsight_names_and_lands_the_rest(
    cg_sandbox, gs_sandbox, connector_for, body, rows
):
    cg = cg_sandbox(responses=80, days=6, accounts=3)
    with_email = [r for r in cg.records if r.get("email") and "nps" in r]
    bad_email, long_name = with_email[0], next(r for r in with_email if r["email"] != with_email[0]["email"])
    cg.edit_response(bad_email["number_customergauge"], email="jane.doe at acme")  # Gainsight's Email type refuses it
    cg.edit_response(long_name["number_customergauge"], contact={"first_name": "X" * 300, "last_name": "Long"})
    gs = gs_sandbox(variants=Variants(people_async_body=body, people_async_rows=rows), people_async_seconds=0.05)
    connector = connector_for(cg, gs)

    code, result = connector.run(people={"writer": "bulk", "bulk_body": "list" if body == "bare_list" else "records"})

    assert code == ExitCode.DEAD_LETTERED
    emails = staged_emails(connector)
    push: Any = result.push
    calls = gs.family_counts()
    assert push.people_bulk_calls == calls["people_async"] == -(-len(emails) // 50)
    assert calls.get("people", 0) == 0  # every failure was named by the status: no single upsert
    # one read of the persons before writing, one of every call's persons once all are final (not one per call)
    assert len(gs.requests(path="/v1/data/objects/query/Person")) == 2
    assert len(gs.requests(path="/v1/data/objects/query/Company_Person")) == 1
    assert calls["people_async_status"] >= calls["people_async"]
    assert dead_letters(connector) == {"jane.doe at acme": "GSOBJ_1008", long_name["email"].lower(): "GSOBJ_1001"}
    assert push["people"].failed == 2 and push.people.created == len(emails) - 2
    people = Counter(p["Email"].lower() for p in gs.records("Person"))
    assert set(people) == emails - set(dead_letters(connector)) and set(people.values()) == {1}
    assert len(gs.records("Company_Person")) == len(people)
    # the ledger holds the persons that landed, confirmed by the read after the call
    assert connector.scalar("SELECT count(*) FROM gainsight.people WHERE status = 'synced'") == len(people)
    assert connector.scalar("SELECT count(*) FROM gainsight.people_bulk_calls WHERE reconciled_at IS NULL") == 0


@pytest.mark.parametrize("tenant", ["not_found", "method_not_allowed"])
def test_a_tenant_without_the_async_api_gets_single_upserts_and_is_not_asked_again(gs_sandbox, staged_connector, tenant):
    gs = gs_sandbox(variants=Variants(people_async=tenant))
    cg, connector = staged_connector(gs)  # 40 responses staged, nothing pushed

    code, result = push_only(connector).run(people={"writer": "bulk"})

    assert code == ExitCode.OK
    emails = staged_emails(connector)
    assert gs.family_counts()["people_async"] == 1 and gs.family_counts()["people"] == len(emails)
    assert set(Counter(p["Email"].lower() for p in gs.records("Person")).values()) == {1}
    status = {"not_found": "HTTP 404", "method_not_allowed": "HTTP 405"}[tenant]
    assert connector.scalar("SELECT value FROM gainsight.tenant_facts WHERE fact LIKE 'people_bulk_unsupported:%'") == status

    # a new respondent: written singly, without asking the async API again
    respondent = max((r for r in cg.records if r.get("email") and "nps" in r), key=lambda r: r["date_survey_response"])
    cg.edit_response(respondent["number_customergauge"], email="someone.new@example.com")
    gs.clear_log()
    code, result = connector.run(people={"writer": "bulk"})
    assert code == ExitCode.OK
    assert gs.family_counts().get("people_async", 0) == 0 and gs.family_counts()["people"] == 1


def test_auto_writes_in_bulk_while_the_window_has_room_and_singly_after(gs_sandbox, staged_connector):
    gs = gs_sandbox(people_async_seconds=0.05)
    _, connector = staged_connector(gs, responses=150, days=20, accounts=10)  # staged, nothing pushed
    quotas = {**connector.gs_options()["quotas"], "bulk_per_hour": 2}  # Bulk responses stay under 500 rows: sync

    code, result = push_only(connector).run(people={"writer": "auto"}, quotas=quotas)

    assert code == ExitCode.OK
    emails = staged_emails(connector)
    assert len(emails) > 100
    assert gs.family_counts()["people_async"] == 2 and gs.family_counts()["people"] == len(emails) - 100
    assert result.push.people.created == len(emails)
    assert set(Counter(p["Email"].lower() for p in gs.records("Person")).values()) == {1}


def test_kill_9_while_polling_an_async_upsert_resumes_polling_and_sends_no_person_twice(staged_project, gs_sandbox, project):
    cg = staged_project(responses=60, days=19, accounts=10, people=20)  # staged by `--stage-only`, as test_push_command's
    gs = gs_sandbox(time_scale=0, people_async_seconds=60)  # frozen: processing waits for the test
    env = push_env(
        cg, gs, project,
        DESTINATION__GAINSIGHT__PEOPLE__WRITER="bulk",
        DESTINATION__GAINSIGHT__BULK_MIN_ROWS="100000",  # responses through the sync API (no Bulk job to wait for)
    )  # fmt: skip
    victim = start_cli("--push-only", cwd=project, env=env)
    stop_and_collect(victim, lambda: gs.family_counts().get("people_async_status", 0) >= 1, signal.SIGKILL)
    submitted = gs.family_counts()["people_async"]
    assert submitted >= 1 and gs.count_records("Person") == 0
    gs.clock.advance(120)  # Gainsight finishes what it was sent

    result = run_main(cwd=project, env=env)

    assert result.returncode == 0, result.stderr
    assert gs.family_counts()["people_async"] == submitted  # polled, not sent again
    assert gs.family_counts().get("people", 0) == 0
    with read_only(project / "staging.duckdb") as conn:
        emails = {row[0] for row in conn.execute("SELECT DISTINCT lower(email) FROM nps.nps_responses WHERE email IS NOT NULL").fetchall()}
        open_calls = conn.execute("SELECT count(*) FROM gainsight.people_bulk_calls WHERE reconciled_at IS NULL").fetchone()
        booked = conn.execute("SELECT count(*) FROM gainsight.people WHERE status IN ('synced', 'exists')").fetchone()
    people = Counter(p["Email"].lower() for p in gs.records("Person"))
    assert set(people) == emails and set(people.values()) == {1}
    assert open_calls == (0,) and booked == (len(emails),)
    assert "async upsert" in result.stderr and "left open by an earlier run" in result.stderr
