"""Destination settings resolved by dlt from the one definition: each rule names the key and env var,
and the defaults restated in `.dlt/config.toml` and README agree with that definition."""

from __future__ import annotations

import re
import sys
from typing import Any

import pyarrow as pa
import pytest
from dlt.common.configuration.specs import BaseConfiguration

from connector_common.schema import DEFAULT_PROPERTY_MAP, DEFAULT_RESPONSE_FIELDS
from destinations.gainsight import GainsightSettingError, load_settings
from destinations.gainsight.records import response_table
from destinations.gainsight.settings import GainsightSettings, QuotaLimits
from pipelines.errors import ExitCode, exit_code_for

from .conftest import ACCESS_KEY, AUTHOR, REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # tomllib is standard library from 3.11; tomli is the same parser for 3.10
    import tomli as tomllib

BASE = {"base_url": "https://acme.gainsightcloud.com", "access_key": ACCESS_KEY, "timeline_author_email": AUTHOR}
ENV = "DESTINATION__GAINSIGHT__"


def refused(**overrides: Any) -> str:
    """The message of the config error `overrides` (on top of BASE) cause; it must be exit 2."""
    with pytest.raises(GainsightSettingError) as caught:
        load_settings({**BASE, **overrides})
    assert exit_code_for(caught.value) == ExitCode.CONFIG_ERROR
    return str(caught.value)


def test_an_empty_field_map_entry_removes_that_field_from_what_is_pushed(monkeypatch):
    monkeypatch.setenv(f"{ENV}RESPONSE_FIELDS__CASE_LINK", "")
    settings = load_settings(BASE)

    assert "case_link" not in settings.response_fields
    assert dict(settings.response_fields) == {k: v for k, v in DEFAULT_RESPONSE_FIELDS.items() if k != "case_link"}
    outbox = pa.table({name: pa.array(["x"], pa.string()) for name in DEFAULT_RESPONSE_FIELDS if name != "responded_at"})
    outbox = outbox.append_column("responded_at", pa.array([None], pa.timestamp("us", tz="UTC")))
    record = response_table(outbox, pa.array(["1P02X"]), settings.response_fields)
    assert "CaseLink__gc" not in record.column_names and "Touchpoint__gc" in record.column_names


def test_the_upsert_key_cannot_be_removed(monkeypatch):
    monkeypatch.setenv(f"{ENV}RESPONSE_FIELDS__RESPONSE_ID", "")
    message = refused()
    assert "destination.gainsight.response_fields.response_id" in message and f"{ENV}RESPONSE_FIELDS__RESPONSE_ID" in message


def test_an_unknown_field_map_key_is_refused_with_the_closest_column():
    message = refused(response_fields={"segmnet": "Segment__gc"})
    assert "destination.gainsight.response_fields.segmnet" in message
    assert f"{ENV}RESPONSE_FIELDS__SEGMNET" in message
    assert "did you mean segment?" in message


def test_a_field_map_may_name_any_staged_column_the_push_reads():
    settings = load_settings({**BASE, "response_fields": {"account_name": "AccountName__gc"}})
    assert settings.response_fields["account_name"] == "AccountName__gc"
    assert settings.response_fields["score"] == "Score__gc"  # the rest keep their defaults


@pytest.mark.parametrize(
    ("word", "value"),
    [("true", True), ("On", True), ("yes", True), ("1", True), ("off", False), ("no", False), ("0", False), ("FALSE", False)],
)
def test_switches_take_the_documented_words(monkeypatch, word, value):
    monkeypatch.setenv(f"{ENV}CREATE_MISSING_COMPANIES", word)
    assert load_settings(BASE).create_missing_companies is value


@pytest.mark.parametrize("word", ["maybe", "y", "2"])
def test_any_other_switch_value_is_refused_naming_the_key_and_env_var(monkeypatch, word):
    monkeypatch.setenv(f"{ENV}RENAME_COMPANIES", word)
    message = refused()
    assert "destination.gainsight.rename_companies" in message and f"{ENV}RENAME_COMPANIES" in message
    assert repr(word) in message


def test_a_value_of_the_wrong_type_names_the_key_and_env_var(monkeypatch):
    monkeypatch.setenv(f"{ENV}QUOTAS__SYNC_PER_DAY", "lots")
    message = refused()
    assert "destination.gainsight.quotas.sync_per_day" in message and f"{ENV}QUOTAS__SYNC_PER_DAY" in message


def test_env_vars_and_overrides_reach_nested_settings(monkeypatch):
    monkeypatch.setenv(f"{ENV}QUOTAS__SYNC_PER_MINUTE", "40")
    monkeypatch.setenv(f"{ENV}RESPONSE_FIELDS__COMMENT", "Verbatim__gc")
    settings = load_settings({**BASE, "quotas": {"bulk_per_day": 3}})
    assert (settings.quotas.sync_per_minute, settings.quotas.bulk_per_day, settings.quotas.sync_per_day) == (40, 3, 50_000)
    assert settings.response_fields["comment"] == "Verbatim__gc"


def test_an_empty_optional_setting_is_not_set_and_an_empty_required_one_is_refused(monkeypatch):
    monkeypatch.setenv(f"{ENV}RESPONSE_BULK_JOB_ID", "")
    assert load_settings(BASE).response_bulk_job_id is None
    monkeypatch.setenv(f"{ENV}RESPONSE_OBJECT", "")
    assert f"{ENV}RESPONSE_OBJECT" in refused()


def test_a_missing_base_url_names_its_env_var(monkeypatch):
    monkeypatch.delenv(f"{ENV}BASE_URL", raising=False)
    with pytest.raises(GainsightSettingError, match=f"{ENV}BASE_URL"):
        load_settings({"access_key": ACCESS_KEY, "timeline_author_email": AUTHOR})


# --- one place for every default ------------------------------------------------------------------


def defaults() -> dict[str, Any]:
    """Every default of the definition by its dotted key (`people.writer`); quotas and response
    fields have their own checks."""
    return flatten(GainsightSettings(), skip=("quotas", "response_fields"))


def flatten(spec: BaseConfiguration, prefix: str = "", skip: tuple[str, ...] = ()) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in type(spec).get_resolvable_fields():
        if name in skip:
            continue
        value = getattr(spec, name)
        if isinstance(value, BaseConfiguration):
            values.update(flatten(value, f"{prefix}{name}."))
        else:
            values[f"{prefix}{name}"] = value
    return values


def same(written: Any, default: Any) -> bool:
    """A restated value equals the definition's default ("" and "—" mean unset)."""
    if default is None:
        return written in (None, "", "—", "empty")
    if isinstance(default, bool) or isinstance(written, bool):
        return str(written).lower() == str(default).lower()
    if isinstance(default, (int, float)):
        return float(str(written).replace(",", "")) == default
    return str(written) == default


def test_the_shipped_config_restates_the_defaults_of_the_definition():
    text = (REPO / ".dlt" / "config.toml").read_text(encoding="utf-8")
    shipped = tomllib.loads(text)
    section = shipped["destination"]["gainsight"]
    # Commented-out keys show the default an operator gets; examples of required values are skipped.
    section_text = text.split("[destination.gainsight]")[1].split("\n[")[0]
    expected = defaults()
    commented = {k: v for k, v in re.findall(r"^# (\w+) = (.+)$", section_text, re.MULTILINE) if k in expected}
    for key, value in {**{k: tomllib.loads(f"v = {v}")["v"] for k, v in commented.items()}, **section}.items():
        if isinstance(value, dict) or (key in commented and expected.get(key) is None):
            continue
        assert same(value, expected[key]), f"config.toml says {key} = {value!r}, the definition {expected[key]!r}"
    assert section["quotas"] == {name: getattr(QuotaLimits(), name) for name in QuotaLimits.get_resolvable_fields()}
    assert section["response_fields"] == DEFAULT_RESPONSE_FIELDS
    assert shipped["sources"]["customergauge"]["property_map"] == DEFAULT_PROPERTY_MAP


def test_the_readme_configuration_table_restates_the_defaults_of_the_definition():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("Gainsight (`[destination.gainsight]`")[1].split("\n\n")[1]
    expected = defaults()
    checked = 0
    for row in table.splitlines():
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([\w.<>]+)`", cells[0])
        if keys[0] == "quotas.sync_per_minute":
            numbers = [int(n.replace(",", "")) for n in cells[2].split(", ")]
            assert numbers == [getattr(QuotaLimits(), name) for name in QuotaLimits.get_resolvable_fields()]
        elif keys[0] == "response_fields.<column>":
            for column, field in re.findall(r"`(\w+)`→`(\w+)`", cells[3]):
                assert DEFAULT_RESPONSE_FIELDS[column] == field, column
        else:
            values = re.findall(r"`([^`]+)`", cells[2]) or [cells[2].split(" ")[0]] * len(keys)
            for key, value in zip(keys, values, strict=True):
                if value in expected:
                    continue  # a fallback to another setting ("bulk_access_key: `access_key`")
                assert same(value, expected[key]), f"README says {key} defaults to {value!r}, the definition {expected[key]!r}"
        checked += len(keys)
    assert checked >= len(expected)
