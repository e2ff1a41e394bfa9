"""The registry of known config keys: derived from the settings definitions, strict, and helpful."""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path

from connector_common.schema import MAPPABLE
from destinations.gainsight.settings import GainsightSettings, QuotaLimits
from pipelines.config_keys import known_keys, misplaced_secrets, unknown_keys
from pipelines.errors import ExitCode
from pipelines.settings import RunSettings

from .cli import cli_env, run_main
from .conftest import REPO


def test_shipped_config_and_secrets_example_hold_only_known_keys(tmp_path: Path):
    shutil.copy(REPO / ".dlt" / "config.toml", tmp_path / "config.toml")
    shutil.copy(REPO / ".dlt" / "secrets.toml.example", tmp_path / "secrets.toml")
    assert unknown_keys(tmp_path, {}) == []
    assert misplaced_secrets(tmp_path) == []


def test_a_secret_in_config_toml_stops_every_verb_naming_where_it_belongs(project: Path):
    """dlt reads secrets from secrets.toml and the env only: one left in config.toml is refused, not ignored."""
    config = project / ".dlt" / "config.toml"
    text = config.read_text(encoding="utf-8")
    for section, line in (("serve", "webhook_secret = 'hush-hush-hush-hush-1'"), ("pii", "hash_salt = 'pepper-pepper-2'")):
        text = text.replace(f"\n[nps_to_gainsight.{section}]\n", f"\n[nps_to_gainsight.{section}]\n{line}\n")
    config.write_text(text, encoding="utf-8")
    result = run_main("status", cwd=project, env=cli_env(project=project))
    assert result.returncode == ExitCode.CONFIG_ERROR
    for key, env in (
        ("nps_to_gainsight.serve.webhook_secret", "NPS_TO_GAINSIGHT__SERVE__WEBHOOK_SECRET"),
        ("nps_to_gainsight.pii.hash_salt", "NPS_TO_GAINSIGHT__PII__HASH_SALT"),
    ):
        assert f"secret found in .dlt/config.toml: {key}: move it to .dlt/secrets.toml or env {env}" in result.stderr
    assert "hush-hush" not in result.stderr + result.stdout and "pepper" not in result.stderr + result.stdout


def test_settings_fields_are_the_known_keys():
    known = known_keys()
    gainsight = known["destination.gainsight"]
    assert set(GainsightSettings.get_resolvable_fields()) <= set(gainsight)
    assert set(gainsight["quotas"]) == set(QuotaLimits.get_resolvable_fields())  # type: ignore[arg-type]
    assert set(gainsight["response_fields"]) == set(MAPPABLE)  # type: ignore[arg-type]
    assert {"response_id", "comment", "company_gsid", "account_name"} <= set(MAPPABLE)
    assert not any(key.startswith("__") for key in gainsight)
    assert {f.name for f in fields(RunSettings)} <= set(known["nps_to_gainsight"])
    assert {"lookback_days", "client_secret", "property_map"} <= set(known["sources.customergauge"])
    assert "report" not in known["sources.customergauge"]  # passed by the command, not configuration


def test_unknown_keys_suggest_the_closest_known_one(tmp_path: Path):
    (tmp_path / "config.toml").write_text(
        "[sources.customergauge]\nlookback_day = 3\n"
        "[sources.customergauge.property_map]\naccount = 'Account Number'\n"
        "[destination.gainsight]\nresponse_bulk_job = 'x'\nlookback_days = 2\n"
        "[destination.gainsight.quotas]\nsync_per_minit = 5\n"
        "[runtime]\nanything_dlt_reads = 1\n"
    )
    environ = {
        "SOURCES__CUSTOMERGAUGE__LOOKBAK_DAYS": "7",
        "SOURCES__CUSTOMERGAUGE__PROPERTY_MAP__ACCOUNT_ID": "Customer No",
        "NPS_TO_GAINSIGHT__DATASET": "x",
        "DESTINATION__GAINSIGHT__RESPONSE_FIELDS__COMMENT": "Verbatim__gc",  # known: read entry by entry
        "RUNTIME__LOG_LEVEL": "INFO",  # dlt's own section: left to dlt
    }
    found = {problem.name: problem.suggestion for problem in unknown_keys(tmp_path, environ)}
    assert found == {
        "sources.customergauge.lookback_day": "sources.customergauge.lookback_days",
        "sources.customergauge.property_map.account": "sources.customergauge.property_map.account_id",
        "destination.gainsight.response_bulk_job": "destination.gainsight.response_bulk_job_id",
        "destination.gainsight.lookback_days": "sources.customergauge.lookback_days",
        "destination.gainsight.quotas.sync_per_minit": "destination.gainsight.quotas.sync_per_minute",
        "SOURCES__CUSTOMERGAUGE__LOOKBAK_DAYS": "SOURCES__CUSTOMERGAUGE__LOOKBACK_DAYS",
        "SOURCES__CUSTOMERGAUGE__PROPERTY_MAP__ACCOUNT_ID": (
            'SOURCES__CUSTOMERGAUGE__PROPERTY_MAP set to a JSON object such as {"account_id": "Customer No"}'
        ),
        "NPS_TO_GAINSIGHT__DATASET": "NPS_TO_GAINSIGHT__DATASET_NAME",
    }
