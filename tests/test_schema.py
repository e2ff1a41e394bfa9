"""The canonical schema drives both sides: adding a property is one schema entry (or config alone)."""

from __future__ import annotations

import json
import logging
import os

from connector_common import schema
from destinations.gainsight.preflight import EXPECTED
from destinations.gainsight.store import outbox_sql
from pipelines.errors import ExitCode
from sources.customergauge.mapping import NON_RESPONSE_SCHEMA, RESPONSE_SCHEMA
from sources.customergauge.settings import DEFAULT_PROPERTY_MAP

from .cli import run_cli
from .conftest import REPO


def test_every_structure_naming_the_columns_is_derived_from_the_schema():
    assert RESPONSE_SCHEMA.names == [column.name for column in schema.RESPONSE_COLUMNS]
    assert NON_RESPONSE_SCHEMA.names == [column.name for column in schema.NON_RESPONSE_COLUMNS]
    assert all(f"r.{name}," in outbox_sql("nps") for name in schema.OUTBOX_COLUMNS)
    assert {column.name: column.label for column in schema.PROPERTIES} == DEFAULT_PROPERTY_MAP
    assert set(EXPECTED) == set(schema.MAPPABLE) >= set(schema.DEFAULT_RESPONSE_FIELDS)
    assert set(schema.MAPPABLE) - {"company_gsid"} <= set(schema.OUTBOX_COLUMNS)


def test_the_content_hash_reads_the_pushed_columns_in_their_historic_order():
    # Reordering would change every staged hash and re-send every response once: append only.
    assert schema.PUSHED_FIELDS == (
        "score", "comment", "email", "first_name", "last_name", "account_name",
        "account_id", "touchpoint", "channel", "language", "country", "segment", "product", "survey_id", "case_link",
        "responded_at", "drivers",
    )  # fmt: skip


def test_one_schema_entry_flows_from_customergauge_to_the_gainsight_record(tmp_path):
    """README "Adding a property": the entry below is the whole change (plus the field in Gainsight)."""
    entry = '_property("region", "Region", "Region__gc")'
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false", "PYTHONPATH": str(REPO)}
    # in a process of its own, forked from the zygote (which has not imported the schema)
    done = run_cli(entry, str(tmp_path), cwd=REPO, env=env, timeout=300, script=str(REPO / "tests" / "schema_extension.py"))
    assert done.returncode == 0, done.stderr
    flowed = json.loads(done.stdout.splitlines()[-1])  # after the run summary the command prints

    assert flowed["exit_code"] == 0, done.stderr
    assert flowed["property_map"]["region"] == "Region"
    assert flowed["response_fields"]["region"] == "Region__gc"
    assert "region" in flowed["known_response_fields"] and "region" in flowed["known_property_map"]
    assert len(flowed["sent"]) == 12
    assert flowed["staged"] == flowed["sent"]  # CustomerGauge property -> staging column
    assert flowed["pushed"] == flowed["sent"]  # staging column -> outbox -> Gainsight record field


def test_config_alone_maps_a_property_to_an_existing_field_and_an_empty_entry_drops_one(
    cg_sandbox, gs_sandbox, connector_for, monkeypatch
):
    cg = cg_sandbox(responses=20, days=5, accounts=3)
    gs = gs_sandbox()
    connector = connector_for(cg, gs)
    monkeypatch.setenv("DESTINATION__GAINSIGHT__RESPONSE_FIELDS__TOUCHPOINT", "")

    code, _ = connector.run(cg={"property_map": {"segment": "Product"}})

    assert code == ExitCode.OK
    staged = dict(connector.query("SELECT response_id, segment FROM nps.nps_responses"))
    products = {
        str(r["number_customergauge"]): next(p["reference"] for p in r["properties"] if p["field"] == "Product") for r in cg.records
    }
    assert staged == products  # the "Product" property now fills `segment`
    records = connector.records()
    assert len(records) == 20
    assert {r["ResponseId__gc"]: r["Segment__gc"] for r in records} == products  # ... and Segment__gc
    assert connector.scalar("SELECT count(*) FROM nps.nps_responses WHERE touchpoint IS NOT NULL") == 20
    assert all(r.get("Touchpoint__gc") is None for r in records)  # an empty entry: the field is not written


def test_a_property_map_naming_an_unknown_column_is_a_config_error_naming_the_key(cg_sandbox, staging_for, caplog):
    staging = staging_for(cg_sandbox(responses=5, days=3, accounts=1))

    with caplog.at_level(logging.ERROR):
        code, _ = staging.run(property_map={"segmnet": "Segment"})

    assert code == ExitCode.CONFIG_ERROR
    assert "sources.customergauge.property_map.segmnet" in caplog.text and "did you mean segment?" in caplog.text
    assert "KeyError" not in caplog.text


def test_a_field_map_naming_an_unknown_column_is_a_config_error_before_anything_is_fetched(
    cg_sandbox, gs_sandbox, connector_for, caplog
):
    cg = cg_sandbox(responses=5, days=3, accounts=1)
    connector = connector_for(cg, gs_sandbox())

    with caplog.at_level(logging.ERROR):
        code, _ = connector.run(response_fields={"regoin": "Region__gc"})

    assert code == ExitCode.CONFIG_ERROR
    assert "destination.gainsight.response_fields.regoin" in caplog.text
    assert "DESTINATION__GAINSIGHT__RESPONSE_FIELDS__REGOIN" in caplog.text
    assert not cg.requests()  # refused before the extract
