"""Read-only checks of a Gainsight tenant against the destination settings, for `check`.

Every check here uses a documented read (metadata describe, query; reference §4.4, §4.10) and
writes nothing. What no documented read can tell (whether an activity type is configured, whether
a Bulk job id exists) is reported as unchecked, with the reason and what will tell instead.
Gainsight's errors (refused key, unknown object, unreachable host) propagate to the caller, which
turns them into a failed line and an exit code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from connector_common.first_contact import Setting
from connector_common.schema import MAPPABLE, TEXT

from .client import GainsightClient, field_length
from .settings import GainsightSettings, setting

# What each canonical column may land in, and the shortest length that holds every value the push
# sends (the push cuts text to the field's length, which must never cut a key or an id).
EXPECTED: Mapping[str, tuple[frozenset[str], int]] = {
    name: (column.accepts, column.min_length) for name, column in MAPPABLE.items()
}
# GsUser's active flag, where the tenant's metadata has one (the reference documents no name).
ACTIVE_FLAGS = ("IsActiveUser", "IsActive")


@dataclass(frozen=True)
class Finding:
    """One line of `check`: passed (True), failed (False) or unchecked (None)."""

    passed: bool | None
    text: str
    fix: Setting | None = None  # the setting to change when it failed


def response_object(client: GainsightClient, settings: GainsightSettings) -> list[Finding]:
    """The response object exists and every mapped field exists with a compatible type and length."""
    obj = settings.response_object
    described = {spec["fieldName"]: spec for spec in client.describe(obj)}
    findings = [Finding(True, f"response object {obj} exists ({len(described)} fields)")]
    for column, name in settings.response_fields.items():
        findings.append(_mapped_field(column, name, described.get(name), obj))
    return findings


def _mapped_field(column: str, name: str, spec: Mapping[str, Any] | None, obj: str) -> Finding:
    key = setting(f"response_fields.{column}")
    if spec is None:
        return Finding(False, f"{obj} has no field {name} (mapped from {column})", key)
    kinds, shortest = EXPECTED.get(column, (frozenset(), 0))
    kind = str(spec.get("dataType") or "").upper()
    if kinds and kind not in kinds:
        wanted = " or ".join(sorted(kinds))
        return Finding(False, f"{obj}.{name} is {kind or 'of unknown type'}; {column} needs {wanted}", key)
    length = field_length(spec)
    if length is not None and length < shortest:
        return Finding(False, f"{obj}.{name} holds {length} characters; {column} needs at least {shortest}", key)
    return Finding(True, f"{obj}.{name} ({kind}{f', {length}' if length else ''}) receives {column}")


def company_key(client: GainsightClient, settings: GainsightSettings) -> list[Finding]:
    """The key is accepted (Company's metadata is readable) and the Company key field exists.

    Company exists in every tenant, so this read is also the proof of the key.
    """
    obj, name = settings.company_object, settings.company_key_field
    described = client.describe(obj)
    host = urlsplit(settings.base_url).netloc
    accepted = Finding(True, f"Gainsight key accepted by {host} (read the {obj} metadata)")
    spec = next((s for s in described if s["fieldName"] == name), None)
    if spec is None:
        return [accepted, Finding(False, f"{obj} has no field {name} (the CustomerGauge account id key)", setting("company_key_field"))]
    kind = str(spec.get("dataType") or "").upper()
    if kind not in TEXT:
        return [accepted, Finding(False, f"{obj}.{name} is {kind}; the account id key needs a STRING field", setting("company_key_field"))]
    return [accepted, Finding(True, f"{obj}.{name} ({kind}) holds the CustomerGauge account id")]


def timeline_author(client: GainsightClient, settings: GainsightSettings) -> Finding:
    """The Timeline author is a GsUser (and active, where the metadata has an active flag)."""
    email = settings.timeline_author_email or ""
    key = setting("timeline_author_email")
    flags = [s["fieldName"] for s in client.describe("GsUser") if s["fieldName"] in ACTIVE_FLAGS]
    users = client.find_by_key("GsUser", "Email", [email], flags)
    user = next(iter(users.values()), None)
    if user is None:
        return Finding(False, f"no Gainsight user (GsUser) has the e-mail {email}: the Timeline author", key)
    if not flags:
        return Finding(True, f"Timeline author {email} is a Gainsight user (no active flag in GsUser's metadata to check)")
    if not user.get(flags[0]):
        return Finding(False, f"Gainsight user {email} is not active ({flags[0]} is false): the Timeline author", key)
    return Finding(True, f"Timeline author {email} is an active Gainsight user")


def activity_type(client: GainsightClient, settings: GainsightSettings) -> Finding:
    """An existing activity of the type proves it is configured; no documented read lists the types."""
    name = settings.timeline_activity_type
    condition = {"name": "TypeName", "alias": "A", "value": [name], "operator": "EQ"}
    if client.query("activity_timeline", ["TypeName"], [condition], "A", limit=1):
        return Finding(True, f"activity type {name!r} is in use on the Timeline")
    return Finding(
        None,
        f"activity type {name!r}: unchecked (no activity of that type yet, and no documented API lists "
        f"activity types); the first Timeline insert will tell. Setting: {setting('timeline_activity_type')}",
    )


def bulk_job(settings: GainsightSettings) -> Finding:
    """No documented read takes a Bulk job id: only an upload (a write) or a status by statusId."""
    if not settings.response_bulk_job_id:
        return Finding(None, "Bulk job: not set; responses go through the sync API (fine below a few thousand a run)")
    return Finding(
        None,
        f"Bulk job {settings.response_bulk_job_id!r}: unchecked (Gainsight documents no read of a job, only "
        "uploads); the first Bulk upload will tell, and an unknown job stops that run with exit 2. "
        f"Setting: {setting('response_bulk_job_id')}",
    )
