"""The tenant's data model as the sandbox knows it: objects, fields, picklists, activity types, users.

Real tenants build their model in Gainsight's Data Management UI and no API creates objects or
fields (reference §4.10), so the sandbox is seeded with a ``Schema`` value. ``default_schema()`` is
the model the connector targets (DESIGN §5); tests pass other schemas to model other tenants.
Every object gets Gainsight's system fields (reference §3.2) without listing them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FieldType = Literal["STRING", "NUMBER", "BOOLEAN", "DATE", "DATETIME", "EMAIL", "URL", "PICKLIST", "GSID"]
FIELD_TYPES = frozenset(("STRING", "NUMBER", "BOOLEAN", "DATE", "DATETIME", "EMAIL", "URL", "PICKLIST", "GSID"))
TEXT_TYPES = frozenset(("STRING", "EMAIL", "URL"))
#: Which API may write an object: the data API (Company, custom objects), the People API, the
#: Timeline API, or none (GsUser: users are managed in the UI; the sandbox seeds them).
Writer = Literal["data", "people", "timeline", "none"]
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: Objects the sandbox's endpoints depend on; every schema must define them.
REQUIRED_OBJECTS = ("Company", "Person", "Company_Person", "GsUser", "activity_timeline")


@dataclass(frozen=True)
class FieldSpec:
    """One field. ``length`` caps text types (default 255); ``options`` are a PICKLIST's labels;
    ``references`` names the object a GSID field's values must be records of (a lookup);
    ``system`` fields are maintained by Gainsight and never written by clients."""

    name: str
    type: FieldType = "STRING"
    length: int | None = None
    required: bool = False
    options: tuple[str, ...] = ()
    references: str | None = None
    label: str | None = None
    system: bool = False

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"field {self.name}: type must be one of {sorted(FIELD_TYPES)}, got {self.type!r}")
        if (self.type == "PICKLIST") != bool(self.options):
            raise ValueError(f"field {self.name}: a PICKLIST needs options, and only a PICKLIST has them")
        if self.references is not None and self.type != "GSID":
            raise ValueError(f"field {self.name}: only a GSID field references an object")
        if self.type in TEXT_TYPES and self.length is None:
            object.__setattr__(self, "length", 255)
        if self.type == "GSID" and self.length is None:
            object.__setattr__(self, "length", 36)

    def item_gsid(self, label: str) -> str:
        """The stable GSID of a picklist item (``1I00`` prefix); reads return it instead of the label."""
        return gsid_from("1I00", f"{self.name}\x00{label}")


def gsid_from(prefix: str, seed: str) -> str:
    """A deterministic 36-character GSID: ``prefix`` + uppercase alphanumerics derived from ``seed``."""
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    chars = []
    for _ in range(36 - len(prefix)):
        number, digit = divmod(number, 36)
        chars.append(_ALNUM[digit])
    return prefix + "".join(chars)


def _system_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("Gsid", "GSID", system=True, label="GSID"),
        FieldSpec("CreatedDate", "DATETIME", system=True, label="Created Date"),
        FieldSpec("ModifiedDate", "DATETIME", system=True, label="Modified Date"),
        FieldSpec("CreatedBy", "GSID", system=True, references="GsUser", label="Created By"),
        FieldSpec("ModifiedBy", "GSID", system=True, references="GsUser", label="Modified By"),
    )


@dataclass(frozen=True)
class ObjectSpec:
    """One object. ``volume`` LOW/HIGH (the data API writes LOW only); ``writer`` is the API that
    writes it; ``key_prefix`` starts its GSIDs (reference §3.2). System fields are added here."""

    name: str
    key_prefix: str
    fields: tuple[FieldSpec, ...]
    label: str | None = None
    object_type: Literal["STANDARD", "CUSTOM", "SYSTEM"] = "CUSTOM"
    volume: Literal["LOW", "HIGH"] = "LOW"
    writer: Writer = "data"
    _by_name: dict[str, FieldSpec] = field(init=False, repr=False, compare=False)
    _by_lower: dict[str, FieldSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.object_type == "CUSTOM" and not self.name.endswith("__gc"):
            raise ValueError(f"custom object names end in __gc (reference §3.2), got {self.name!r}")
        if len(self.key_prefix) != 4 or not self.key_prefix.isalnum() or self.key_prefix != self.key_prefix.upper():
            raise ValueError(f"{self.name}: key_prefix must be 4 uppercase alphanumerics, got {self.key_prefix!r}")
        fields = tuple(f for f in self.fields if not f.system) + _system_fields()
        lower = {f.name.lower(): f for f in fields}
        if len(lower) != len(fields):
            raise ValueError(f"{self.name}: field names must be unique (case-insensitively, system fields included)")
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "_by_name", {f.name: f for f in fields})
        object.__setattr__(self, "_by_lower", lower)

    def field(self, name: str) -> FieldSpec | None:
        """The field with exactly this API name (writes are case-sensitive [assumed])."""
        return self._by_name.get(name)

    @property
    def fields_by_name(self) -> dict[str, FieldSpec]:
        """Fields by exact API name (read-only by convention; a hot loop's dict lookups)."""
        return self._by_name

    def field_ci(self, name: str) -> FieldSpec | None:
        """The field with this name in any case (queries: the docs' own samples write ``csm__gr.email``)."""
        return self._by_lower.get(name.lower())

    @property
    def data_api_writable(self) -> bool:
        """The Company / Custom Object APIs write it: only Low Volume objects (reference §4.5)."""
        return self.writer == "data" and self.volume == "LOW"

    @property
    def bulk_loadable(self) -> bool:
        """A Bulk job may target it: not Person, Company Person, users or Timeline (reference §4.8)."""
        return self.writer == "data"


class Schema:
    """Objects by case-insensitive name, the activity types per Timeline context, and the GsUsers to seed."""

    def __init__(
        self,
        objects: Iterable[ObjectSpec],
        activity_types: Mapping[str, Iterable[str]],
        users: Iterable[tuple[str, str]],
    ) -> None:
        self.objects: tuple[ObjectSpec, ...] = tuple(objects)
        self._by_lower = {o.name.lower(): o for o in self.objects}
        if len(self._by_lower) != len(self.objects):
            raise ValueError("object names must be unique (case-insensitively)")
        if len({o.key_prefix for o in self.objects}) != len(self.objects):
            raise ValueError("key prefixes must be unique")
        missing = [name for name in REQUIRED_OBJECTS if name.lower() not in self._by_lower]
        if missing:
            raise ValueError(f"a schema needs the objects {missing} (use standard_objects())")
        for spec in self.objects:
            for f in spec.fields:
                if f.references is not None and f.references.lower() not in self._by_lower:
                    raise ValueError(f"{spec.name}.{f.name} references unknown object {f.references!r}")
        self.activity_types: dict[str, frozenset[str]] = {c: frozenset(t) for c, t in activity_types.items()}
        self.users: tuple[tuple[str, str], ...] = tuple(users)

    def object(self, name: str) -> ObjectSpec | None:
        """The object with this name in any case (paths are case-insensitive, reference §6.1)."""
        return self._by_lower.get(name.lower())


def _text(name: str, length: int = 255, **kwargs: Any) -> FieldSpec:
    return FieldSpec(name, "STRING", length, **kwargs)


def standard_objects() -> list[ObjectSpec]:
    """Company, Person, Company_Person, GsUser and activity_timeline as the connector sees them."""
    return [
        ObjectSpec(
            "Company",
            "1P02",
            (
                _text("Name", required=True),
                _text("CG_Account_Id__gc", 100, label="CustomerGauge Account Id"),
                _text("External_Id__gc"),
                _text("Industry"),
                FieldSpec("ARR", "NUMBER"),
                FieldSpec("Employees", "NUMBER"),
                FieldSpec("LifecycleInWeeks", "NUMBER"),
                FieldSpec("Stage", "PICKLIST", options=("New Customer", "Kicked Off", "Launched", "Adopting", "Will Churn", "Churn")),
                FieldSpec("Status", "PICKLIST", options=("Active", "Inactive", "Churn")),
                FieldSpec("OriginalContractDate", "DATE"),
                FieldSpec("RenewalDate", "DATE"),
                FieldSpec("Csm", "GSID", references="GsUser", label="CSM"),
                FieldSpec("ParentCompany", "GSID", references="Company"),
            ),
            object_type="STANDARD",
        ),
        ObjectSpec(
            "Person",
            "1C00",
            (
                FieldSpec("Email", "EMAIL", required=True),
                _text("Name"),
                _text("FirstName"),
                _text("LastName"),
                _text("MiddleName"),
                FieldSpec("LinkedinUrl", "URL", 2000),
                _text("Location"),
                _text("Timezone"),
                _text("ExternalRecordID__gc"),
                FieldSpec("EmailOptOut", "BOOLEAN"),
                _text("Comments", 5000),
            ),
            object_type="STANDARD",
            writer="people",
        ),
        ObjectSpec(
            "Company_Person",
            "1C01",
            (
                FieldSpec("Person_ID", "GSID", required=True, references="Person"),
                FieldSpec("Company_ID", "GSID", required=True, references="Company"),
                _text("Title"),
                _text("Role"),
                FieldSpec("IsPrimaryCompany", "BOOLEAN"),
            ),
            object_type="STANDARD",
            writer="people",
        ),
        ObjectSpec(
            "GsUser",
            "1P01",
            (_text("Name"), _text("FirstName"), _text("LastName"), FieldSpec("Email", "EMAIL", required=True)),
            object_type="STANDARD",
            writer="none",
        ),
        ObjectSpec(
            "activity_timeline",
            "1A01",
            (
                _text("ExternalId", required=True),
                _text("ContextName", 50, required=True),
                _text("TypeName", 100, required=True),
                _text("Subject"),
                _text("Notes", 50000),
                FieldSpec("ActivityDate", "DATETIME", required=True),
                FieldSpec("Author", "EMAIL", required=True),
                FieldSpec("AuthorId", "GSID", required=True, references="GsUser"),
                FieldSpec("GsCompanyId", "GSID", references="Company"),
            ),
            object_type="SYSTEM",
            writer="timeline",
        ),
    ]


def nps_response_object(name: str = "CG_NPS_Response__gc", key_prefix: str = "1Z02") -> ObjectSpec:
    """The Low Volume NPS response object of DESIGN §5."""
    return ObjectSpec(
        name,
        key_prefix,
        (
            _text("ResponseId__gc", 64, required=True),
            FieldSpec("Score__gc", "NUMBER"),
            _text("NpsCategory__gc", 20),
            _text("Comment__gc", 5000),
            FieldSpec("PersonEmail__gc", "EMAIL"),
            _text("SurveyId__gc", 100),
            *(_text(f"{n}__gc") for n in ("Touchpoint", "Channel", "Language", "Country", "Segment", "Product")),
            FieldSpec("CaseLink__gc", "URL", 2000),
            FieldSpec("ResponseDatetime__gc", "DATETIME"),
            FieldSpec("CompanyId__gc", "GSID", references="Company"),
        ),
        label="CG NPS Response",
    )


#: The connector's Timeline default type is "Survey Response" (DESIGN §5); the rest are the standard types.
DEFAULT_ACTIVITY_TYPES = {"Company": ("Update", "Call", "Meeting", "Email", "Milestone", "Survey Response")}
DEFAULT_USERS = (("nps.connector@example.com", "NPS Connector"), ("casey.csm@example.com", "Casey Morgan"))


def default_schema() -> Schema:
    """Standard objects, ``CG_NPS_Response__gc`` and a High Volume object the data API must refuse."""
    usage = ObjectSpec(
        "CG_Usage_Event__gc",
        "1Z03",
        (_text("EventId__gc", 64, required=True), FieldSpec("CompanyId__gc", "GSID", references="Company")),
        label="CG Usage Event",
        volume="HIGH",
    )
    return Schema([*standard_objects(), nps_response_object(), usage], DEFAULT_ACTIVITY_TYPES, DEFAULT_USERS)
