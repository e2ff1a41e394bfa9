"""The Gainsight sandbox over real HTTP, driven by the reference's documented examples: each valid
example is accepted with the documented shape, each invalid variant gets the documented code.
Every destination test trusts this sandbox, so its strictness is tested here."""

from __future__ import annotations

import base64
import csv
import io
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timezone
from typing import Any

import pytest
import requests

from sandbox.customergauge import CustomerGaugeSandbox
from sandbox.gainsight import (
    BulkJob,
    FieldSpec,
    GainsightSandbox,
    ObjectSpec,
    Schema,
    default_schema,
    nps_response_object,
    standard_objects,
)

KEY = "test-access-key"
HEADERS = {"accesskey": KEY, "Accept": "application/json"}
OBJECTS = "/v1/data/objects"
TOKEN = "/v1/users/m2m/oauth/token"
PEOPLE = "/v1/peoplemgmt/v1.0/people"
TIMELINE = "/v1/ant/es/activity"
BULK = "/v1.0/admin/connector/job/bulkimport"
NPS = "CG_NPS_Response__gc"
GSID = re.compile(r"[0-9A-Z]{36}")
ENVELOPE_KEYS = {"result", "errorCode", "errorDesc", "requestId", "data", "message"}
NPS_COLUMNS = ["ResponseId__gc", "Score__gc", "NpsCategory__gc", "ResponseDatetime__gc", "CompanyAccount"]


@pytest.fixture
def gs() -> Iterator[GainsightSandbox]:
    with GainsightSandbox(KEY, time_scale=0) as sandbox:
        yield sandbox


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers.update(HEADERS)
        yield session


def call(gs: GainsightSandbox, http: requests.Session, method: str, path: str, **kwargs: Any) -> requests.Response:
    return http.request(method, gs.base_url + path, **kwargs)


def insert(gs: GainsightSandbox, http: requests.Session, obj: str, *records: dict, lookups: dict | None = None) -> requests.Response:
    body: dict[str, Any] = {"records": list(records)}
    if lookups is not None:
        body["lookups"] = lookups
    return call(gs, http, "POST", f"{OBJECTS}/{obj}", json=body)


def ok_data(response: requests.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == ENVELOPE_KEYS and body["result"] is True and body["errorCode"] is None, body
    uuid.UUID(body["requestId"])
    return body["data"]


def failed(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["result"] is False and body["errorCode"] == code, body
    uuid.UUID(body["requestId"])
    return body


def companies(gs: GainsightSandbox, http: requests.Session, *names: str) -> list[str]:
    records = [{"Name": name, "CG_Account_Id__gc": f"ACC-{name}"} for name in names]
    return [r["Gsid"] for r in ok_data(insert(gs, http, "Company", *records))["records"]]


def query(gs: GainsightSandbox, http: requests.Session, obj: str, **body: Any) -> requests.Response:
    return call(gs, http, "POST", f"{OBJECTS}/query/{obj}", json=body)


# -- authentication and the gateway ---------------------------------------------------------------


def test_access_key_header_in_any_case_and_401_envelope(gs: GainsightSandbox) -> None:
    url = gs.base_url + f"{OBJECTS}/query/Company"
    body = {"select": ["Name"]}
    for name in ("accesskey", "AccessKey", "Accesskey", "ACCESSKEY"):
        assert requests.post(url, json=body, headers={name: KEY, "Accept": "application/json"}).status_code == 200
    for headers in ({}, {"accesskey": "wrong"}, {"Authorization": "Bearer nope"}):
        answer = requests.post(url, json=body, headers={**headers, "Accept": "application/json"})
        assert failed(answer, 401, "GS_APIG_2401")["errorDesc"] == "Unauthorized"
    assert gs.family_counts() == {"data": 7}


def test_m2m_token_with_form_or_empty_body_and_expiry() -> None:
    with GainsightSandbox(KEY, "cid", "csecret", time_scale=0, token_lifetime=86400) as gs:
        basic = {"Authorization": "Basic " + base64.b64encode(b"cid:csecret").decode(), "Accept": "application/json"}
        form = requests.post(gs.base_url + TOKEN, data={"grant_type": "client_credentials"}, headers=basic)
        empty = requests.post(gs.base_url + TOKEN, headers={**basic, "Content-Type": "application/json"})
        for answer in (form, empty):
            assert answer.status_code == 200 and set(answer.json()) == {"access_token", "token_type", "expires_in"}
            assert answer.json()["token_type"] == "Bearer" and answer.json()["expires_in"] == 86400
        bearer = {"Authorization": f"Bearer {form.json()['access_token']}", "Accept": "application/json"}
        url = gs.base_url + f"{OBJECTS}/query/Company"
        assert requests.post(url, json={"select": ["Name"]}, headers=bearer).status_code == 200
        assert gs.quota_state()["sync"]["minute"]["used"] == 1  # token calls are never counted
        gs.advance(86399)
        assert requests.post(url, json={"select": ["Name"]}, headers=bearer).status_code == 200
        gs.advance(1)
        failed(requests.post(url, json={"select": ["Name"]}, headers=bearer), 401, "GS_APIG_2401")
        wrong = {**basic, "Authorization": "Basic " + base64.b64encode(b"cid:nope").decode()}
        failed(requests.post(gs.base_url + TOKEN, headers=wrong), 401, "GS_APIG_2401")
        assert requests.post(gs.base_url + TOKEN, data={"grant_type": "password"}, headers=basic).status_code == 400
        assert gs.token_requests == 2 and gs.family_counts()["token"] == 4


def test_token_endpoint_refuses_when_m2m_is_not_configured(gs: GainsightSandbox) -> None:
    basic = {"Authorization": "Basic " + base64.b64encode(b"a:b").decode(), "Accept": "application/json"}
    failed(requests.post(gs.base_url + TOKEN, headers=basic), 401, "GS_APIG_2401")


def test_missing_json_accept_gets_the_html_page_with_200(gs: GainsightSandbox) -> None:
    url = gs.base_url + f"{OBJECTS}/query/Company"
    answer = requests.post(url, json={"select": ["Name"]}, headers={"accesskey": KEY, "Accept": "text/html"})
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/html")
    assert answer.text.startswith("<!DOCTYPE html>")
    for accept in ("application/json", "application/json, text/plain, */*", "*/*"):
        assert requests.post(url, json={"select": ["Name"]}, headers={"accesskey": KEY, "Accept": accept}).json()["result"]
    with GainsightSandbox(KEY, require_accept=False) as lenient:
        url = lenient.base_url + f"{OBJECTS}/query/Company"
        answer = requests.post(url, json={"select": ["Name"]}, headers={"accesskey": KEY, "Accept": "text/html"})
        assert answer.json()["result"] is True


def test_unknown_route_and_wrong_method(gs: GainsightSandbox, http: requests.Session) -> None:
    failed(call(gs, http, "GET", "/v1/nothing"), 404, "GS_APIG_1000")
    answer = call(gs, http, "GET", TIMELINE)
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST, PUT, DELETE"


# -- data API: inserts ----------------------------------------------------------------------------------


def test_company_insert_doc_example_with_lookups(gs: GainsightSandbox, http: requests.Session) -> None:
    gs.add_user("jane.smith@example.com", "Jane Smith")
    parent = companies(gs, http, "Acme Holdings")[0]
    record = {
        "Name": "Acme Corp", "Industry": "Software", "ARR": 120000, "Employees": 250, "LifecycleInWeeks": 12,
        "OriginalContractDate": "2024-01-15", "RenewalDate": "2025-01-15", "Stage": "Adopting", "Status": "Active",
        "CSMFirstName": "Jane", "CSMLastName": "Smith", "ParentCompanyName": "Acme Holdings", "External_Id__gc": "crm-0001",
    }  # fmt: skip
    lookups = {
        "Csm": {"fields": {"CSMFirstName": "FirstName", "CSMLastName": "LastName"}, "lookupField": "Gsid",
                "objectName": "GsUser", "multiMatchOption": "FIRSTMATCH", "onNoMatch": "ERROR"},
        "ParentCompany": {"fields": {"ParentCompanyName": "Name"}, "lookupField": "Gsid",
                          "objectName": "Company", "multiMatchOption": "FIRSTMATCH", "onNoMatch": "ERROR"},
    }  # fmt: skip
    data = ok_data(insert(gs, http, "Company", record, lookups=lookups))
    assert data["count"] == 1 and data["errors"] is None
    written = data["records"][0]
    assert GSID.fullmatch(written["Gsid"]) and written["Gsid"].startswith("1P02")
    assert "CSMFirstName" not in written and written["ParentCompany"] == parent
    stored = next(r for r in gs.records("company") if r["Gsid"] == written["Gsid"])
    jane = next(u for u in gs.records("GsUser") if u["Email"] == "jane.smith@example.com")
    assert stored["Csm"] == jane["Gsid"] and stored["ParentCompany"] == parent
    assert stored["RenewalDate"] == date(2025, 1, 15) and stored["Stage"] == "Adopting" and stored["ARR"] == 120000
    assert isinstance(stored["CreatedDate"], datetime) and stored["CreatedDate"].tzinfo is not None
    assert "CSMFirstName" not in stored


def test_nps_response_insert_in_request_order(gs: GainsightSandbox, http: requests.Session) -> None:
    company = companies(gs, http, "Acme")[0]
    records = [
        {"ResponseId__gc": f"r-{i}", "Score__gc": i, "NpsCategory__gc": "detractor", "Comment__gc": "Zu langsam 🙁",
         "PersonEmail__gc": "jane@acme.com", "CaseLink__gc": "https://cg.example.com/case/1",
         "ResponseDatetime__gc": "2024-05-01T10:15:00.000+0000", "CompanyId__gc": company}
        for i in range(50)
    ]  # fmt: skip
    data = ok_data(insert(gs, http, NPS, *records))
    assert [r["ResponseId__gc"] for r in data["records"]] == [f"r-{i}" for i in range(50)]
    stored = gs.records(NPS)
    assert stored[3]["ResponseDatetime__gc"] == datetime(2024, 5, 1, 10, 15, tzinfo=timezone.utc)
    assert stored[3]["Comment__gc"] == "Zu langsam 🙁" and stored[3]["CompanyId__gc"] == company


def test_custom_object_doc_example_on_a_tenant_schema(http: requests.Session) -> None:
    """The Custom Object page's NPS insert, on a tenant whose object is called Nps_Response__gc."""
    nps = ObjectSpec(
        "Nps_Response__gc", "1Z05",
        (FieldSpec("Response_Id__gc", required=True), FieldSpec("Score__gc", "NUMBER"), FieldSpec("Comment__gc"),
         FieldSpec("Respondent_Email__gc", "EMAIL"), FieldSpec("Responded_At__gc", "DATETIME"),
         FieldSpec("Survey_Name__gc"), FieldSpec("Company_ID__gc", "GSID", references="Company")),
    )  # fmt: skip
    schema = Schema([*standard_objects(), nps], {"Company": ["Update"]}, [("a@example.com", "A B")])
    with GainsightSandbox(KEY, schema=schema) as gs:
        companies(gs, http, "Acme Corp")
        body = {
            "records": [{"Response_Id__gc": "srv-resp-000123", "Score__gc": 9, "Comment__gc": "Great support",
                         "Respondent_Email__gc": "jane@acme.com", "Responded_At__gc": "2024-05-01T10:15:00.000+0000",
                         "Survey_Name__gc": "Q2 Relationship NPS", "Company_Name_Src": "Acme Corp"}],
            "lookups": {"Company_ID__gc": {"fields": {"Company_Name_Src": "Name"}, "lookupField": "Gsid",
                        "objectName": "Company", "multiMatchOption": "FIRSTMATCH", "onNoMatch": "ERROR"}},
        }  # fmt: skip
        data = ok_data(call(gs, http, "POST", f"{OBJECTS}/Nps_Response__gc", json=body))
        assert data["records"][0]["Gsid"].startswith("1Z05")
        assert gs.records("nps_response__gc")[0]["Company_ID__gc"] == gs.records("Company")[0]["Gsid"]
        assert insert(gs, http, NPS, {"ResponseId__gc": "x"}).json()["title"] == "OBJECT_NOT_FOUND"  # not this tenant's


GOOD_NPS = {"ResponseId__gc": "r-1", "Score__gc": 7, "ResponseDatetime__gc": "2024-05-01T10:15:00.000-07:00"}


@pytest.mark.parametrize(
    "changes, code, field",
    [
        ({"Unknown__gc": "x"}, "GSOBJ_1002", "Unknown__gc"),
        ({"responseid__gc": "r-1"}, "GSOBJ_1002", "responseid__gc"),  # field names are case-sensitive on write
        ({"Gsid": "1Z02" + "A" * 32}, "GSOBJ_1002", "Gsid"),
        ({"NpsCategory__gc": "x" * 21}, "GSOBJ_1001", "NpsCategory__gc"),
        ({"ResponseId__gc": None}, "GSOBJ_1007", "ResponseId__gc"),
        ({"ResponseDatetime__gc": "2024-05-01T10:15:00Z"}, "GSOBJ_1005", "ResponseDatetime__gc"),
        ({"ResponseDatetime__gc": "2024-05-01T10:15:00.000"}, "GSOBJ_1005", "ResponseDatetime__gc"),
        ({"ResponseDatetime__gc": "2024-02-30T10:15:00.000+00:00"}, "GSOBJ_1005", "ResponseDatetime__gc"),
        ({"ResponseDatetime__gc": 1714558500000}, "GSOBJ_1005", "ResponseDatetime__gc"),
        ({"Score__gc": "9"}, "GSOBJ_1008", "Score__gc"),
        ({"Score__gc": True}, "GSOBJ_1008", "Score__gc"),
        ({"PersonEmail__gc": "not-an-email"}, "GSOBJ_1008", "PersonEmail__gc"),
        ({"CaseLink__gc": "ftp://x"}, "GSOBJ_1008", "CaseLink__gc"),
        ({"CompanyId__gc": "1P02" + "Z" * 32}, "GSOBJ_1008", "CompanyId__gc"),
        ({"Comment__gc": 42}, "GSOBJ_1008", "Comment__gc"),
    ],
)
def test_invalid_nps_values_get_documented_codes(
    gs: GainsightSandbox, http: requests.Session, changes: dict, code: str, field: str
) -> None:
    body = failed(insert(gs, http, NPS, dict(GOOD_NPS, **changes)), 400, code)
    assert body["data"]["count"] == 0 and body["data"]["records"] is None
    [entry] = body["data"]["errors"]
    assert entry["index"] == 0 and entry["success"] is False
    assert entry["errors"][0]["errorCode"] == code and entry["errors"][0]["fieldName"] == field
    assert gs.count_records(NPS) == 0


@pytest.mark.parametrize(
    "changes, code",
    [
        ({"OriginalContractDate": "210318"}, "GSOBJ_1006"),
        ({"RenewalDate": "2025-13-01"}, "GSOBJ_1006"),
        ({"RenewalDate": "01/15/2025"}, "GSOBJ_1006"),
        ({"Stage": "xyz"}, "GSOBJ_1012"),
        ({"Status": "1I00" + "A" * 32}, "GSOBJ_1012"),  # labels in, not item GSIDs
        ({"Name": "x" * 256}, "GSOBJ_1001"),
        ({"Employees": "many"}, "GSOBJ_1008"),
    ],
)
def test_invalid_company_values(gs: GainsightSandbox, http: requests.Session, changes: dict, code: str) -> None:
    failed(insert(gs, http, "Company", dict({"Name": "Acme"}, **changes)), 400, code)
    assert gs.count_records("Company") == 0


def test_one_bad_record_fails_the_whole_call(gs: GainsightSandbox, http: requests.Session) -> None:
    records = [{"Name": f"C{i}", "Stage": "Launched"} for i in range(5)]
    records[3]["Stage"] = "xyz"
    records.append({"Industry": "no name"})
    body = failed(insert(gs, http, "Company", *records), 400, "GSOBJ_1012")
    assert body["errorDesc"] == "Invalid/Inactive value provided for picklist. (Stage = xyz)."
    assert [(e["index"], e["errors"][0]["errorCode"]) for e in body["data"]["errors"]] == [(3, "GSOBJ_1012"), (5, "GSOBJ_1007")]
    assert gs.count_records("Company") == 0


def test_call_level_rejections(gs: GainsightSandbox, http: requests.Session) -> None:
    failed(insert(gs, http, "Company", *[{"Name": f"C{i}"} for i in range(51)]), 400, "GSOBJ_1008")
    failed(call(gs, http, "POST", f"{OBJECTS}/Company", json={"records": []}), 400, "GSOBJ_1008")
    failed(call(gs, http, "POST", f"{OBJECTS}/Company", data="{oops", headers={"Content-Type": "application/json"}), 400, "GSOBJ_1008")
    failed(call(gs, http, "POST", f"{OBJECTS}/Company", json={"records": [{"Name": "A"}], "upsert": True}), 400, "GSOBJ_1008")
    failed(insert(gs, http, "CG_Usage_Event__gc", {"EventId__gc": "e1"}), 400, "GSOBJ_1023")
    failed(insert(gs, http, "Person", {"Email": "a@b.co"}), 400, "GSOBJ_1023")
    bad_lookup = {"Csm": {"fields": {"x": "Email"}, "objectName": "GsUser", "onNoMatch": "DEFAULTVALUE"}}
    failed(insert(gs, http, "Company", {"Name": "A", "x": "a@b.co"}, lookups=bad_lookup), 400, "GSOBJ_1008")
    answer = insert(gs, http, "Nope__gc", {"Name": "A"})  # the documented body has no errorCode
    assert answer.status_code == 400
    assert set(answer.json()) == {"result", "title", "detail", "errorDesc", "instance", "requestId"}
    assert answer.json()["title"] == "OBJECT_NOT_FOUND" and answer.json()["result"] is False
    assert gs.count_records("Company") == 0


def test_lookup_no_match_options(gs: GainsightSandbox, http: requests.Session) -> None:
    companies(gs, http, "Twin", "Twin")

    def lookup(no_match: str, multi: str = "FIRSTMATCH") -> dict:
        return {"CompanyId__gc": {"fields": {"Account": "Name"}, "lookupField": "Gsid", "objectName": "company",
                                  "multiMatchOption": multi, "onNoMatch": no_match}}  # fmt: skip

    failed(insert(gs, http, NPS, {"ResponseId__gc": "a", "Account": "Ghost"}, lookups=lookup("ERROR")), 400, "GSOBJ_1008")
    ok_data(insert(gs, http, NPS, {"ResponseId__gc": "b", "Account": "Ghost"}, lookups=lookup("NULLABLE")))
    failed(insert(gs, http, NPS, {"ResponseId__gc": "c", "Account": "Twin"}, lookups=lookup("ERROR", "MARKASERROR")), 400, "GSOBJ_1008")
    ok_data(insert(gs, http, NPS, {"ResponseId__gc": "d", "Account": "Twin"}, lookups=lookup("ERROR")))
    first_twin = gs.records("Company")[0]["Gsid"]
    assert [(r["ResponseId__gc"], r["CompanyId__gc"]) for r in gs.records(NPS)] == [("b", None), ("d", first_twin)]


# -- data API: update by keys ----------------------------------------------------------------------------


def test_update_by_keys_writes_every_match(gs: GainsightSandbox, http: requests.Session) -> None:
    companies = ({"Name": "A", "Industry": "Retail"}, {"Name": "B", "Industry": "Retail"}, {"Name": "C", "Industry": "Tech"})
    ok_data(insert(gs, http, "Company", *companies))
    data = ok_data(call(gs, http, "PUT", f"{OBJECTS}/company?keys=Industry", json={"records": [{"Industry": "Retail", "ARR": 5}]}))
    assert data["count"] == 2 and {r["ARR"] for r in data["records"]} == {5}
    assert [r["ARR"] for r in gs.records("Company")] == [5, 5, None]
    two_keys = {"records": [{"Name": "B", "Industry": "Retail", "Stage": "Launched"}]}
    assert ok_data(call(gs, http, "PUT", f"{OBJECTS}/Company?keys=Name,Industry", json=two_keys))["count"] == 1
    by_gsid = gs.records("Company")[2]["Gsid"]
    ok_data(call(gs, http, "PUT", f"{OBJECTS}/Company?keys=Gsid", json={"records": [{"Gsid": by_gsid, "Name": "C2"}]}))
    assert [r["Name"] for r in gs.records("Company")] == ["A", "B", "C2"]
    assert gs.records("Company")[1]["Stage"] == "Launched" and gs.records("Company")[0]["Stage"] is None
    assert gs.records("Company")[2]["ModifiedDate"] >= gs.records("Company")[2]["CreatedDate"]


def test_update_with_a_record_matching_nothing_writes_nothing(gs: GainsightSandbox, http: requests.Session) -> None:
    ok_data(insert(gs, http, NPS, {"ResponseId__gc": "r-1", "Score__gc": 1}))
    body = {"records": [{"ResponseId__gc": "r-1", "Score__gc": 9}, {"ResponseId__gc": "r-2", "Score__gc": 9}]}
    answer = failed(call(gs, http, "PUT", f"{OBJECTS}/{NPS}?keys=ResponseId__gc", json=body), 400, "GSOBJ_1011")
    assert answer["data"]["errors"][0]["index"] == 1
    assert gs.records(NPS)[0]["Score__gc"] == 1


@pytest.mark.parametrize("keys", ["", "A,B,C,D", "Nope__gc", "ResponseId__gc,ResponseId__gc", "CreatedDate"])
def test_invalid_update_keys(gs: GainsightSandbox, http: requests.Session, keys: str) -> None:
    path = f"{OBJECTS}/{NPS}" + (f"?keys={keys}" if keys else "")
    failed(call(gs, http, "PUT", path, json={"records": [{"ResponseId__gc": "r"}]}), 400, "GSOBJ_1002")


# -- data API: query, get, delete --------------------------------------------------------------------


def test_query_doc_sample_with_traversal_order_and_paging(gs: GainsightSandbox, http: requests.Session) -> None:
    csm = gs.add_user("jnash@heroku.com", "J Nash")
    records = [
        {"Name": "Heroku", "RenewalDate": "2018-03-22", "Status": "Active", "Stage": "Adopting", "Csm": csm},
        {"Name": "Slack", "RenewalDate": "2018-06-01", "Status": "Active", "Stage": "Kicked Off"},
        {"Name": "Zoom", "RenewalDate": "2019-01-01", "Status": "Inactive", "Stage": "Churn"},
        {"Name": "Asana", "RenewalDate": "2018-04-02", "Status": "Churn", "Stage": "Will Churn"},
    ]
    ok_data(insert(gs, http, "Company", *records))
    body = {
        "select": ["Name", "RenewalDate", "Status", "Stage", "csm__gr.email"],
        "where": {"conditions": [
            {"name": "RenewalDate", "alias": "A", "value": ["03-22-2018", "05-21-2018"], "operator": "BTW"},
            {"name": "Stage", "alias": "B", "value": ["New Customer", "Kicked Off", "Launched"], "operator": "IN"}],
            "expression": "A OR B"},
        "orderBy": {"Name": "desc"}, "limit": 100, "offset": 0,
    }  # fmt: skip
    rows = ok_data(query(gs, http, "company", **body))["records"]
    assert [r["Name"] for r in rows] == ["Slack", "Heroku", "Asana"]
    heroku = rows[1]
    assert heroku["RenewalDate"] == 1521676800000 and heroku["csm__gr.email"] == "jnash@heroku.com"
    described = ok_data(call(gs, http, "GET", "/v1/meta/services/objects/Company/describe"))[0]
    stage = next(f for f in described["fields"] if f["fieldName"] == "Stage")
    assert heroku["Stage"] == next(p["gsid"] for p in stage["picklistDetails"] if p["name"] == "Adopting")
    assert rows[0]["csm__gr.email"] is None
    page = ok_data(query(gs, http, "Company", select=["Name"], orderBy={"Name": "asc"}, limit=2, offset=1))["records"]
    assert page == [{"Name": "Heroku"}, {"Name": "Slack"}]
    nobody = {"conditions": [{"name": "Name", "alias": "A", "value": ["Nobody"], "operator": "EQ"}]}
    empty = ok_data(query(gs, http, "Company", select=["Name"], where=nobody))
    assert empty == {"records": []}


def test_query_custom_object_traversal_sample(gs: GainsightSandbox, http: requests.Session) -> None:
    csm = gs.add_user("john.doe@example.com", "John Doe")
    acme, _ = companies(gs, http, "Gainsight", "Other")
    call(gs, http, "PUT", f"{OBJECTS}/Company?keys=Gsid", json={"records": [{"Gsid": acme, "Csm": csm}]})
    ok_data(insert(gs, http, NPS, {"ResponseId__gc": "1", "CompanyId__gc": acme}, {"ResponseId__gc": "2"}))
    body = {
        "select": ["ResponseId__gc", "CompanyId__gr.csm__gr.name"],
        "where": {"conditions": [{"name": "CompanyId__gr.Name", "alias": "A", "value": ["Gainsight"], "operator": "EQ"},
                                 {"name": "CompanyId__gr.csm__gr.name", "alias": "B", "value": ["John"], "operator": "CONTAINS"}],
                  "expression": "A AND B"},
        "orderBy": {"ResponseId__gc": "asc", "CompanyId__gr.csm__gr.name": "desc"}, "limit": 100, "offset": 0,
    }  # fmt: skip
    assert ok_data(query(gs, http, NPS, **body))["records"] == [{"ResponseId__gc": "1", "CompanyId__gr.csm__gr.name": "John Doe"}]


@pytest.mark.parametrize(
    "operator, value, expected",
    [
        ("EQ", [5], ["b"]), ("NE", [5], ["a", "c"]), ("GT", [5], ["c"]), ("GTE", [5], ["b", "c"]),
        ("LT", [5], ["a"]), ("LTE", [5], ["a", "b"]), ("BTW", [1, 9], ["b"]), ("IN", [0, 10], ["a", "c"]),
        ("NOT_IN", [0], ["b", "c"]), ("IS_NULL", [], ["d"]), ("IS_NOT_NULL", [], ["a", "b", "c"]),
    ],
)  # fmt: skip
def test_query_operators_on_numbers(
    gs: GainsightSandbox, http: requests.Session, operator: str, value: list, expected: list
) -> None:
    ok_data(insert(gs, http, NPS, *[{"ResponseId__gc": k, "Score__gc": s} for k, s in (("a", 0), ("b", 5), ("c", 10), ("d", None))]))
    where = {"conditions": [{"name": "Score__gc", "alias": "A", "value": value, "operator": operator}], "expression": "A"}
    assert [r["ResponseId__gc"] for r in ok_data(query(gs, http, NPS, select=["ResponseId__gc"], where=where))["records"]] == expected


def test_query_text_and_date_operators(gs: GainsightSandbox, http: requests.Session) -> None:
    rows = [
        ("a", "Promoter", "2024-05-01T10:00:00.000+00:00", "Jane@Acme.com"),
        ("b", "Detractor", "2024-05-02T10:00:00.000+02:00", "bob@acme.com"),
    ]
    columns = ("ResponseId__gc", "NpsCategory__gc", "ResponseDatetime__gc", "PersonEmail__gc")
    ok_data(insert(gs, http, NPS, *[dict(zip(columns, row, strict=True)) for row in rows]))

    def ids(name: str, operator: str, value: list) -> list[str]:
        where = {"conditions": [{"name": name, "alias": "A", "value": value, "operator": operator}]}
        return [r["ResponseId__gc"] for r in ok_data(query(gs, http, NPS, select=["ResponseId__gc"], where=where))["records"]]

    assert ids("NpsCategory__gc", "CONTAINS", ["tract"]) == ["b"]
    assert ids("NpsCategory__gc", "STARTS_WITH", ["pro"]) == ["a"]
    assert ids("PersonEmail__gc", "EQ", ["jane@acme.com"]) == ["a"]  # e-mail addresses compare case-insensitively
    assert ids("ResponseDatetime__gc", "GT", ["2024-05-02 00:00:00"]) == ["b"]
    assert ids("ResponseDatetime__gc", "LT", [1714600000000]) == ["a"]
    stamps = ok_data(query(gs, http, NPS, select=["ResponseDatetime__gc"]))["records"]
    assert stamps == [{"ResponseDatetime__gc": 1714557600000}, {"ResponseDatetime__gc": 1714636800000}]


@pytest.mark.parametrize(
    "body, code",
    [
        ({"select": ["Name"], "limit": 5001}, "GSOBJ_1008"),
        ({"select": []}, "GSOBJ_1008"),
        ({"where": {"conditions": []}}, "GSOBJ_1008"),
        ({"select": ["Nope"]}, "GSOBJ_1002"),
        ({"select": ["Name"], "where": {"conditions": [{"name": "Name", "alias": "A", "value": ["x"], "operator": "LIKE"}]}}, "GSOBJ_1008"),
        (
            {
                "select": ["Name"],
                "where": {"conditions": [{"name": "Name", "alias": "A", "value": ["x"], "operator": "EQ"}], "expression": "A AND B"},
            },
            "GSOBJ_1008",
        ),
        ({"select": ["Name"], "where": {"conditions": [{"name": "Name", "alias": "A", "value": "x", "operator": "EQ"}]}}, "GSOBJ_1008"),
        ({"select": ["Name"], "orderBy": {"Name": "up"}}, "GSOBJ_1008"),
        ({"select": ["Name"], "offset": -1}, "GSOBJ_1008"),
        ({"select": ["Name"], "pageSize": 10}, "GSOBJ_1008"),
    ],
)
def test_invalid_queries(gs: GainsightSandbox, http: requests.Session, body: dict, code: str) -> None:
    failed(call(gs, http, "POST", f"{OBJECTS}/query/Company", json=body), 400, code)


def test_get_and_delete_by_gsid(gs: GainsightSandbox, http: requests.Session) -> None:
    gsid = companies(gs, http, "Acme")[0]
    [record] = ok_data(call(gs, http, "GET", f"{OBJECTS}/Company/{gsid}"))["records"]
    assert record["Gsid"] == gsid and record["Name"] == "Acme" and isinstance(record["CreatedDate"], int)
    failed(call(gs, http, "GET", f"{OBJECTS}/Company/"), 400, "GSOBJ_1004")
    failed(call(gs, http, "GET", f"{OBJECTS}/Company/1P02NOPE"), 400, "GSOBJ_1004")
    assert ok_data(call(gs, http, "DELETE", f"{OBJECTS}/company/{gsid}"))["count"] == 1
    failed(call(gs, http, "DELETE", f"{OBJECTS}/Company/{gsid}"), 400, "GSOBJ_1004")
    assert gs.count_records("Company") == 0


# -- People ---------------------------------------------------------------------------------------------


def test_people_doc_example_upserts_by_email_without_duplicate_links(gs: GainsightSandbox, http: requests.Session) -> None:
    company = companies(gs, http, "Acme")[0]
    person = {
        "Email": "jane@acme.com", "FirstName": "Jane", "LastName": "Doe", "Name": "Jane Doe",
        "LinkedinUrl": "https://linkedin.com/in/janedoe", "Location": "New York", "Timezone": "America/New_York",
        "ExternalRecordID__gc": "crm-contact-42",
        "companies": [{"Company_ID": company, "Title": "VP CS", "Role": "Champion"}],
    }  # fmt: skip
    first = ok_data(call(gs, http, "PUT", PEOPLE, json=person))
    assert first["Gsid"].startswith("1C00") and first["companies"][0]["Company_ID"] == company
    moved = {"Email": "JANE@acme.com", "Location": "Berlin", "companies": [{"Company_ID": company, "Title": "CEO"}]}
    again = ok_data(call(gs, http, "PUT", "/v1.0/api/people", json=moved))
    assert again["Gsid"] == first["Gsid"] and again["companies"][0]["Gsid"] == first["companies"][0]["Gsid"]
    [stored] = gs.records("Person")
    assert stored["Location"] == "Berlin" and stored["FirstName"] == "Jane"
    [link] = gs.records("company_person")
    assert (link["Person_ID"], link["Company_ID"], link["Title"], link["Role"]) == (first["Gsid"], company, "CEO", "Champion")


@pytest.mark.parametrize(
    "body, code",
    [
        ({"FirstName": "No email"}, "GSOBJ_1007"),
        ({"Email": None}, "GSOBJ_1007"),
        ({"Email": "a@b.co", "Nickname": "x"}, "GSOBJ_1002"),
        ({"Email": "not-an-email"}, "GSOBJ_1008"),
        ({"Email": "a@b.co", "companies": [{"Company_ID": "1P02" + "Q" * 32}]}, "GSOBJ_1008"),
        ({"Email": "a@b.co", "companies": [{"Title": "no company"}]}, "GSOBJ_1008"),
    ],
)
def test_people_rejections_write_nothing(gs: GainsightSandbox, http: requests.Session, body: dict, code: str) -> None:
    failed(call(gs, http, "PUT", PEOPLE, json=body), 400, code)
    failed(call(gs, http, "PUT", PEOPLE, json={"records": [body]}), 400, "GSOBJ_1002")  # not wrapped
    assert gs.count_records("Person") == gs.count_records("Company_Person") == 0


# -- Timeline -----------------------------------------------------------------------------------------


def timeline_call(gs: GainsightSandbox, http: requests.Session, *records: dict) -> requests.Response:
    lookups = {
        "AuthorId": {"fields": {"Author": "Email"}, "lookupField": "Gsid", "objectName": "GsUser",
                     "multiMatchOption": "FIRSTMATCH", "onNoMatch": "ERROR"},
        "GsCompanyId": {"fields": {"companyName": "Name"}, "lookupField": "Gsid", "objectName": "Company",
                        "multiMatchOption": "FIRSTMATCH", "onNoMatch": "ERROR"},
    }  # fmt: skip
    return call(gs, http, "POST", TIMELINE, json={"records": list(records), "lookups": lookups})


ACTIVITY = {
    "ContextName": "Company", "TypeName": "Update", "ExternalId": "16f0383a1e404d7ba52361bb7370d7de",
    "Subject": "External API demo 1", "Notes": "notes for the activity", "ActivityDate": "2022-07-01T06:36:00.000-07:00",
    "Author": "testuser@gainsight.com", "companyName": "Tech systems ABC Ltd",
}  # fmt: skip


def test_timeline_doc_sample_and_duplicate_external_id(gs: GainsightSandbox, http: requests.Session) -> None:
    author = gs.add_user("testuser@gainsight.com", "Test User")
    company = companies(gs, http, "Tech systems ABC Ltd")[0]
    data = ok_data(timeline_call(gs, http, ACTIVITY))
    assert list(data["success"]) == [ACTIVITY["ExternalId"]] and data["failure"] == {}
    activity_id = data["success"][ACTIVITY["ExternalId"]][0]["activityId"]
    second = dict(ACTIVITY, ExternalId="cg-nps-2", TypeName="Survey Response")
    again = ok_data(timeline_call(gs, http, ACTIVITY, second, second))
    assert list(again["success"]) == ["cg-nps-2"]
    assert [f["errorCode"] for f in again["failure"][ACTIVITY["ExternalId"]]] == ["ACTIVITY_DUPLICATE_EXTERNAL_ID"]
    assert [f["errorCode"] for f in again["failure"]["cg-nps-2"]] == ["ACTIVITY_DUPLICATE_EXTERNAL_ID"]
    body = {"select": ["Gsid", "ExternalId", "AuthorId", "GsCompanyId", "ActivityDate", "TypeName"],
            "where": {"conditions": [{"name": "ExternalId", "alias": "A", "value": [ACTIVITY["ExternalId"]], "operator": "EQ"}]},
            "orderBy": {"CreatedDate": "desc"}, "limit": 5000}  # fmt: skip
    [row] = ok_data(query(gs, http, "activity_timeline", **body))["records"]
    assert row == {"Gsid": activity_id, "ExternalId": ACTIVITY["ExternalId"], "AuthorId": author, "GsCompanyId": company,
                   "ActivityDate": 1656682560000, "TypeName": "Update"}  # fmt: skip
    assert gs.count_records("activity_timeline") == 2


@pytest.mark.parametrize(
    "changes, code",
    [
        ({"ExternalId": None}, "GSOBJ_1007"),
        ({"Author": None}, "GSOBJ_1007"),
        ({"Author": "stranger@example.com"}, "GSOBJ_1008"),
        ({"companyName": "Nobody Inc"}, "GSOBJ_1008"),
        ({"companyName": None}, "GSOBJ_1007"),
        ({"TypeName": "Lunch"}, "ACTIVITY_INVALID_TYPE"),
        ({"ContextName": "Relationship"}, "ACTIVITY_INVALID_TYPE"),
        ({"ActivityDate": "2022-07-01 06:36:00"}, "GSOBJ_1005"),
        ({"Subject": "x" * 256}, "GSOBJ_1001"),
        ({"Mood": "happy"}, "GSOBJ_1002"),
    ],
)
def test_timeline_record_failures_do_not_fail_the_call(
    gs: GainsightSandbox, http: requests.Session, changes: dict, code: str
) -> None:
    gs.add_user("testuser@gainsight.com", "Test User")
    companies(gs, http, "Tech systems ABC Ltd")
    bad = dict(ACTIVITY, ExternalId="bad", **{k: v for k, v in changes.items() if k != "ExternalId"})
    if "ExternalId" in changes:
        bad["ExternalId"] = None
    data = ok_data(timeline_call(gs, http, bad, dict(ACTIVITY, ExternalId="good")))
    assert list(data["success"]) == ["good"]
    [(key, problems)] = data["failure"].items()
    assert key == ("bad" if "ExternalId" not in changes else "record[0]")
    assert problems[0]["errorCode"] == code and problems[0]["errorMessage"]
    assert gs.count_records("activity_timeline") == 1


def timeline_update(gs: GainsightSandbox, http: requests.Session, *records: dict, identifier: str = "externalid") -> requests.Response:
    params = {"identifier": identifier} if identifier else {}
    return call(gs, http, "PUT", TIMELINE, params=params, json={"records": list(records)})


def test_timeline_update_by_external_id_is_strict(gs: GainsightSandbox, http: requests.Session) -> None:
    gs.add_user("testuser@gainsight.com", "Test User")
    companies(gs, http, "Tech systems ABC Ltd")
    activity_id = ok_data(timeline_call(gs, http, ACTIVITY))["success"][ACTIVITY["ExternalId"]][0]["activityId"]
    change = {"ExternalId": ACTIVITY["ExternalId"], "Subject": "NPS 2 (Detractor) from jane@acme.com", "Notes": None}

    data = ok_data(timeline_update(gs, http, change))

    assert data == {"success": {ACTIVITY["ExternalId"]: [{"activityId": activity_id}]}, "failure": {}}
    [stored] = gs.records("activity_timeline")
    assert (stored["Gsid"], stored["Subject"], stored["Notes"]) == (activity_id, change["Subject"], None)
    # An unknown ExternalId fails the whole call, like an update by keys that matches nothing.
    unknown = dict(change, ExternalId="cg-nps-404", Subject="never written")
    failed(timeline_update(gs, http, dict(change, Subject="not written either"), unknown), 400, "GSOBJ_1011")
    failed(timeline_update(gs, http, dict(change, TypeName="Lunch")), 400, "ACTIVITY_INVALID_TYPE")
    failed(timeline_update(gs, http, {"Subject": "no key"}), 400, "GSOBJ_1007")
    failed(timeline_update(gs, http, change, identifier="activityid"), 400, "GSOBJ_1008")
    failed(timeline_update(gs, http, change, identifier=""), 400, "GSOBJ_1008")
    assert [a["Subject"] for a in gs.records("activity_timeline")] == [change["Subject"]]


@pytest.mark.parametrize(
    "answer, data",
    [
        ("duplicate_as_success", "success"),
        ("duplicate_as_call_error", 400),
        ("bare_ok", None),
        ("unknown_body", {"status": "ACCEPTED", "count": 1}),
        ("empty_body", b""),
    ],
)
def test_timeline_answer_variants_change_the_answer_not_the_effect(
    gs: GainsightSandbox, http: requests.Session, answer: str, data: Any
) -> None:
    gs.add_user("testuser@gainsight.com", "Test User")
    companies(gs, http, "Tech systems ABC Ltd")
    first = ok_data(timeline_call(gs, http, ACTIVITY))["success"][ACTIVITY["ExternalId"]][0]["activityId"]
    gs.variants.timeline_answer = answer
    new = dict(ACTIVITY, ExternalId="cg-nps-new")

    response = timeline_call(gs, http, ACTIVITY, new)  # a re-send beside a new activity

    if data == 400:
        assert "Duplicate ExternalId" in failed(response, 400, "GSOBJ_1008")["errorDesc"]
        assert gs.count_records("activity_timeline") == 1  # nothing of the call is written
        return
    if data == b"":
        assert response.status_code == 200 and response.content == b""
    elif data == "success":
        success = ok_data(response)["success"]
        assert success[ACTIVITY["ExternalId"]] == [{"activityId": first}] and "cg-nps-new" in success
    else:
        assert ok_data(response) == data
    assert sorted(a["ExternalId"] for a in gs.records("activity_timeline")) == sorted([ACTIVITY["ExternalId"], "cg-nps-new"])


@pytest.mark.parametrize(
    "dates, expected",
    [
        ("epoch", 1656682560000),
        ("iso", "2022-07-01T13:36:00Z"),
        ("iso_offset", "2022-07-01T06:36:00.000-07:00"),
        ("iso_plain", "2022-07-01 13:36:00.0"),
    ],
)
def test_query_date_variants(gs: GainsightSandbox, http: requests.Session, dates: str, expected: Any) -> None:
    gs.add_user("testuser@gainsight.com", "Test User")
    companies(gs, http, "Tech systems ABC Ltd")
    ok_data(timeline_call(gs, http, ACTIVITY))
    gs.variants.query_dates = dates
    [row] = ok_data(query(gs, http, "activity_timeline", select=["ActivityDate"]))["records"]
    assert row == {"ActivityDate": expected}


def test_query_shape_and_empty_answer_variants(gs: GainsightSandbox, http: requests.Session) -> None:
    gs.variants.query_shape = "bare_list"
    assert ok_data(query(gs, http, "Company", select=["Name"])) == []
    companies(gs, http, "Acme")
    assert ok_data(query(gs, http, "Company", select=["Name"])) == [{"Name": "Acme"}]
    gs.variants.empty_answer = "no_data_found"
    zeta = {"conditions": [{"name": "Name", "alias": "A", "value": ["Zeta"], "operator": "EQ"}]}
    none = query(gs, http, "Company", select=["Name"], where=zeta)
    assert none.status_code == 200
    assert none.json() | {"requestId": None} == {
        "result": False, "errorCode": "GSOBJ_1XXX", "errorDesc": "No data found for given criteria",
        "requestId": None, "data": None, "message": "No data found for given criteria",
    }  # fmt: skip
    with pytest.raises(ValueError):
        gs.variants.query_shape = "rows"


def test_timeline_records_per_call_cap_rejects_the_call(http: requests.Session) -> None:
    with GainsightSandbox(KEY, timeline_records_per_call=3) as gs:
        companies(gs, http, "Tech systems ABC Ltd")
        gs.add_user("testuser@gainsight.com", "Test User")
        records = [dict(ACTIVITY, ExternalId=str(i)) for i in range(4)]
        failed(timeline_call(gs, http, *records), 400, "GSOBJ_1008")
        assert ok_data(timeline_call(gs, http, *records[:3]))["failure"] == {}
        company = gs.records("Company")[0]["Gsid"]
        direct = dict(ACTIVITY, ExternalId="direct", GsCompanyId=company)
        del direct["companyName"]
        assert list(ok_data(timeline_call(gs, http, direct))["success"]) == ["direct"]


# -- Bulk -------------------------------------------------------------------------------------------------


def csv_bytes(rows: list[list[Any]], header: list[str] = NPS_COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def upload(gs: GainsightSandbox, data: bytes, job_id: str = "nps", key: str = KEY) -> requests.Response:
    return requests.post(
        gs.base_url + BULK, files={"file": ("nps.csv", data, "text/csv")}, data={"jobId": job_id},
        headers={"accessKey": key, "Accept": "application/json"},
    )  # fmt: skip


def status(gs: GainsightSandbox, status_id: str) -> dict:
    return ok_data(requests.get(gs.base_url + f"{BULK}/status/{status_id}", headers=HEADERS))


def wait_for(gs: GainsightSandbox, status_id: str, wanted: str) -> dict:
    """Wait (via the emulator-only inspection, which no quota counts) until the execution reaches
    ``wanted``, then read its status over HTTP as a client would."""
    for _ in range(1000):
        if any(e["statusId"] == status_id and e["jobStatus"] == wanted for e in gs.bulk_executions()):
            return status(gs, status_id)
        threading.Event().wait(0.01)
    raise AssertionError(f"{status_id} never reached {wanted}: {gs.bulk_executions()}")


NPS_JOB = BulkJob(
    "nps", NPS, "UPSERT", ("ResponseId__gc",),
    lookups={"CompanyId__gc": {"fields": {"CompanyAccount": "CG_Account_Id__gc"}, "lookupField": "Gsid",
                               "objectName": "Company", "multiMatchOption": "FIRSTMATCH", "onNoMatch": "NULLABLE"}},
)  # fmt: skip


@pytest.fixture
def bulk_gs() -> Iterator[GainsightSandbox]:
    with GainsightSandbox(KEY, time_scale=0, bulk_jobs=[NPS_JOB]) as sandbox:
        yield sandbox


def test_bulk_upsert_lifecycle_counts_and_failed_rows(bulk_gs: GainsightSandbox, http: requests.Session) -> None:
    gs = bulk_gs
    acme = companies(gs, http, "Acme")[0]
    ok_data(insert(gs, http, NPS, {"ResponseId__gc": "r-1", "Score__gc": 1}))
    rows = [
        ["r-1", 9, "promoter", "2024-05-01T10:15:00.000+00:00", "ACC-Acme"],  # updates the existing record
        ["r-2", "", "", "", ""],  # empty cells are nulls
        ["r-3", "ten", "", "", ""],  # bad number
        ["r-4", 3, "detractor", "2024-05-01", ""],  # bad datetime
        ["r-5", 0, "detractor", "", "ACC-Ghost"],  # NULLABLE lookup
    ]
    status_id = ok_data(upload(gs, csv_bytes(rows)))["statusId"]
    first = status(gs, status_id)
    assert (first["jobStatus"], first["jobId"], first["totalCount"], first["successCount"]) == ("INIT", "nps", 5, 0)
    gs.advance(1)
    middle = wait_for(gs, status_id, "IN_PROGRESS")
    assert middle["endTime"] is None
    gs.advance(1)
    done = wait_for(gs, status_id, "COMPLETED")
    assert (done["totalCount"], done["successCount"], done["failureCount"]) == (5, 3, 2)
    assert done["startTime"] < done["endTime"]
    stored = {r["ResponseId__gc"]: r for r in gs.records(NPS)}
    assert set(stored) == {"r-1", "r-2", "r-5"}
    assert (stored["r-1"]["Score__gc"], stored["r-1"]["CompanyId__gc"]) == (9, acme)
    assert stored["r-2"]["Score__gc"] is None and stored["r-5"]["CompanyId__gc"] is None
    [execution] = gs.bulk_executions()
    assert [(f["row"], f["key"], f["reason"][:10]) for f in execution["failures"]] == [(3, "r-3", "GSOBJ_1008"), (4, "r-4", "GSOBJ_1005")]


def test_bulk_forced_row_failures_and_update_job(bulk_gs: GainsightSandbox) -> None:
    gs = bulk_gs
    gs.add_bulk_job(BulkJob("upd", NPS, "UPDATE", ("ResponseId__gc",), mapping={"id": "ResponseId__gc", "score": "Score__gc"}))
    gs.fail_bulk_rows(["r-2"], reason="Simulated lock timeout")
    status_id = ok_data(upload(gs, csv_bytes([["r-1", 1, "", "", ""], ["r-2", 2, "", "", ""]])))["statusId"]
    gs.advance(2)
    assert wait_for(gs, status_id, "COMPLETED")["failureCount"] == 1
    assert gs.bulk_executions()[0]["failures"] == [{"row": 2, "key": "r-2", "reason": "Simulated lock timeout"}]
    retry = ok_data(upload(gs, csv_bytes([["r-2", 2, "", "", ""]])))["statusId"]
    gs.advance(2)
    assert wait_for(gs, retry, "COMPLETED")["successCount"] == 1  # each forced failure fires once
    update = ok_data(upload(gs, csv_bytes([["r-1", 10], ["r-9", 0]], ["id", "score"]), "upd"))["statusId"]
    gs.advance(2)
    done = wait_for(gs, update, "COMPLETED")
    assert (done["successCount"], done["failureCount"]) == (1, 1)
    assert [r["Score__gc"] for r in gs.records(NPS)] == [10, 2]


def test_bulk_upload_rejections(bulk_gs: GainsightSandbox) -> None:
    gs = bulk_gs
    good = csv_bytes([["r-1", 1, "", "", ""]])
    failed(upload(gs, good, job_id="nope"), 400, "BULK_JOB_NOT_FOUND")
    failed(upload(gs, good, key="wrong"), 401, "GS_APIG_2401")
    failed(upload(gs, b""), 400, "GS_7571")
    failed(upload(gs, csv_bytes([])), 400, "GS_7571")
    failed(upload(gs, b'ResponseId__gc,Score__gc\n"r-1,1\n'), 400, "BULK_INVALID_FILE")
    failed(upload(gs, b"ResponseId__gc,Score__gc\nr-1,1,extra\n"), 400, "BULK_INVALID_FILE")
    failed(upload(gs, csv_bytes([["r-1", "x"]], ["ResponseId__gc", "Mystery"])), 400, "BULK_INVALID_FILE")
    failed(upload(gs, csv_bytes([[1]], ["Score__gc"])), 400, "BULK_INVALID_FILE")  # no update key column
    failed(upload(gs, b"\xff\xfe\x00bad"), 400, "BULK_INVALID_FILE")
    no_file = requests.post(gs.base_url + BULK, data={"jobId": "nps"}, headers={"accessKey": KEY, "Accept": "*/*"})
    failed(no_file, 400, "BULK_INVALID_REQUEST")
    assert gs.bulk_executions() == []
    with GainsightSandbox(KEY, bulk_jobs=[NPS_JOB], bulk_max_bytes=100) as small:
        failed(upload(small, good + b"x" * 100), 400, "BULK_FILE_TOO_LARGE")
    with pytest.raises(ValueError, match="cannot load Person"):
        gs.add_bulk_job(BulkJob("people", "Person", "INSERT"))
    with pytest.raises(ValueError, match="cannot load GsUser"):
        gs.add_bulk_job(BulkJob("users", "gsuser", "UPSERT", ("Email",)))
    with pytest.raises(ValueError, match="update keys"):
        gs.add_bulk_job(BulkJob("nokeys", NPS, "UPSERT"))


def test_bulk_job_with_its_own_access_key_and_status_auth(bulk_gs: GainsightSandbox) -> None:
    gs = bulk_gs
    gs.add_bulk_job(BulkJob("own", "Company", "INSERT", access_key="bulk-connection-key"))
    data = csv_bytes([["Acme", "ACC-1"]], ["Name", "CG_Account_Id__gc"])
    failed(upload(gs, data, "own"), 401, "GS_APIG_2401")
    status_id = ok_data(upload(gs, data, "own", key="bulk-connection-key"))["statusId"]
    answer = requests.get(gs.base_url + f"{BULK}/status/{status_id}", headers={"accessKey": "bulk-connection-key", "Accept": "*/*"})
    assert ok_data(answer)["jobStatus"] == "INIT"
    failed(requests.get(gs.base_url + f"{BULK}/status/{status_id}", headers={"Accept": "*/*"}), 401, "GS_APIG_2401")
    failed(requests.get(gs.base_url + f"{BULK}/status/unknown", headers=HEADERS), 400, "BULK_STATUS_NOT_FOUND")


def test_bulk_100k_rows_then_5000_key_queries_over_them() -> None:
    job = BulkJob("companies", "Company", "INSERT", mapping={"account": "CG_Account_Id__gc", "name": "Name"})
    with GainsightSandbox(KEY, bulk_jobs=[job], quotas=False, time_scale=1000) as gs, requests.Session() as http:
        http.headers.update(HEADERS)
        rows = "".join(f"ACC-{i},Company {i}\n" for i in range(100_000))
        status_id = ok_data(upload(gs, ("account,name\n" + rows).encode(), "companies"))["statusId"]
        assert wait_for(gs, status_id, "COMPLETED")["successCount"] == 100_000
        assert gs.count_records("Company") == 100_000
        found = 0
        for chunk in range(0, 100_000, 25_000):
            wanted = [f"ACC-{i}" for i in range(chunk, chunk + 25_000, 5)]
            where = {"conditions": [{"name": "CG_Account_Id__gc", "alias": "A", "value": wanted, "operator": "IN"}]}
            records = ok_data(query(gs, http, "Company", select=["Gsid", "CG_Account_Id__gc"], where=where, limit=5000))["records"]
            assert [r["CG_Account_Id__gc"] for r in records] == wanted
            found += len(records)
        assert found == 20_000


# -- quotas -------------------------------------------------------------------------------------------------


def to_start_of_day(gs: GainsightSandbox) -> None:
    """Move the sandbox to 00:00 UTC: the sandbox clock starts at wall-clock time, and a test that walks
    minute or hour windows from anywhere else can cross midnight, where the daily count resets."""
    gs.advance(86400 - gs.clock.now() % 86400)


def test_sync_quota_fixed_minute_window_with_the_documented_limit(gs: GainsightSandbox, http: requests.Session) -> None:
    to_start_of_day(gs)
    for _ in range(100):
        assert query(gs, http, "Company", select=["Name"]).status_code == 200
    limited = failed(query(gs, http, "Company", select=["Name"]), 429, "GS_APIG_2404")
    assert limited["errorDesc"] == "API rate limit exceeded" and limited["data"] is None
    answer = query(gs, http, "Company", select=["Name"])
    assert answer.headers["x-ratelimit-limit"] == "100" and "Retry-After" not in answer.headers
    assert failed(call(gs, http, "PUT", PEOPLE, json={"Email": "a@b.co"}), 429, "GS_APIG_2404")  # People is sync too
    assert ok_data(timeline_call(gs, http, ACTIVITY))["failure"]  # Timeline has its own family
    state = gs.quota_state()
    assert state["sync"]["minute"]["used"] == 100 and state["sync"]["day"]["used"] == 100  # refused calls don't count
    assert state["timeline"]["minute"]["used"] == 1
    gs.advance(59.9)
    assert query(gs, http, "Company", select=["Name"]).status_code == 429
    gs.advance(0.1)
    assert query(gs, http, "Company", select=["Name"]).status_code == 200
    assert gs.quota_state()["sync"]["minute"]["used"] == 1 and gs.quota_state()["sync"]["day"]["used"] == 101


def test_bulk_and_daily_quotas_with_overrides_and_retry_after(http: requests.Session) -> None:
    limits = {("bulk", "hour"): 1, ("sync", "day"): 2}
    with GainsightSandbox(KEY, bulk_jobs=[NPS_JOB], quota_limits=limits, time_scale=0, retry_after_header=True) as gs:
        to_start_of_day(gs)
        data = csv_bytes([["r-1", 1, "", "", ""]])
        ok_data(upload(gs, data))
        answer = upload(gs, data)
        failed(answer, 429, "GS_APIG_2404")
        assert answer.headers["x-ratelimit-limit"] == "1" and answer.headers["Retry-After"] == "3600"
        gs.advance(3600)
        ok_data(upload(gs, data))
        assert gs.quota_state()["bulk"]["day"]["used"] == 2
        ok_data(query(gs, http, "Company", select=["Name"]))
        ok_data(call(gs, http, "GET", "/v1/meta/services/objects/list"))
        failed(query(gs, http, "Company", select=["Name"]), 429, "GS_APIG_2404")
        assert requests.get(gs.base_url + "/_sandbox/quotas").status_code == 200  # controls are never limited


def test_quotas_off_and_scaled_time(http: requests.Session) -> None:
    with GainsightSandbox(KEY, quotas=False) as gs:
        for _ in range(120):
            ok_data(query(gs, http, "Company", select=["Name"]))
        assert gs.quota_state()["sync"]["minute"]["used"] == 0
    with GainsightSandbox(KEY, time_scale=600, quota_limits={("sync", "minute"): 1}) as gs:
        started = gs.clock.now()  # read before the call that uses the quota: a sandbox minute is 0.1 s
        ok_data(query(gs, http, "Company", select=["Name"]))  # here, so reading it after may be a window late
        for _ in range(1000):  # a sandbox minute is a tenth of a real second here: a few polls suffice
            if query(gs, http, "Company", select=["Name"]).status_code != 429:
                break
            threading.Event().wait(0.01)
        else:
            pytest.fail("the minute window never rolled over under time_scale=600")
        assert gs.clock.now() // 60 > started // 60  # released by the next minute window, not before


def test_quota_override_validation() -> None:
    with pytest.raises(ValueError):
        GainsightSandbox(KEY, quota_limits={("sync", "week"): 1})
    with pytest.raises(ValueError):
        GainsightSandbox(KEY, quota_limits={("cta", "minute"): 1})


# -- faults -------------------------------------------------------------------------------------------------


def test_status_faults_render_gainsight_envelopes(gs: GainsightSandbox, http: requests.Session) -> None:
    path = f"{OBJECTS}/query/Company"
    gs.add_fault(path=path, kind="status", status=429)
    gs.add_fault(path=path, kind="status", status=500)
    gs.add_fault(path=path, kind="status", status=503, retry_after=2)
    gs.add_fault(path=path, kind="status", status=401)
    gs.add_fault(path=path, kind="status", status=429, error_code="GU_2400")
    limited = query(gs, http, "Company", select=["Name"])
    assert failed(limited, 429, "GS_APIG_2404")["errorDesc"] == "API rate limit exceeded"
    assert limited.headers["x-ratelimit-limit"] == "100"
    assert failed(query(gs, http, "Company", select=["Name"]), 500, "GU_1101")["errorDesc"] == "Oops, something went wrong."
    unavailable = query(gs, http, "Company", select=["Name"])
    assert failed(unavailable, 503, "GU_1101") and unavailable.headers["Retry-After"] == "2"
    failed(query(gs, http, "Company", select=["Name"]), 401, "GS_APIG_2401")
    assert failed(query(gs, http, "Company", select=["Name"]), 429, "GU_2400")["errorDesc"] == "Too many request"
    ok_data(query(gs, http, "Company", select=["Name"]))
    assert gs.pending_faults() == [] and gs.quota_state()["sync"]["minute"]["used"] == 1


def test_result_false_drop_and_delay_faults(gs: GainsightSandbox, http: requests.Session) -> None:
    gs.add_fault(path=f"{OBJECTS}/Company", kind="result_false")
    answer = insert(gs, http, "Company", {"Name": "Acme"})
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == ENVELOPE_KEYS and body["result"] is False and body["errorCode"] == "GSOBJ_1003"
    gs.add_fault(path=TIMELINE, kind="result_false", error_code="GSOBJ_1XXX")
    assert timeline_call(gs, http, ACTIVITY).json()["errorCode"] == "GSOBJ_1XXX"
    gs.add_fault(path=PEOPLE, kind="drop")
    with pytest.raises(requests.ConnectionError):
        call(gs, http, "PUT", PEOPLE, json={"Email": "a@b.co"})
    gs.add_fault(path=PEOPLE, kind="delay", delay=0.3)
    with pytest.raises(requests.Timeout):
        call(gs, http, "PUT", PEOPLE, json={"Email": "a@b.co"}, timeout=0.1)
    assert gs.count_records("Company") == 0
    with pytest.raises(ValueError, match="result_false"):
        CustomerGaugeSandbox("id", "secret").add_fault(kind="result_false")


# -- concurrency ---------------------------------------------------------------------------------------


def test_concurrent_clients_get_atomic_calls() -> None:
    with GainsightSandbox(KEY, quotas=False) as gs:
        errors: list[str] = []

        def writer(worker: int) -> None:
            with requests.Session() as http:
                http.headers.update(HEADERS)
                for batch in range(10):
                    records = [{"ResponseId__gc": f"{worker}-{batch}-{i}", "Score__gc": i % 11} for i in range(50)]
                    if batch == 5:
                        records[7]["Score__gc"] = "bad"  # this whole call must leave no trace
                    answer = insert(gs, http, NPS, *records)
                    if answer.status_code != (400 if batch == 5 else 200):
                        errors.append(answer.text)
                    person = call(gs, http, "PUT", PEOPLE, json={"Email": "shared@acme.com", "FirstName": str(worker)})
                    if person.status_code != 200:
                        errors.append(person.text)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        stored = gs.records(NPS)
        assert len(stored) == 8 * 9 * 50 and len({r["Gsid"] for r in stored}) == len(stored)
        assert not [r for r in stored if r["ResponseId__gc"].split("-")[1] == "5"]
        assert gs.count_records("Person") == 1


# -- metadata, inspection, controls, command line --------------------------------------------------------


def test_metadata_list_and_describe(gs: GainsightSandbox, http: requests.Session) -> None:
    objects = ok_data(call(gs, http, "GET", "/v1/meta/services/objects/list", params={"po": "company", "em": "false"}))
    listed = {o["objectName"]: o for o in objects}
    standard = {"company", "person", "company_person", "gsuser", "activity_timeline"}
    assert standard | {"cg_nps_response__gc", "cg_usage_event__gc"} <= set(listed)
    assert listed["cg_nps_response__gc"]["transactional"] is True and listed["cg_usage_event__gc"]["transactional"] is False
    assert listed["company"]["keyPrefix"] == "1P02" and listed["company"]["objectType"] == "STANDARD"
    body = {"objectNames": [NPS], "includeChilds": "true", "childLevels": "0", "populatePickListOptions": "true", "host": "MDA"}
    [described] = ok_data(call(gs, http, "POST", "/v1/meta/services/objects/describe", json=body))
    fields = {f["fieldName"]: f for f in described["fields"]}
    assert fields["ResponseId__gc"]["meta"]["required"] is True and fields["ResponseId__gc"]["meta"]["length"] == 64
    assert fields["CompanyId__gc"]["dataType"] == "GSID"
    assert fields["CompanyId__gc"]["meta"]["lookupDetail"] == {"lookupObjects": [{"objectName": "Company"}]}
    assert fields["Gsid"]["meta"]["createable"] is False
    [company] = ok_data(call(gs, http, "GET", "/v1/meta/services/objects/company/describe", params={"idd": "true"}))
    assert company["objectName"] == "Company"
    answer = call(gs, http, "GET", "/v1/meta/services/objects/Nope__gc/describe")
    assert answer.status_code == 400 and answer.json()["title"] == "OBJECT_NOT_FOUND"


def test_default_schema_is_as_documented() -> None:
    schema = default_schema()
    nps = schema.object("cg_nps_response__gc")
    assert nps is not None and nps == nps_response_object()
    assert [f.name for f in nps.fields if not f.system] == [
        "ResponseId__gc", "Score__gc", "NpsCategory__gc", "Comment__gc", "PersonEmail__gc", "SurveyId__gc",
        "Touchpoint__gc", "Channel__gc", "Language__gc", "Country__gc", "Segment__gc", "Product__gc",
        "CaseLink__gc", "ResponseDatetime__gc", "CompanyId__gc",
    ]  # fmt: skip
    assert "Survey Response" in schema.activity_types["Company"]
    with pytest.raises(ValueError):
        ObjectSpec("NoSuffix", "1Z09", ())
    with pytest.raises(ValueError):
        Schema([nps_response_object()], {}, [])
    with pytest.raises(ValueError):
        FieldSpec("Stage", "PICKLIST")


def test_inspection_reset_and_control_endpoints(gs: GainsightSandbox, http: requests.Session) -> None:
    seeded = {u["Email"] for u in gs.records("GsUser")}
    assert {"nps.connector@example.com", "casey.csm@example.com"} <= seeded
    companies(gs, http, "Acme")
    call(gs, http, "PUT", PEOPLE, json={"Email": "a@b.co"})
    call(gs, http, "GET", "/v1/meta/services/objects/list")
    assert gs.family_counts() == {"data": 1, "people": 1, "metadata": 1}
    control = gs.base_url + "/_sandbox"
    assert requests.get(control + "/records/COMPANY").json()["records"][0]["Name"] == "Acme"
    assert requests.get(control + "/records/nope").status_code == 404
    assert requests.get(control + "/families").json() == {"data": 1, "people": 1, "metadata": 1}
    assert requests.get(control + "/quotas").json()["sync"]["minute"]["used"] == 3
    gsid = requests.post(control + "/users", json={"email": "new@example.com", "name": "New User"}).json()["gsid"]
    assert gsid.startswith("1P01")
    job = {"jobId": "http-job", "objectName": NPS, "operation": "INSERT"}
    assert requests.post(control + "/bulk/jobs", json=job).status_code == 201
    assert requests.post(control + "/bulk/jobs", json=dict(job, objectName="Person")).status_code == 400
    assert requests.post(control + "/bulk/fail-rows", json={"keys": ["x"]}).status_code == 200
    before = gs.clock.now()
    assert requests.post(control + "/advance", json={"seconds": 3600}).json()["now"] >= before + 3600
    assert requests.get(control + "/bulk/executions").json() == []
    assert requests.post(control + "/reset").status_code == 200
    assert gs.count_records("Company") == gs.count_records("Person") == 0 and gs.count() == 0
    assert gs.count_records("gsuser") == len(seeded) + 1
    assert gs.quota_state()["sync"]["minute"]["used"] == 0
    with pytest.raises(KeyError):
        gs.records("Nope")


def test_command_line_serves_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "gainsight", "--port", "0", "--access-key", "cli-key",
         "--bulk-job", f"j1:{NPS}:upsert:ResponseId__gc", "--time-scale", "100"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        match = re.fullmatch(r"Gainsight sandbox serving at (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        base_url = match.group(1)
        headers = {"accesskey": "cli-key", "Accept": "application/json"}
        assert requests.post(base_url + f"{OBJECTS}/query/Company", json={"select": ["Name"]}, headers=headers).json()["result"]
        answer = requests.post(base_url + BULK, files={"file": ("a.csv", b"ResponseId__gc\nr-1\n")}, data={"jobId": "j1"}, headers=headers)
        assert answer.json()["result"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


# -- deletes (reference §4.4/§4.5 record delete, §4.7 Timeline delete by activityId) --------------------


def test_record_delete_needs_auth_and_a_valid_gsid_and_says_when_it_is_gone(gs: GainsightSandbox, http: requests.Session) -> None:
    [gsid] = [r["Gsid"] for r in ok_data(insert(gs, http, NPS, {"ResponseId__gc": "r-1", "Score__gc": 9}))["records"]]
    assert requests.delete(f"{gs.base_url}{OBJECTS}/{NPS}/{gsid}").status_code == 401
    failed(call(gs, http, "DELETE", f"{OBJECTS}/{NPS}/"), 400, "GSOBJ_1004")
    failed(call(gs, http, "DELETE", f"{OBJECTS}/{NPS}/not-a-gsid"), 400, "GSOBJ_1004")
    assert gs.count_records(NPS) == 1

    assert ok_data(call(gs, http, "DELETE", f"{OBJECTS}/{NPS}/{gsid}"))["records"] == [{"Gsid": gsid}]

    assert gs.count_records(NPS) == 0
    failed(call(gs, http, "DELETE", f"{OBJECTS}/{NPS}/{gsid}"), 400, "GSOBJ_1004")
    gs.variants.missing_record = "not_found"
    failed(call(gs, http, "DELETE", f"{OBJECTS}/{NPS}/{gsid}"), 404, "GSOBJ_1011")


@pytest.mark.parametrize("where", ["query", "body"])
def test_timeline_delete_by_activity_id_where_the_variant_expects_it(
    gs: GainsightSandbox, http: requests.Session, where: str
) -> None:
    gs.add_user("testuser@gainsight.com", "Test User")
    companies(gs, http, "Tech systems ABC Ltd")
    activity_id = ok_data(timeline_call(gs, http, ACTIVITY))["success"][ACTIVITY["ExternalId"]][0]["activityId"]
    gs.variants.activity_delete = where
    right, wrong = {"params": {"activityId": activity_id}}, {"json": {"activityId": activity_id}}
    if where == "body":
        right, wrong = wrong, right
    failed(call(gs, http, "DELETE", TIMELINE, **wrong), 400, "GSOBJ_1004")
    assert gs.count_records("activity_timeline") == 1

    assert ok_data(call(gs, http, "DELETE", TIMELINE, **right)) == {"activityId": activity_id}

    assert gs.count_records("activity_timeline") == 0
    failed(call(gs, http, "DELETE", TIMELINE, **right), 400, "GSOBJ_1004")
    gs.variants.missing_record = "not_found"
    failed(call(gs, http, "DELETE", TIMELINE, **right), 404, "GSOBJ_1011")
