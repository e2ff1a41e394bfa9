"""Destination settings, read from `[destination.gainsight]` (env `DESTINATION__GAINSIGHT__*`).

Resolved once per run into a frozen value so every part (client, planner, steps, dry run) sees the
same numbers. Callers (tests, the demo) may pass overrides, exactly as they pass source options.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

import dlt

from connector_common.first_contact import Setting, credential_problem, url_problem

from .errors import GainsightSettingError

SECTION = "destination.gainsight"


def setting(key: str) -> Setting:
    """The config key and env var of one destination setting, for messages that say what to fix."""
    return Setting(f"{SECTION}.{key}", "DESTINATION__GAINSIGHT__" + key.upper().replace(".", "__"))

# Canonical staging column -> field of the response object (DESIGN §5). `response_id` is the key.
DEFAULT_RESPONSE_FIELDS: dict[str, str] = {
    "response_id": "ResponseId__gc",
    "score": "Score__gc",
    "category": "NpsCategory__gc",
    "comment": "Comment__gc",
    "email": "PersonEmail__gc",
    "survey_id": "SurveyId__gc",
    "touchpoint": "Touchpoint__gc",
    "channel": "Channel__gc",
    "language": "Language__gc",
    "country": "Country__gc",
    "segment": "Segment__gc",
    "product": "Product__gc",
    "case_link": "CaseLink__gc",
    "responded_at": "ResponseDatetime__gc",
    "company_gsid": "CompanyId__gc",
}

SECRET_KEYS = ("access_key", "client_id", "client_secret", "bulk_access_key")

# How an account finds its Company: by the key field only, or by the key, then by exact Name.
COMPANY_MATCH_MODES = ("key", "key_then_name")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass(frozen=True)
class QuotaLimits:
    """Gainsight's documented limits (reference §5); lower them if your contract is smaller."""

    sync_per_minute: int = 100
    sync_per_day: int = 50_000
    bulk_per_hour: int = 10
    bulk_per_day: int = 100
    timeline_per_minute: int = 200

    def windows(self) -> dict[str, list[tuple[str, int, int]]]:
        """family -> [(window name, window seconds, calls allowed)]."""
        return {
            "sync": [("minute", 60, self.sync_per_minute), ("day", 86_400, self.sync_per_day)],
            "bulk": [("hour", 3_600, self.bulk_per_hour), ("day", 86_400, self.bulk_per_day)],
            "timeline": [("minute", 60, self.timeline_per_minute)],
        }


@dataclass(frozen=True)
class GainsightSettings:
    base_url: str
    access_key: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    bulk_access_key: str | None = None  # the Bulk connection's key; default: access_key
    response_object: str = "CG_NPS_Response__gc"
    response_bulk_job_id: str | None = None
    bulk_min_rows: int = 500  # smaller outboxes go through the sync API
    bulk_max_bytes: int = 79_999_500  # production scripts split files below this
    bulk_poll_timeout_seconds: float = 900.0
    bulk_poll_interval_seconds: float = 2.0
    company_object: str = "Company"
    company_key_field: str = "CG_Account_Id__gc"
    # A real tenant's Companies come from its CRM: writing to them is opt-in (README "Companies").
    company_match: str = "key"
    create_missing_companies: bool = False
    rename_companies: bool = False
    update_person_names: bool = False
    timeline_author_email: str | None = None
    timeline_activity_type: str = "Survey Response"
    timeline_max_age_days: int = 30  # 0 turns Timeline entries off
    timeline_records_per_call: int = 50
    max_attempts: int = 5  # per dead-lettered record, across runs
    request_attempts: int = 5  # per HTTP call, for 429/5xx/connection errors
    retry_backoff_seconds: float = 1.0
    max_rate_limit_wait_seconds: float = 65.0
    timeout_seconds: float = 60.0
    quotas: QuotaLimits = field(default_factory=QuotaLimits)
    response_fields: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_RESPONSE_FIELDS))

    @property
    def response_key_field(self) -> str:
        return self.response_fields["response_id"]

    @property
    def uses_oauth(self) -> bool:
        return bool(self.client_id and self.client_secret)

    @property
    def bulk_key(self) -> str | None:
        return self.bulk_access_key or self.access_key

    @property
    def timeline_enabled(self) -> bool:
        return self.timeline_max_age_days > 0

    def setting_for(self, gainsight_name: str) -> Setting | None:
        """The setting that put an object or field name into a request, to name it when Gainsight
        says the name does not exist (case-insensitive: Gainsight's own spelling varies)."""
        wanted = gainsight_name.lower()
        named = {
            "response_object": self.response_object,
            "company_object": self.company_object,
            "company_key_field": self.company_key_field,
            **{f"response_fields.{column}": name for column, name in self.response_fields.items()},
        }
        return next((setting(key) for key, name in named.items() if name.lower() == wanted), None)

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction filter."""
        return [value for value in (getattr(self, key) for key in SECRET_KEYS) if value]


_QUOTA_KEYS = {f.name for f in fields(QuotaLimits)}


def load_settings(overrides: Mapping[str, Any] | None = None) -> GainsightSettings:
    """Resolve settings from dlt config/secrets (and env), then apply `overrides`; validate."""
    values: dict[str, Any] = {}
    for spec in fields(GainsightSettings):
        if spec.name in ("quotas", "response_fields"):
            continue
        getter = dlt.secrets.get if spec.name in SECRET_KEYS else dlt.config.get
        value = getter(f"{SECTION}.{spec.name}")
        if value not in (None, ""):
            values[spec.name] = value
    quotas = {key: dlt.config.get(f"{SECTION}.quotas.{key}") for key in _QUOTA_KEYS}
    fields_map = dict(DEFAULT_RESPONSE_FIELDS)
    configured = dlt.config.get(f"{SECTION}.response_fields")
    if isinstance(configured, Mapping):
        fields_map.update({str(k): str(v) for k, v in configured.items() if v})
    # Read key by key too: dlt returns the TOML table whole and would ignore an env var such as
    # DESTINATION__GAINSIGHT__RESPONSE_FIELDS__COMMENT.
    for column in DEFAULT_RESPONSE_FIELDS:
        value = dlt.config.get(f"{SECTION}.response_fields.{column}")
        if value:
            fields_map[column] = str(value)
    overrides = dict(overrides or {})
    quotas.update(overrides.pop("quotas", {}) or {})
    fields_map.update(overrides.pop("response_fields", {}) or {})
    values.update({k: v for k, v in overrides.items()})
    if "base_url" not in values:
        raise GainsightSettingError(
            f"{SECTION}.base_url is not set: your tenant URL, e.g. https://acme.gainsightcloud.com "
            "(set it in .dlt/config.toml or export DESTINATION__GAINSIGHT__BASE_URL)"
        )
    try:
        limits = QuotaLimits(**{k: int(v) for k, v in quotas.items() if v is not None})
        settings = GainsightSettings(
            quotas=limits, response_fields=fields_map, **{k: _coerce(k, v) for k, v in values.items()}
        )
    except GainsightSettingError:
        raise
    except (TypeError, ValueError) as exc:
        raise GainsightSettingError(f"invalid {SECTION} setting: {exc}") from None
    return validate(settings)


def _coerce(name: str, value: Any) -> Any:
    """TOML and env values arrive as str; give each field its declared type."""
    default = next(f for f in fields(GainsightSettings) if f.name == name).default
    if value is None:
        return value
    if isinstance(default, bool):
        return _flag(name, value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return str(value)


def _flag(name: str, value: Any) -> bool:
    """A switch from TOML (a bool) or env (text); anything else is refused, never read as false."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise GainsightSettingError(
        f"{SECTION}.{name} (env DESTINATION__GAINSIGHT__{name.upper()}) must be true or false (got {value!r})"
    )


def validate(settings: GainsightSettings) -> GainsightSettings:
    """Refuse combinations that would fail later, mid-push, with a less helpful message."""
    env = "DESTINATION__GAINSIGHT__"
    problems = [url_problem(settings.base_url, setting("base_url"))]
    problems += [credential_problem(getattr(settings, key), setting(key)) for key in SECRET_KEYS]
    found = [problem for problem in problems if problem]
    if found:
        raise GainsightSettingError("; ".join(found))
    if not (settings.access_key or settings.uses_oauth):
        raise GainsightSettingError(
            f"no Gainsight credentials: set {env}ACCESS_KEY, or {env}CLIENT_ID and {env}CLIENT_SECRET "
            "for M2M OAuth (in .dlt/secrets.toml under [destination.gainsight])"
        )
    if bool(settings.client_id) != bool(settings.client_secret):
        raise GainsightSettingError(f"M2M OAuth needs both {env}CLIENT_ID and {env}CLIENT_SECRET")
    if settings.response_bulk_job_id and not settings.bulk_key:
        raise GainsightSettingError(
            f"the Bulk job {settings.response_bulk_job_id!r} needs the Bulk connection's access key: "
            f"set {env}BULK_ACCESS_KEY (or {env}ACCESS_KEY)"
        )
    if settings.timeline_enabled and not settings.timeline_author_email:
        raise GainsightSettingError(
            f"Timeline entries need an author: set {env}TIMELINE_AUTHOR_EMAIL to the e-mail of an active "
            f"Gainsight user, or set {env}TIMELINE_MAX_AGE_DAYS = 0 to turn Timeline entries off"
        )
    if "response_id" not in settings.response_fields:
        raise GainsightSettingError(f"{SECTION}.response_fields must map response_id (the upsert key)")
    if settings.company_match not in COMPANY_MATCH_MODES:
        raise GainsightSettingError(
            f"{SECTION}.company_match (env {env}COMPANY_MATCH) must be one of {', '.join(COMPANY_MATCH_MODES)} "
            f"(got {settings.company_match!r})"
        )
    if not 1 <= settings.timeline_records_per_call <= 50:
        raise GainsightSettingError(f"{SECTION}.timeline_records_per_call must be 1..50")
    return replace(settings, base_url=settings.base_url.rstrip("/"))
