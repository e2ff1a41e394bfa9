"""Where the command finds its configuration and its DuckDB file.

dlt reads `.dlt/config.toml` and `.dlt/secrets.toml` from the current directory. A scheduled job
started from the wrong directory would otherwise run on built-in defaults against an empty
DuckDB file, re-extract everything and look healthy; so the command refuses to start without its
config file and says where it looked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException

from connector_common import pii
from destinations.gainsight.store import SCHEMA as LEDGER_SCHEMA

from .errors import ConfigError
from .serve.spool import SCHEMA as SPOOL_SCHEMA
from .staging import DEFAULT_MEMORY_LIMIT

SECTION = "nps_to_gainsight"
DEFAULT_MAX_RUN_MINUTES = 50.0
# Keys of [nps_to_gainsight] read outside RunSettings. RunSettings' fields are known keys already;
# the run and `check` refuse any other key in the section (pipelines/config_keys.py).
OTHER_KEYS: tuple[str, ...] = ("log_format",)  # read before logging is set up


@dataclass(frozen=True)
class ExportSettings:
    """`[nps_to_gainsight.export]`: the survey-import CSV of `export-csv` (README "Survey CSV export")."""

    # Prefix cells a spreadsheet would run as a formula with an apostrophe (pipelines/export/csv_file.py).
    formula_guard: bool = True


@dataclass(frozen=True)
class RunSettings:
    """Settings of the command itself (the source reads its own from `[sources.customergauge]`)."""

    duckdb_path: Path
    pipeline_name: str
    dataset_name: str
    pipelines_dir: str
    duckdb_memory_limit: str = DEFAULT_MEMORY_LIMIT
    stage_only: bool = False  # stage into DuckDB, do not push to Gainsight
    push_only: bool = False  # push what is staged, do not call CustomerGauge
    warnings_as_success: bool = False  # exit 0 instead of 10/11/12; run_history keeps the real outcome
    export: ExportSettings = field(default_factory=ExportSettings)
    pii: pii.PiiSettings = field(default_factory=pii.PiiSettings)  # [nps_to_gainsight.pii]
    # The run stops calling Gainsight this long after it started (stage included) and defers the
    # rest (exit 12): 50 keeps an hourly schedule from overlapping; a backfill can be given more.
    max_run_minutes: float = DEFAULT_MAX_RUN_MINUTES


def require_project_config() -> Path:
    """The `.dlt` folder dlt will read, or a ConfigError naming where it looked."""
    settings_dir = Path(dlt.current.run_context().settings_dir).resolve()
    config_file = settings_dir / "config.toml"
    if not config_file.is_file():
        raise ConfigError(
            f"no configuration found at {config_file}: run the command from the repository root "
            "(the folder holding .dlt/config.toml), e.g. `cd /path/to/repo && python "
            "pipelines/nps_to_gainsight.py`"
        )
    return settings_dir


def load_run_settings(with_pii: bool = True) -> RunSettings:
    """Resolve the command's settings from config.toml and environment overrides (`with_pii=False`:
    the PII defaults, for `check` to read the staging file past an invalid [pii] setting)."""
    credentials: object = dlt.config.get("destination.duckdb.credentials")
    if not credentials or not isinstance(credentials, str):
        raise ConfigError(
            "destination.duckdb.credentials (the DuckDB file path) is not set: add it under "
            "[destination.duckdb] in .dlt/config.toml or set DESTINATION__DUCKDB__CREDENTIALS"
        )
    path = Path(credentials.removeprefix("duckdb:///")).expanduser()
    duckdb_path = path if path.is_absolute() else Path.cwd() / path
    settings = RunSettings(
        duckdb_path=duckdb_path,
        pipeline_name=str(dlt.config.get(f"{SECTION}.pipeline_name") or "nps_to_gainsight"),
        dataset_name=str(dlt.config.get(f"{SECTION}.dataset_name") or "nps"),
        pipelines_dir=dlt.config.get(f"{SECTION}.pipelines_dir") or str(default_pipelines_dir(duckdb_path)),
        duckdb_memory_limit=str(dlt.config.get(f"{SECTION}.duckdb_memory_limit") or DEFAULT_MEMORY_LIMIT),
        warnings_as_success=config_flag(f"{SECTION}.warnings_as_success"),
        export=ExportSettings(formula_guard=config_flag(f"{SECTION}.export.formula_guard", default=True)),
        pii=load_pii_settings() if with_pii else pii.PiiSettings(),
        max_run_minutes=run_minutes(dlt.config.get(f"{SECTION}.max_run_minutes"), f"{SECTION}.max_run_minutes"),
    )
    check_names(settings)
    return settings


PII_SECTION = f"{SECTION}.pii"
PII_SECRET = f"{PII_SECTION}.hash_salt"


def load_pii_settings() -> pii.PiiSettings:
    """`[nps_to_gainsight.pii]` (env NPS_TO_GAINSIGHT__PII__*), strictly: a bad value is a config
    error naming the key and its env var. The salt is a secret: read from secrets.toml or the env."""
    values: dict[str, object] = {key: dlt.config.get(f"{PII_SECTION}.{key}") for key in _PII_KEYS}
    values["hash_salt"] = dlt.secrets.get(PII_SECRET)
    try:
        return pii.parse(values)
    except pii.InvalidPiiSetting as exc:
        raise ConfigError(f"{PII_SECTION}.{exc.key}: {exc} (env {env_name(PII_SECTION, exc.key)})") from None


_PII_KEYS = tuple(name for name in pii.PiiSettings.__dataclass_fields__ if name != "hash_salt")


def run_minutes(value: object, name: str) -> float:
    """A run-time budget in minutes (a positive number); unset: the default."""
    if value is None or value == "":
        return DEFAULT_MAX_RUN_MINUTES
    try:
        minutes = float(str(value))
    except ValueError:
        minutes = 0.0
    if not minutes > 0 or minutes == float("inf"):
        raise ConfigError(f"{name} must be a positive number of minutes, got {value!r} (env {env_name(*name.split('.'))})")
    return minutes


def default_pipelines_dir(duckdb_path: Path) -> Path:
    """dlt's working folder next to the DuckDB file it belongs to: `<file stem>.pipelines/`.

    dlt's own default (~/.dlt/pipelines) is keyed by pipeline name only, so two checkouts on one
    host would share, and load each other's, pending packages. Keyed by the file, each staging file
    has its own; deleting it stays safe (the cursor and schema are restored from the file).
    """
    return duckdb_path.with_name(f"{duckdb_path.stem}.pipelines")


def check_names(settings: RunSettings) -> None:
    """Refuse a DuckDB file named like a schema inside it.

    DuckDB names the file's catalog after its stem, so a schema of the same name makes every
    reference ambiguous to its binder and each run fails in the load step. The schemas in the file
    are the dataset, dlt's merge staging copy of it (`<dataset>_staging`), the Gainsight ledger and
    serve's spool (`webhooks`).
    """
    stem = settings.duckdb_path.stem
    schemas = {
        settings.dataset_name: "the dataset",
        f"{settings.dataset_name}_staging": "dlt's merge staging schema of the dataset",
        LEDGER_SCHEMA: "the Gainsight ledger schema",
        SPOOL_SCHEMA: "serve's webhook spool schema",
    }
    if stem in schemas:
        raise ConfigError(
            f"the DuckDB file {settings.duckdb_path.name} is named like {schemas[stem]} {stem!r} inside "
            "it, which makes DuckDB references ambiguous: rename the file (destination.duckdb.credentials, "
            "env DESTINATION__DUCKDB__CREDENTIALS, e.g. nps_to_gainsight.duckdb) or the dataset "
            "(nps_to_gainsight.dataset_name, env NPS_TO_GAINSIGHT__DATASET_NAME)"
        )


def describe_missing(exc: ConfigFieldMissingException, section: str) -> ConfigError:
    """Turn dlt's lookup trace into one line per missing key with its TOML and env names."""
    lines = [
        f"  {section}.{field}: set it under [{section}] in .dlt/"
        f"{'secrets' if _is_secret(field) else 'config'}.toml or export {env_name(section, field)}"
        for field in exc.fields
    ]
    return ConfigError("missing configuration:\n" + "\n".join(lines))


def log_format_setting() -> str:
    """`nps_to_gainsight.log_format` (env NPS_TO_GAINSIGHT__LOG_FORMAT): text (default) or json."""
    value = str(dlt.config.get(f"{SECTION}.log_format") or "text").strip().lower()
    if value not in ("text", "json"):
        raise ConfigError(
            f"{SECTION}.log_format must be text or json, got {value!r} (env {env_name(SECTION, 'log_format')})"
        )
    return value


def config_flag(key: str, default: bool = False) -> bool:
    """A true/false setting; TOML gives a bool, env vars a string; `default` when it is not set."""
    value: object = dlt.config.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no", ""):
            section, _, name = key.rpartition(".")
            raise ConfigError(f"{key} must be true or false, got {value!r} (env {env_name(section, name)})")
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def env_name(section: str, key: str) -> str:
    """dlt's environment form of a config key, e.g. SOURCES__CUSTOMERGAUGE__CLIENT_ID."""
    return "__".join(part.upper() for part in [*section.split("."), key])


def secret_values(keys: Iterable[str]) -> list[str]:
    """Values of secrets, so the log filter can mask them wherever they would appear."""
    values = []
    for key in keys:
        try:
            value: object = dlt.secrets.get(key)
        except Exception:  # a missing secret is reported by the source itself
            value = None
        if isinstance(value, str):
            values.append(value)
    return values


def _is_secret(field: str) -> bool:
    return any(word in field for word in ("secret", "password", "token", "key", "client_id"))
