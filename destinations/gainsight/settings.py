"""Destination settings, read from `[destination.gainsight]` (env `DESTINATION__GAINSIGHT__*`).

The classes below are dlt configspecs and the ONE definition of every key, type and default: dlt
resolves them (`resolve_configuration`) from the environment, `.dlt/secrets.toml` and
`.dlt/config.toml`; the known-key registry (`pipelines/config_keys.py`) is derived from them; the
shipped config.toml and README restate the defaults and a test holds them to these.
Resolved once per run, so every part (client, planner, steps, dry run) sees the same numbers.
Callers (tests, the demo) may pass overrides, exactly as they pass source options.

Rules on top of dlt's resolution, each failing with the key and its env var:
- an empty value means "not set" for optional settings; for a `response_fields` entry it removes
  the field from what is pushed (`response_id`, the upsert key, cannot be removed);
- a `response_fields` key must be a canonical column (`connector_common/schema.py`);
- a switch takes only true/false, 1/0, yes/no, on/off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import dlt
from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigurationException,
    ConfigValueCannotBeCoercedException,
)
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.typing import TSecretStrValue

from connector_common import schema
from connector_common.first_contact import Setting, credential_problem, url_problem
from connector_common.pii import KEEP, Rules

from .errors import GainsightSettingError

SECTION = "destination.gainsight"
SECTIONS = tuple(SECTION.split("."))
ENV = "DESTINATION__GAINSIGHT__"


def setting(key: str) -> Setting:
    """The config key and env var of one destination setting, for messages that say what to fix."""
    return Setting(f"{SECTION}.{key}", ENV + key.upper().replace(".", "__"))


# Canonical staging column -> field of the response object; derived from the schema (DESIGN §5).
DEFAULT_RESPONSE_FIELDS: Mapping[str, str] = schema.DEFAULT_RESPONSE_FIELDS

SECRET_KEYS = ("access_key", "client_id", "client_secret", "bulk_access_key")
# How an account finds its Company: by the key field only, or by the key, then by exact Name.
COMPANY_MATCH_MODES = ("key", "key_then_name")
FLAGS = ("create_missing_companies", "rename_companies", "update_person_names")
FLAG_WORDS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


@configspec
class QuotaLimits(BaseConfiguration):
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


PEOPLE_WRITERS = ("single", "bulk", "auto")
PEOPLE_BULK_BODIES = ("list", "records")
PEOPLE_BULK_QUOTA_FAMILIES = ("bulk", "sync")


@configspec
class PeopleSettings(BaseConfiguration):
    """`[destination.gainsight.people]`: how persons are written (reference §4.6, README "People").

    `writer`: "single" = the People API, one person per call (sync quota); "bulk" = the async bulk
    People API, ≤50 persons per call, falling back to single upserts on a tenant without it (404 /
    405, remembered); "auto" = bulk calls while their quota window has room, single upserts for the
    rest. The async API's status path, body wrapper and quota family are not documented: each is a
    setting, defaulting to the conservative reading.
    """

    writer: str = "single"
    bulk_path: str = "/v1/peoplemgmt/v1.0/people/async"
    # `{status_id}` is replaced; on 404/405 the other plausible paths are tried and the one that
    # answers is remembered.
    bulk_status_path: str = "/v1/peoplemgmt/v1.0/people/async/status/{status_id}"
    bulk_body: str = "list"  # "list": a bare JSON array of persons; "records": {"records": [...]}
    bulk_quota_family: str = "bulk"  # the quota the async upserts count against: "bulk" (10/hour) or "sync"


@configspec
class _FieldMap(BaseConfiguration):
    """The response object's field map: canonical column -> Gainsight field.

    One optional setting per mappable column, so dlt reads each from TOML or its own env var. As a
    mapping it holds only the mapped columns: an empty value removes a field, and the push reads
    `settings.response_fields` as a plain `Mapping[str, str]`.
    """

    def __getitem__(self, column: str) -> Any:
        value = super().__getitem__(column)
        if not value:
            raise KeyError(column)
        return value

    def __iter__(self) -> Iterator[str]:
        return (column for column in super().__iter__() if getattr(self, column))

    def __len__(self) -> int:
        return sum(1 for _ in self)


# One field per column the schema lets the map name, defaulting to the schema's field.
ResponseFields: type[_FieldMap] = configspec(
    type(
        "ResponseFields",
        (_FieldMap,),
        {
            "__module__": __name__,
            "__annotations__": {name: str | None for name in schema.MAPPABLE},
            **{name: column.field for name, column in schema.MAPPABLE.items()},
        },
    )
)


@configspec
class GainsightSettings(BaseConfiguration):
    """`[destination.gainsight]`. Like every dlt configspec, a key is looked up most specific first
    (`DESTINATION__GAINSIGHT__MAX_ATTEMPTS`, then `DESTINATION__MAX_ATTEMPTS`, then `MAX_ATTEMPTS`)."""

    base_url: str = None  # type: ignore[assignment]  # required: dlt reports it missing
    access_key: TSecretStrValue | None = None
    client_id: TSecretStrValue | None = None
    client_secret: TSecretStrValue | None = None
    bulk_access_key: TSecretStrValue | None = None  # the Bulk connection's key; default: access_key
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
    # Switches are typed Any for dlt, which would read "y"/"t" as true and refuse "on"; they are
    # parsed strictly (FLAG_WORDS) once resolved.
    create_missing_companies: Any = False
    rename_companies: Any = False
    update_person_names: Any = False
    timeline_author_email: str | None = None
    timeline_activity_type: str = "Survey Response"
    timeline_max_age_days: int = 30  # 0 turns Timeline entries off
    timeline_records_per_call: int = 50
    max_attempts: int = 5  # per dead-lettered record, across runs
    request_attempts: int = 5  # per HTTP call, for 429/5xx/connection errors
    retry_backoff_seconds: float = 1.0
    max_rate_limit_wait_seconds: float = 65.0
    timeout_seconds: float = 60.0
    quotas: QuotaLimits = QuotaLimits()
    people: PeopleSettings = PeopleSettings()
    response_fields: _FieldMap = ResponseFields()
    # Not a key of this section (dlt resolves no dunder field): what Gainsight may receive of e-mails
    # and comments, from [nps_to_gainsight.pii] (connector_common/pii.py); the command sets it.
    __pii__: Rules = dataclasses.field(default=KEEP, init=False, repr=False, compare=False)

    @property
    def pii(self) -> Rules:
        """The push's PII rules (`push_email`, `push_comment`, the salt)."""
        return self.__pii__

    def with_pii(self, rules: Rules) -> GainsightSettings:
        self.__pii__ = rules
        return self

    @property
    def people_enabled(self) -> bool:
        """People upserts need the address in clear: Gainsight resolves a Person by its Email."""
        return self.__pii__.email == "keep"

    @property
    def response_key_field(self) -> str:
        return str(self.response_fields[schema.RESPONSE_KEY])

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

    def on_resolved(self) -> None:
        """dlt calls this once every value is read: normalise, then refuse what cannot work."""
        for name, hint in self.get_resolvable_fields().items():
            if getattr(self, name) == "" and hint is not str:
                setattr(self, name, None)  # an empty optional setting is not set
        for name in FLAGS:
            value = getattr(self, name)
            setattr(self, name, _flag(name, value) if value is not None else self.__dataclass_fields__[name].default)
        if self.base_url:
            self.base_url = self.base_url.rstrip("/")
        validate(self)


def load_settings(overrides: Mapping[str, Any] | None = None) -> GainsightSettings:
    """Resolve settings from dlt config/secrets (and env), with `overrides` winning; validate."""
    explicit = {key: value for key, value in (overrides or {}).items() if value is not None}
    _check_field_map_keys("overrides", explicit.get("response_fields") or {})
    configured: object = dlt.config.get(f"{SECTION}.response_fields")
    if isinstance(configured, Mapping):
        _check_field_map_keys("the configuration", configured)
    try:
        return resolve_configuration(GainsightSettings(), sections=SECTIONS, explicit_value=explicit)
    except ConfigFieldMissingException as exc:
        raise GainsightSettingError(
            f"{setting(exc.fields[0])} is not set: your tenant URL, e.g. https://acme.gainsightcloud.com "
            "(set it in .dlt/config.toml)"
            if exc.fields[0] == "base_url"
            else "; ".join(f"{setting(name)} is not set" for name in exc.fields)
        ) from None
    except ConfigValueCannotBeCoercedException as exc:
        raise GainsightSettingError(
            f"{setting(_key_of(exc.field_name))} must be {_type_name(exc.hint)} (got {exc.field_value!r})"
        ) from None
    except ConfigurationException as exc:  # a secret in config.toml, say: dlt names the key
        raise GainsightSettingError(f"invalid {SECTION} setting: {exc}") from None


def _check_field_map_keys(where: str, configured: Mapping[str, Any]) -> None:
    """A field map naming an unknown column would fail the push with a KeyError: refuse it now."""
    for column in configured:
        if column not in schema.MAPPABLE:
            near = schema.closest(str(column), schema.MAPPABLE)
            hint = f": did you mean {near}?" if near else f"; known columns: {', '.join(schema.MAPPABLE)}"
            raise GainsightSettingError(
                f"{setting(f'response_fields.{column}')} in {where} is not a canonical column{hint} "
                "(README \"Adding a property\")"
            )


def _key_of(name: str) -> str:
    """dlt names only the field that failed; the spec tree says which section holds it."""
    if name in GainsightSettings.get_resolvable_fields():
        return name
    if name in QuotaLimits.get_resolvable_fields():
        return f"quotas.{name}"
    if name in PeopleSettings.get_resolvable_fields():
        return f"people.{name}"
    return f"response_fields.{name}"


def _type_name(hint: Any) -> str:
    names = {int: "a whole number", float: "a number", str: "text"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _flag(name: str, value: Any) -> bool:
    """A switch from TOML (a bool) or env (text); anything else is refused, never read as false."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in FLAG_WORDS:
        return FLAG_WORDS[text]
    raise GainsightSettingError(f"{setting(name)} must be true or false (also 1/0, yes/no, on/off; got {value!r})")


def validate(settings: GainsightSettings) -> GainsightSettings:
    """Refuse combinations that would fail later, mid-push, with a less helpful message."""
    problems = [url_problem(settings.base_url, setting("base_url"))]
    problems += [credential_problem(getattr(settings, key), setting(key)) for key in SECRET_KEYS]
    found = [problem for problem in problems if problem]
    if found:
        raise GainsightSettingError("; ".join(found))
    if not (settings.access_key or settings.uses_oauth):
        raise GainsightSettingError(
            f"no Gainsight credentials: set {ENV}ACCESS_KEY, or {ENV}CLIENT_ID and {ENV}CLIENT_SECRET "
            "for M2M OAuth (in .dlt/secrets.toml under [destination.gainsight])"
        )
    if bool(settings.client_id) != bool(settings.client_secret):
        raise GainsightSettingError(f"M2M OAuth needs both {ENV}CLIENT_ID and {ENV}CLIENT_SECRET")
    if settings.response_bulk_job_id and not settings.bulk_key:
        raise GainsightSettingError(
            f"the Bulk job {settings.response_bulk_job_id!r} needs the Bulk connection's access key: "
            f"set {ENV}BULK_ACCESS_KEY (or {ENV}ACCESS_KEY)"
        )
    if settings.timeline_enabled and not settings.timeline_author_email:
        raise GainsightSettingError(
            f"Timeline entries need an author: set {ENV}TIMELINE_AUTHOR_EMAIL to the e-mail of an active "
            f"Gainsight user, or set {ENV}TIMELINE_MAX_AGE_DAYS = 0 to turn Timeline entries off"
        )
    if schema.RESPONSE_KEY not in settings.response_fields:
        raise GainsightSettingError(
            f"{setting('response_fields.response_id')} cannot be empty: it names the response object's upsert key"
        )
    for name in ("response_object", "company_object", "company_key_field", "timeline_activity_type"):
        if not getattr(settings, name):
            raise GainsightSettingError(f"{setting(name)} cannot be empty")
    if settings.company_match not in COMPANY_MATCH_MODES:
        raise GainsightSettingError(
            f"{setting('company_match')} must be one of {', '.join(COMPANY_MATCH_MODES)} "
            f"(got {settings.company_match!r})"
        )
    people = settings.people
    for key, value, allowed in (
        ("writer", people.writer, PEOPLE_WRITERS),
        ("bulk_body", people.bulk_body, PEOPLE_BULK_BODIES),
        ("bulk_quota_family", people.bulk_quota_family, PEOPLE_BULK_QUOTA_FAMILIES),
    ):
        if value not in allowed:
            raise GainsightSettingError(f"{setting('people.' + key)} must be one of {', '.join(allowed)} (got {value!r})")
    if not people.bulk_path.startswith("/") or "{status_id}" not in people.bulk_status_path:
        raise GainsightSettingError(
            f"{setting('people.bulk_path')} must be a path starting with / and "
            f"{setting('people.bulk_status_path')} a path holding {{status_id}}"
        )
    if not 1 <= settings.timeline_records_per_call <= 50:
        raise GainsightSettingError(f"{setting('timeline_records_per_call')} must be 1..50")
    return settings
