"""Pure mapping and validation: CustomerGauge records -> canonical staging rows."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from sources.customergauge.arrow_pages import read_page, records_to_arrow
from sources.customergauge.decoding import PageDecoder
from sources.customergauge.errors import ContractViolation
from sources.customergauge.mapping import RESPONSE_SCHEMA, content_hashes, quarantine_table, responses_table
from sources.customergauge.models import PageValidator, RawResponse
from sources.customergauge.settings import DEFAULT_PROPERTY_MAP

UTC = timezone.utc

GOLDEN = {
    "number_customergauge": 185341,
    "number_customer": "ORD-1143",
    "contact": {"first_name": "Lee", "last_name": "Klameth"},
    "account": {"name": "ACME Industries"},
    "email": "  Lee.Klameth@Example.com ",
    "phone": "31612345678",
    "nps": 9,
    "comment": "Quick delivery, friendly support.",
    "date_creation": "2024-05-01 08:00:00",
    "date_order": "2024-04-30 00:00:00",
    "date_email_sent": "2024-05-01 09:00:00",
    "date_survey_response": "2024-05-02 14:03:11",
    "properties": [
        {"field": "Touchpoint", "reference": "Onboarding"},
        {"field": "Country", "reference": "NL"},
        {"field": "Language", "reference": "nl"},
        {"field": "Channel", "reference": "email"},
        {"field": "Account Number", "reference": "SF-0012345"},
        {"field": "Segment", "reference": None},
    ],
    "custom_fields": [{"field": "Assignment_ID", "reference": None}],
    "drivers": [{"label": "Value for Money"}, {"label": "Delivery"}],
}


def page(*records, cursor=7) -> bytes:
    return json.dumps({"data": list(records), "cursor": {"next": cursor}}).encode()


def validate(*records):
    return PageValidator(RawResponse).validate(page(*records))


FETCHED = datetime(2026, 1, 1, tzinfo=UTC)


def decoder(property_map=None, tz="UTC") -> PageDecoder:
    mapping = {**DEFAULT_PROPERTY_MAP, **(property_map or {})}
    return PageDecoder(
        "response", "nps_responses", "date_survey_response", "responded_at", tuple(mapping.items()), tz, "run-1"
    )


def rows(*records, **kwargs) -> list[dict]:
    decoded = decoder(**kwargs)(page(*records), FETCHED)
    return decoded.rows.to_pylist() if decoded.rows is not None else []


def slow_path_rows(*records, tz="UTC") -> list[dict]:
    """The same page forced through pydantic, as a page with one bad record would be."""
    validated = PageValidator(RawResponse).validate(page(*records)).records
    raw = records_to_arrow(validated, "response", tz)
    return responses_table(raw, DEFAULT_PROPERTY_MAP, tz, FETCHED).to_pylist()


@pytest.mark.parametrize(
    ("score", "category"),
    [(0, "detractor"), (6, "detractor"), (7, "passive"), (8, "passive"), (9, "promoter"), (10, "promoter")],
)
def test_nps_category_boundaries(score, category):
    [row] = rows({**GOLDEN, "nps": score})
    assert (row["score"], row["category"]) == (score, category)


def test_golden_record_maps_to_canonical_row():
    [row] = rows(GOLDEN)
    assert row["response_id"] == "185341"
    assert row["score"] == 9 and row["category"] == "promoter"
    assert row["email"] == "lee.klameth@example.com"
    assert (row["first_name"], row["last_name"], row["account_name"]) == ("Lee", "Klameth", "ACME Industries")
    assert row["account_id"] == "SF-0012345"
    assert (row["touchpoint"], row["country"], row["language"], row["channel"]) == ("Onboarding", "NL", "nl", "email")
    assert row["segment"] is None and row["product"] is None
    assert row["responded_at"] == datetime(2024, 5, 2, 14, 3, 11, tzinfo=UTC)
    assert row["created_at"] == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert row["drivers"] == ["Value for Money", "Delivery"]
    assert row["properties"] == []  # every pair of the golden record is mapped to a column
    assert row["fetched_at"] == FETCHED


def test_unmapped_properties_are_kept_and_mapped_ones_not_repeated():
    extra = [*GOLDEN["properties"], {"field": "Region", "reference": "EMEA"}, {"field": "Tier", "reference": None}]
    [row] = rows({**GOLDEN, "properties": extra})
    assert row["properties"] == [{"field": "Region", "reference": "EMEA"}, {"field": "Tier", "reference": None}]
    assert row["country"] == "NL"
    # remapping a column to an unmapped label moves that pair out of `properties`
    [row] = rows({**GOLDEN, "properties": extra}, property_map={"segment": "Region"})
    assert row["segment"] == "EMEA"
    assert row["properties"] == [{"field": "Segment", "reference": None}, {"field": "Tier", "reference": None}]


def test_property_map_is_configurable():
    [row] = rows(GOLDEN, property_map={"account_id": "Country", "touchpoint": "Missing Label"})
    assert row["account_id"] == "NL"
    assert row["touchpoint"] is None


def test_tenant_timezone_converts_naive_timestamps_to_utc():
    [row] = rows(GOLDEN, tz="Europe/Amsterdam")
    assert row["responded_at"] == datetime(2024, 5, 2, 12, 3, 11, tzinfo=UTC)  # CEST is UTC+2


def test_repeated_property_first_non_null_wins():
    pairs = [{"field": "Country", "reference": None}, {"field": "Country", "reference": "DE"}, {"field": "Country", "reference": "FR"}]
    [row] = rows({**GOLDEN, "properties": pairs})
    assert row["country"] == "DE"


@pytest.mark.parametrize(("raw", "expected"), [(None, None), ("", None), ("  ", None), (" A@B.COM ", "a@b.com")])
def test_email_normalization(raw, expected):
    [row] = rows({**GOLDEN, "email": raw})
    assert row["email"] == expected


def test_missing_optional_parts_become_nulls_and_empty_lists():
    bare = {"number_customergauge": 5, "nps": 3, "date_survey_response": "2024-05-02 14:03:11"}
    [row] = rows(bare)
    assert row["drivers"] == [] and row["properties"] == []
    assert row["email"] is None and row["first_name"] is None and row["account_id"] is None
    assert row["category"] == "detractor"


def test_content_hash_tracks_pushed_fields_only():
    [base] = rows(GOLDEN)
    assert rows({**GOLDEN, "date_creation": None})[0]["content_hash"] == base["content_hash"]
    assert rows({**GOLDEN, "number_customer": "other"})[0]["content_hash"] == base["content_hash"]
    for change in ({"comment": "changed"}, {"nps": 3}, {"drivers": [{"label": "Delivery"}]}, {"email": "x@y.z"}):
        assert rows({**GOLDEN, **change})[0]["content_hash"] != base["content_hash"]
    table = responses_table(
        records_to_arrow(PageValidator(RawResponse).validate(page(GOLDEN)).records, "response", "UTC"),
        DEFAULT_PROPERTY_MAP,
        "UTC",
        FETCHED,
    )
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}
    assert content_hashes(columns).to_pylist() == [base["content_hash"]]


MESSY = [
    GOLDEN,
    {**GOLDEN, "number_customergauge": 2, "email": None, "comment": None, "contact": None, "account": None},
    {**GOLDEN, "number_customergauge": 3, "comment": "非常に満足しています 👍 " * 500, "drivers": []},
    {**GOLDEN, "number_customergauge": 4, "properties": None, "drivers": None},
    {"number_customergauge": 5, "nps": 0, "date_survey_response": "2024-12-31 23:59:59"},
]


def test_fast_path_accepts_clean_pages_and_matches_the_pydantic_path():
    decoded = decoder()(page(*MESSY), FETCHED)
    assert decoded.fast_path and decoded.valid == len(MESSY)
    assert decoded.rows.to_pylist() == slow_path_rows(*MESSY)


@pytest.mark.parametrize(
    "oddity",
    [
        {"nps": "9"},  # numeric string: pydantic's lax mode accepts it
        {"number_customergauge": "185341"},
        {"date_survey_response": "2024-05-02T14:03:11"},  # ISO 'T' instead of the documented space
        {"date_survey_response": "2024-05-02 16:03:11+02:00"},  # explicit offset wins over the tenant zone
        {"nps": 9.0},
    ],
)
def test_unusual_but_valid_records_take_the_pydantic_path_with_the_same_result(oddity):
    decoded = decoder()(page({**GOLDEN, **oddity}), FETCHED)
    assert not decoded.fast_path and decoded.rejected == 0
    [row] = decoded.rows.to_pylist()
    [expected] = rows(GOLDEN)
    assert {k: v for k, v in row.items()} == expected


def test_fast_path_declines_what_pydantic_rejects():
    for bad in ({**GOLDEN, "nps": 11}, {**GOLDEN, "nps": None}, {**GOLDEN, "date_survey_response": "2024-02-30 10:00:00"},
                {**GOLDEN, "properties": [{"reference": "x"}]}, {**GOLDEN, "drivers": [None]}, {**GOLDEN, "number_customergauge": 0}):
        assert read_page(page(bad), "response") is None
        assert PageValidator(RawResponse).validate(page(bad)).rejects


def test_clean_page_validates_in_one_pass():
    result = validate(GOLDEN, {**GOLDEN, "number_customergauge": 2, "email": None, "comment": None})
    assert len(result.records) == 2 and result.rejects == [] and result.next_cursor == 7


@pytest.mark.parametrize(
    ("change", "reason_part"),
    [
        ({"nps": 11}, "nps: Input should be less than or equal to 10"),
        ({"nps": "ten"}, "nps: Input should be a valid integer"),
        ({"number_customergauge": None}, "number_customergauge"),
        ({"date_survey_response": "2024-02-30 10:00:00"}, "date_survey_response"),
        ({"date_survey_response": "not a date"}, "date_survey_response"),
    ],
)
def test_invalid_record_is_rejected_with_reason_and_others_kept(change, reason_part):
    bad = {**GOLDEN, "number_customergauge": 99, **change}
    result = validate(GOLDEN, bad)
    assert [r["number_customergauge"] for r in result.records] == [185341]
    [reject] = result.rejects
    assert reject.raw == bad
    assert reason_part in reject.reason


def test_missing_fields_are_named():
    bad = {k: v for k, v in GOLDEN.items() if k not in ("number_customergauge", "nps")}
    [reject] = validate(bad).rejects
    assert "number_customergauge: Field required" in reject.reason
    assert "nps: Field required" in reject.reason


def test_non_object_record_is_rejected_not_fatal():
    result = validate(GOLDEN, None)
    assert len(result.records) == 1 and len(result.rejects) == 1


@pytest.mark.parametrize(
    "body",
    [b"<html>502 Bad Gateway</html>", b'{"data": {}, "cursor": {"next": 1}}', b'{"data": []}'],
)
def test_broken_envelope_is_a_contract_violation(body):
    with pytest.raises(ContractViolation):
        PageValidator(RawResponse).validate(body)


def test_decoded_rows_have_the_canonical_schema():
    decoded = decoder()(page(*MESSY), FETCHED)
    assert decoded.rows.schema == RESPONSE_SCHEMA


def test_quarantine_rows_keep_raw_payload_and_are_stable():
    bad = {**GOLDEN, "nps": 11}
    [reject] = validate(bad).rejects
    at = datetime(2026, 1, 1, tzinfo=UTC)
    first = quarantine_table([reject], "nps_responses", "run-1", at, "UTC", "date_survey_response", "responded_at").to_pylist()[0]
    again = quarantine_table([reject], "nps_responses", "run-2", at, "UTC", "date_survey_response", "responded_at").to_pylist()[0]
    assert first["quarantine_id"] == again["quarantine_id"]
    assert json.loads(first["raw"]) == bad
    assert first["response_id"] == "185341"
    assert first["responded_at"] == datetime(2024, 5, 2, 14, 3, 11, tzinfo=UTC)
    assert "nps" in first["reason"]
    assert quarantine_table([reject], "t", "r", at, "UTC", "x", "sent_at").column("sent_at").to_pylist() == [None]
