"""The People API (reference §4.6): one person per call, resolved by Email, with Company Person
associations from ``companies[]``.

Upsert by Email (case-insensitive [assumed]) is what makes re-sending a person harmless; an
association is created once per person and company and updated afterwards, never duplicated.
Companies must exist first [documented]: an unknown ``Company_ID`` fails the call (400 GSOBJ_1008,
like any GSID that names no record [assumed]). Validation is all-or-nothing, as for data writes.
The async bulk API (``people_async.py``) checks and applies each of its persons the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.common.server import Request, Response
from sandbox.gainsight.envelope import bad_request, json_body, ok
from sandbox.gainsight.records import RecordPreparer, field_error, reject_records
from sandbox.gainsight.store import Store
from sandbox.gainsight.values import Invalid, from_json

COMPANY_KEYS = frozenset(("Company_ID", "Title", "Role", "IsPrimaryCompany"))  # [assumed] beyond Company_ID


@dataclass
class Upsert:
    """One person, checked: its field values, the person it updates (or None), its associations."""

    values: dict[str, Any]
    existing: str | None
    associations: list[dict[str, Any]]


class PeopleApi:
    def __init__(self, store: Store, preparer: RecordPreparer) -> None:
        self._store = store
        self._preparer = preparer

    def upsert(self, request: Request) -> Response:
        body = json_body(request)
        if not isinstance(body, dict):
            raise bad_request("GSOBJ_1008", "The body must be one person object (not wrapped in records)")
        checked, errors = self.check(body)
        if checked is None:
            raise reject_records({0: errors})
        return ok(self.apply(checked))

    def check(self, body: dict[str, Any]) -> tuple[Upsert | None, list[dict[str, Any]]]:
        """Validate one person object (writes nothing): the checked upsert, or its field errors."""
        people = self._store.table("Person")
        links = self._store.table("Company_Person")
        person = {k: v for k, v in body.items() if k != "companies"}
        existing = self._existing_person(person.get("Email"))
        values, _, errors = self._preparer.prepare(people.spec, person, partial=existing is not None)
        associations = body.get("companies", [])
        if not isinstance(associations, list):
            errors.append(field_error("GSOBJ_1008", "companies must be a list", "companies", associations))
            associations = []
        planned = []
        for position, association in enumerate(associations):
            if not isinstance(association, dict) or set(association) - COMPANY_KEYS or "Company_ID" not in association:
                errors.append(
                    field_error(
                        "GSOBJ_1008",
                        f"Each company is an object with Company_ID and optionally {sorted(COMPANY_KEYS - {'Company_ID'})}",
                        f"companies[{position}]",
                        association,
                    )
                )
                continue
            link_values, _, link_errors = self._preparer.prepare(links.spec, association, partial=True)
            for error in link_errors:
                error["fieldName"] = f"companies[{position}].{error['fieldName']}"
            errors.extend(link_errors)
            planned.append(link_values)
        if errors:
            return None, errors
        return Upsert(values, existing, planned), []

    def apply(self, checked: Upsert) -> dict[str, Any]:
        """Write a checked person and its associations; the answer's ``data``."""
        people = self._store.table("Person")
        links = self._store.table("Company_Person")
        if checked.existing is None:
            person_gsid = self._store.insert(people, checked.values)
        else:
            person_gsid = checked.existing
            self._store.update(people, person_gsid, checked.values)
        person_field, company_field = links.spec.field("Person_ID"), links.spec.field("Company_ID")
        assert person_field is not None and company_field is not None
        answered = []
        for link_values in checked.associations:
            company = link_values["Company_ID"]
            same = set(links.find(company_field, company))
            current = [g for g in links.find(person_field, person_gsid) if g in same]
            if current:
                link_gsid = current[0]
                self._store.update(links, link_gsid, link_values)
            else:
                link_gsid = self._store.insert(links, {**link_values, "Person_ID": person_gsid})
            answered.append({"Gsid": link_gsid, "Company_ID": company})
        return {"Gsid": person_gsid, "companies": answered}

    def _existing_person(self, email: Any) -> str | None:
        people = self._store.table("Person")
        field = people.spec.field("Email")
        assert field is not None
        try:
            matches = people.find(field, from_json(field, email)) if email is not None else []
        except Invalid:
            return None  # reported by the validation of the person
        return matches[0] if matches else None
