"""Read-only metadata (reference §4.10): object list and describe, served from the seeded schema.

Clients use describe to check that the fields they map exist before writing; no API creates
objects or fields, so there is nothing to write here.
"""

from __future__ import annotations

from typing import Any

from sandbox.common.server import Request, Response
from sandbox.gainsight.envelope import ObjectNotFound, bad_request, json_body, ok
from sandbox.gainsight.schema import FieldSpec, ObjectSpec, Schema

_DESCRIBE_KEYS = frozenset(("objectNames", "includeChilds", "childLevels", "populatePickListOptions", "host"))


def _summary(spec: ObjectSpec) -> dict[str, Any]:
    return {
        # The list answers lower-case names ("company") [observed for Company; assumed for others].
        "objectName": spec.name.lower(),
        "label": spec.label or spec.name,
        "objectType": spec.object_type,
        "keyPrefix": spec.key_prefix,
        "transactional": spec.data_api_writable,
        "readable": True,
        "createable": spec.writer != "none",
        "schemaUpdateable": spec.object_type == "CUSTOM",
        "dataStore": "LOW_VOLUME" if spec.volume == "LOW" else "HIGH_VOLUME",
    }


def _field(field: FieldSpec, with_options: bool) -> dict[str, Any]:
    described: dict[str, Any] = {
        "fieldName": field.name,
        "label": field.label or field.name,
        "dataType": field.type,
        "meta": {
            "createable": not field.system,
            "updateable": not field.system,
            "required": field.required,
            "nillable": not field.required and field.name != "Gsid",
            "length": field.length,
            "lookupDetail": {"lookupObjects": [{"objectName": field.references}]} if field.references else None,
        },
    }
    if field.type == "PICKLIST" and with_options:
        described["picklistDetails"] = [{"gsid": field.item_gsid(label), "name": label, "active": True} for label in field.options]
    return described


def describe(spec: ObjectSpec, with_options: bool) -> dict[str, Any]:
    return {**_summary(spec), "objectName": spec.name, "fields": [_field(f, with_options) for f in spec.fields]}


class MetadataApi:
    def __init__(self, schema: Schema) -> None:
        self._schema = schema

    def list_objects(self, request: Request) -> Response:
        return ok([_summary(spec) for spec in self._schema.objects])

    def describe_many(self, request: Request) -> Response:
        body = json_body(request)
        if not isinstance(body, dict) or set(body) - _DESCRIBE_KEYS or not isinstance(body.get("objectNames"), list):
            raise bad_request(
                "GSOBJ_1008",
                f"The body must be {{objectNames: [...]}} with optional {sorted(_DESCRIBE_KEYS - {'objectNames'})}",
            )
        with_options = str(body.get("populatePickListOptions", "false")).lower() == "true"
        return ok([describe(self._object(name), with_options) for name in body["objectNames"]])

    def describe_one(self, request: Request, name: str) -> Response:
        return ok([describe(self._object(name), True)])

    def _object(self, name: Any) -> ObjectSpec:
        spec = self._schema.object(name) if isinstance(name, str) else None
        if spec is None:
            raise ObjectNotFound(str(name))
        return spec
