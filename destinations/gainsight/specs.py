"""The Gainsight objects the push keeps in step with CustomerGauge, one declarative spec each.

Everything that lists the objects is derived from `SPECS`: the order of the push (a spec comes
after the specs it depends on), the ledger's tables and keys, the report's rows, the quota family
of each object's writes, the outbox flag that selects its rows. The engine (`engine.py`) does the
rest the same way for every object: read the ledger, plan (create / update / unchanged / give up /
wait for a dependency), write through the spec's writer kind, book the outcome, apply one error
policy. Adding an object is one spec here plus its payload function (README "Adding a Gainsight
object").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from connector_common import pii
from connector_common.schema import OUTBOX_COLUMNS, RESPONSE_KEY

from .records import (
    activity_hash,
    activity_record,
    company_hash,
    company_record,
    person_hash,
    person_record,
    response_table,
    truncated,
)
from .settings import GainsightSettings

log = logging.getLogger("nps.gainsight")

# How a spec's records reach Gainsight (the writer modules):
SYNC = "sync"  # data API insert / update by key, ≤50 a call; Bulk job for large batches (`bulk`)
COMPANY = "company"  # SYNC, after matching each account to an existing Company (matching.py)
PERSON = "person"  # People API, one person per call, upsert by Email
TIMELINE = "timeline"  # Timeline API, converged by looking activities up by ExternalId

Row = Mapping[str, Any]
# A payload function: (rows to write, each with its parent's `company_gsid` and the writer's
# `exists` verdict, the settings, the object's field lengths) -> the records Gainsight receives,
# one per row in order; a list of dicts, or an Arrow table for column-wise objects.
Payload = Callable[[pa.Table, GainsightSettings, Mapping[str, int]], "list[dict[str, Any]] | pa.Table"]
# Content hashes: what `pushed_hash` in the ledger is compared with, one per item row.
Digest = Callable[[pa.Table, GainsightSettings], list[str]]


@dataclass(frozen=True)
class ObjectSpec:
    """One Gainsight object the push writes."""

    name: str  # ledger table, report row, `dead_letters.object`
    key: str  # the outbox column (and ledger key) identifying a record
    writer: str  # SYNC, COMPANY, PERSON or TIMELINE
    endpoint: str  # the client's name for its write calls (call counts in the summary)
    quota_family: str  # the Gainsight quota its writes count against
    columns: tuple[str, ...]  # outbox columns an item carries (besides the key)
    payload: Payload
    digest: Digest
    # Outbox flags selecting the rows this object is written for (any of them); () = every row.
    flags: tuple[str, ...] = ()
    latest: bool = False  # one item per key, from its most recent response (names drift)
    depends_on: str | None = None  # a spec whose confirmed record each item references ...
    parent_key: str | None = None  # ... through this outbox column (no value: needs none)
    # The hash a rejected record is counted against (`failed_hash`), when not the digest.
    failure_hash: Digest | None = None
    ledger_columns: str = ""  # DDL of the object's own ledger columns
    object_setting: str | None = None  # the setting naming the Gainsight object (SYNC writers)
    key_setting: str | None = None  # the setting naming its key field in Gainsight (SYNC writers)
    field_lengths: bool = False  # the payload cuts text to the object's field lengths (described once)
    bulk: bool = False  # SYNC: large batches go through the Bulk job (`response_bulk_job_id`)
    enabled: Callable[[GainsightSettings], bool] = lambda settings: True

    @property
    def ledger_column_names(self) -> list[str]:
        return [column.split()[0] for column in self.ledger_columns.split(",") if column.strip()]

    def object_name(self, settings: GainsightSettings) -> str:
        return str(getattr(settings, self.object_setting or ""))

    def key_field(self, settings: GainsightSettings) -> str:
        return str(getattr(settings, self.key_setting or ""))


def rowwise(build: Callable[[Row, GainsightSettings], dict[str, Any]]) -> Payload:
    """A payload function from a per-record one (objects whose records differ in shape). Every
    payload sees e-mails and comments as the PII rules let them leave (`settings.pii`)."""

    def payload(rows: pa.Table, settings: GainsightSettings, lengths: Mapping[str, int]) -> list[dict[str, Any]]:
        return [build(row, settings) for row in pii.apply(rows, settings.pii).to_pylist()]

    return payload


def per_row(digest: Callable[[Row, GainsightSettings], str]) -> Digest:
    """A digest function from a per-record one."""

    def digests(rows: pa.Table, settings: GainsightSettings) -> list[str]:
        return [digest(row, settings) for row in pii.apply(rows, settings.pii).to_pylist()]

    return digests


def content_hash(rows: pa.Table, settings: GainsightSettings) -> list[str]:
    """The staged response's own hash (column-wise: responses can be 100k items)."""
    return [str(value) for value in rows["content_hash"].to_pylist()]


# --- payloads and hashes of each object (pure; the shapes are in records.py) --------------------------


def _company(row: Row, settings: GainsightSettings) -> dict[str, Any]:
    return company_record(row["account_id"], row["account_name"], settings.company_key_field)


def _company_digest(row: Row, settings: GainsightSettings) -> str:
    return company_hash(row["account_id"], row["account_name"], settings.rename_companies)


def _person(row: Row, settings: GainsightSettings) -> dict[str, Any]:
    # The People API writes every field it is sent: a person who exists keeps the names a CRM gave
    # them (only the association is added) unless `update_person_names` is set.
    names = settings.update_person_names or not row.get("exists")
    return person_record(row["email"], row["first_name"], row["last_name"], row["company_gsid"], names)


def _person_digest(row: Row, settings: GainsightSettings) -> str:
    return person_hash(row["email"], row["first_name"], row["last_name"], row["company_gsid"])


def _responses(rows: pa.Table, settings: GainsightSettings, lengths: Mapping[str, int]) -> pa.Table:
    rows = pii.apply(rows, settings.pii)  # what Gainsight may receive of e-mails and comments
    for target, count in truncated(rows, settings.response_fields, lengths).items():
        log.warning("gainsight: %d value(s) cut to the %d characters %s holds", count, lengths[target], target)
    return response_table(rows, rows["company_gsid"], settings.response_fields, lengths)


def _activity(row: Row, settings: GainsightSettings) -> dict[str, Any]:
    return activity_record(row, row["company_gsid"], settings.timeline_author_email or "", settings.timeline_activity_type)


# The outbox columns a response carries besides its key (connector_common/schema.py).
RESPONSE_COLUMNS = tuple(column for column in OUTBOX_COLUMNS if column != RESPONSE_KEY)
_RECORD_STATE = "status VARCHAR, attempts INTEGER DEFAULT 0, failed_hash VARCHAR, last_error_code VARCHAR, last_error VARCHAR"

# In value order (DESIGN §2): what a CSM sees first goes first. Companies (everything references
# them), the response records, their Timeline entries, then the people, whom nothing references.
SPECS: tuple[ObjectSpec, ...] = (
    ObjectSpec(
        name="companies",
        endpoint="company",
        key="account_id",
        writer=COMPANY,
        quota_family="sync",
        columns=("account_name",),
        latest=True,
        payload=rowwise(_company),
        digest=per_row(_company_digest),
        ledger_columns="name VARCHAR, gsid VARCHAR, pushed_hash VARCHAR",
        object_setting="company_object",
        key_setting="company_key_field",
    ),
    ObjectSpec(
        name="responses",
        endpoint="response",
        key=RESPONSE_KEY,
        writer=SYNC,
        quota_family="sync",
        columns=RESPONSE_COLUMNS,
        flags=("needs_response",),
        depends_on="companies",
        parent_key="account_id",
        payload=_responses,
        digest=content_hash,
        ledger_columns="gsid VARCHAR, pushed_hash VARCHAR, via VARCHAR, bulk_upload_id VARCHAR",
        object_setting="response_object",
        key_setting="response_key_field",
        field_lengths=True,
        bulk=True,
    ),
    ObjectSpec(
        name="activities",
        endpoint="timeline",
        key=RESPONSE_KEY,
        writer=TIMELINE,
        quota_family="timeline",
        columns=RESPONSE_COLUMNS,
        flags=("needs_activity",),
        depends_on="companies",
        parent_key="account_id",
        payload=rowwise(_activity),
        digest=per_row(lambda row, settings: activity_hash(_activity(row, settings))),
        failure_hash=content_hash,
        # pushed_hash: what the activity shows; source_hash: the response version it reflects.
        ledger_columns="external_id VARCHAR, activity_id VARCHAR, pushed_hash VARCHAR, source_hash VARCHAR",
        enabled=lambda settings: settings.timeline_enabled,
    ),
    ObjectSpec(
        name="people",
        endpoint="people",
        key="email",
        writer=PERSON,
        quota_family="sync",
        columns=("first_name", "last_name", "account_id"),
        flags=("needs_response", "needs_retry"),
        latest=True,
        depends_on="companies",
        parent_key="account_id",
        payload=rowwise(_person),
        digest=per_row(_person_digest),
        ledger_columns="gsid VARCHAR, company_gsid VARCHAR, pushed_hash VARCHAR",
        enabled=lambda settings: settings.people_enabled,  # push_email = keep (README "PII and GDPR controls")
    ),
)

BY_NAME: dict[str, ObjectSpec] = {spec.name: spec for spec in SPECS}
OBJECTS: tuple[str, ...] = tuple(BY_NAME)
# What each object's ledger table is keyed on (`dead_letters.object` uses the same names).
KEYS: dict[str, str] = {spec.name: spec.key for spec in SPECS}
# Outbox flags that bring a row into the outbox for some object's sake.
OUTBOX_FLAGS: tuple[str, ...] = tuple(dict.fromkeys(flag for spec in SPECS for flag in spec.flags))


def ledger_ddl(schema: str) -> str:
    """CREATE TABLE statements of every object's ledger table (key, own columns, failure state)."""
    return "".join(
        f"CREATE TABLE IF NOT EXISTS {schema}.{spec.name} ({spec.key} VARCHAR PRIMARY KEY, "
        f"{spec.ledger_columns + ', ' if spec.ledger_columns else ''}{_RECORD_STATE}, "
        "created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ);\n"
        for spec in SPECS
    )
