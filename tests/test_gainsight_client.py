"""The Gainsight client against the sandbox over HTTP: envelopes, rate limits, lost answers, auth."""

from __future__ import annotations

import pyarrow as pa
import pytest

from destinations.gainsight.answers import epoch_ms
from destinations.gainsight.client import GainsightClient
from destinations.gainsight.errors import (
    GainsightCredentialsRejected,
    GainsightRejected,
    MaybeApplied,
    QuotaExhausted,
)
from destinations.gainsight.multipart import BulkFile
from destinations.gainsight.quota import QuotaLimiter
from destinations.gainsight.settings import GainsightSettings, QuotaLimits
from destinations.gainsight.writes import insert_reconciled
from sandbox.gainsight import Variants

from .conftest import ACCESS_KEY, BULK_JOB, GS_CLIENT_ID, GS_CLIENT_SECRET, NO_CLIENT_QUOTAS
from .test_gainsight_units import FakeClock

COMPANY = "Company"
KEY = "CG_Account_Id__gc"


def client_for(gs, clock: FakeClock | None = None, **overrides) -> GainsightClient:
    values = {
        "base_url": gs.base_url,
        "access_key": ACCESS_KEY,
        "timeline_author_email": "nps.connector@example.com",
        "retry_backoff_seconds": 0.01,
        **overrides,
    }
    settings = GainsightSettings(**values)
    clock = clock or FakeClock(1_800_000_030.0)
    limiter = QuotaLimiter(QuotaLimits(**NO_CLIENT_QUOTAS), None, settings.max_rate_limit_wait_seconds, clock, clock.sleep)
    return GainsightClient(settings, limiter, sleep=clock.sleep)


def test_rate_limit_without_retry_after_waits_for_the_next_window(gs_sandbox):
    gs = gs_sandbox()
    gs.add_fault(path="/v1/data/objects/query/", status=429, times=1)
    clock = FakeClock(1_800_000_030.0)  # 30 s into a minute
    client = client_for(gs, clock)

    assert client.query(COMPANY, ["Name"]) == []

    assert clock.slept and 29.9 <= clock.slept[0] <= 30.5  # to the window boundary, not a blind backoff
    assert client.stats.rate_limited == 1


def test_rate_limit_longer_than_the_run_waits_is_a_deferral(gs_sandbox):
    gs = gs_sandbox()
    gs.add_fault(path="/v1/data/objects/query/", status=429, times=1)
    client = client_for(gs, max_rate_limit_wait_seconds=5)
    with pytest.raises(QuotaExhausted) as raised:
        client.query(COMPANY, ["Name"])
    assert raised.value.family == "sync"


def test_lost_insert_answer_is_reconciled_not_duplicated(gs_sandbox):
    gs = gs_sandbox()
    gs.add_fault(path=f"/v1/data/objects/{COMPANY}", kind="drop", times=1)
    client = client_for(gs)
    records = [{"Name": f"Acme {i}", KEY: f"acct-{i}"} for i in range(3)]

    with pytest.raises(MaybeApplied):
        client.insert("company", COMPANY, records)  # the bare client never re-sends an insert

    results = insert_reconciled(client, "company", COMPANY, KEY, [{"Name": "Beta", KEY: "acct-b"}, *records])
    assert len(results) == 4 and all(r["Gsid"] for r in results)
    stored = [c[KEY] for c in gs.records(COMPANY)]
    assert sorted(stored) == sorted(["acct-b", "acct-0", "acct-1", "acct-2"])


def test_lost_insert_that_was_applied_is_found_by_key(gs_sandbox):
    gs = gs_sandbox()
    gs.add_fault(path=f"/v1/data/objects/{COMPANY}", kind="delay", delay=3.0, times=1)
    client = client_for(gs, timeout_seconds=0.5)
    records = [{"Name": "Gamma", KEY: "acct-g"}]

    results = insert_reconciled(client, "company", COMPANY, KEY, records)

    assert [c[KEY] for c in gs.records(COMPANY)] == ["acct-g"]  # applied once, found, not re-sent
    assert results[0]["Gsid"] == gs.records(COMPANY)[0]["Gsid"]


def test_ok_status_with_result_false_is_an_error(gs_sandbox):
    gs = gs_sandbox()
    gs.add_fault(path="/v1/data/objects/query/", kind="result_false", times=1)
    client = client_for(gs)
    with pytest.raises(GainsightRejected) as raised:
        client.query(COMPANY, ["Name"])
    assert raised.value.status == 200 and raised.value.code


def test_server_errors_are_retried_for_idempotent_calls(gs_sandbox):
    gs = gs_sandbox()
    gs.add_fault(path="/v1/peoplemgmt/", status=503, times=2)
    client = client_for(gs)
    answer = client.upsert_person({"Email": "jane@acme.com", "FirstName": "Jane"})
    assert answer.get("Gsid")
    assert client.stats.retries == 2 and gs.count_records("Person") == 1


def test_oauth_token_is_renewed_on_401(gs_sandbox):
    gs = gs_sandbox()
    client = client_for(gs, access_key=None, client_id=GS_CLIENT_ID, client_secret=GS_CLIENT_SECRET)
    client.query(COMPANY, ["Name"])
    gs.revoke_tokens()
    client.query(COMPANY, ["Name"])
    assert client.token_grants == 2


def test_wrong_access_key_is_credentials_rejected_and_not_retried(gs_sandbox):
    gs = gs_sandbox()
    client = client_for(gs, access_key="not-the-key-0000")
    with pytest.raises(GainsightCredentialsRejected) as raised:
        client.query(COMPANY, ["Name"])
    assert "not-the-key-0000" not in str(raised.value)
    assert gs.count(status=401) == 1


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"query_dates": "iso", "query_shape": "bare_list"},
        {"query_dates": "iso_offset", "empty_answer": "no_data_found"},
        {"query_dates": "iso_plain", "query_shape": "bare_list", "empty_answer": "no_data_found"},
    ],
    ids=["epoch-records-empty_list", "iso-bare_list", "iso_offset-no_data_found", "iso_plain-bare_list-no_data_found"],
)
def test_query_answers_read_alike_in_every_variant(gs_sandbox, variant):
    gs = gs_sandbox(variants=Variants(**variant))
    client = client_for(gs)
    assert client.find_by_key(COMPANY, KEY, ["acct-1"], ["Name"]) == {}  # empty, however it is said

    client.insert("company", COMPANY, [{"Name": "Acme", KEY: "acct-1"}])
    found = client.find_by_key(COMPANY, KEY, ["acct-1"], ["Name", "CreatedDate"])

    stored = gs.records(COMPANY)[0]
    assert found["acct-1"]["Name"] == "Acme" and found["acct-1"]["Gsid"] == stored["Gsid"]
    # second precision: two of the ISO spellings carry no milliseconds
    assert epoch_ms(found["acct-1"]["CreatedDate"]) // 1000 == int(stored["CreatedDate"].timestamp())


@pytest.mark.parametrize("spelling", ["jobStatus", "status", "state"])
def test_bulk_status_reads_alike_in_every_spelling(gs_sandbox, spelling):
    # the sandbox's own phases (1 s each) on a frozen clock: the test steps through them
    gs = gs_sandbox(variants=Variants(bulk_status_fields=spelling), time_scale=0, bulk_phase_seconds=1.0)
    client = client_for(gs)
    rows = pa.table({"ResponseId__gc": ["r-1", "r-2", "r-3"], "Score__gc": [9, 3, 7]})
    gs.fail_bulk_rows(["r-2"], reason="emulated")
    upload = BulkFile(BULK_JOB, "nps.csv")
    upload.append_fitting(rows, 1 << 20)
    upload.seal()
    try:
        status_id = client.bulk_upload(upload)
    finally:
        upload.close()

    assert client.bulk_status(status_id)["jobStatus"] == "INIT"
    gs.advance(1.5)
    assert client.bulk_status(status_id)["jobStatus"] == "IN_PROGRESS"
    gs.advance(5)
    for _ in range(200):  # the rows are written by a background thread once the phase has passed
        status = client.bulk_status(status_id)
        if status["jobStatus"] == "COMPLETED":
            break
        gs.advance(1)
    assert status == {"jobStatus": "COMPLETED", "totalCount": 3, "successCount": 2, "failureCount": 1}
