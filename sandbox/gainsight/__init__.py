"""A strict local stand-in for the Gainsight CS APIs the connector uses (reference §6), for tests,
the demo and benchmarks. See ``sandbox/README.md`` for what is documented, observed or assumed."""

from sandbox.common.faults import Fault
from sandbox.gainsight.bulk import BulkJob
from sandbox.gainsight.schema import (
    FieldSpec,
    ObjectSpec,
    Schema,
    default_schema,
    nps_response_object,
    standard_objects,
)
from sandbox.gainsight.server import GainsightSandbox
from sandbox.gainsight.variants import Variants

__all__ = [
    "BulkJob",
    "FieldSpec",
    "Fault",
    "GainsightSandbox",
    "ObjectSpec",
    "Schema",
    "default_schema",
    "nps_response_object",
    "standard_objects",
    "Variants",
]
