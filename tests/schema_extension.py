"""Run the connector end to end with one entry added to the canonical schema, and report what flowed.

`python -m tests.schema_extension '<entry>' <workdir>` loads `connector_common/schema.py` with
`<entry>` appended to its `PROPERTIES`, exactly as if a maintainer had added that one line, before
any other module imports it; then stages from a CustomerGauge sandbox whose responses carry the new
property and pushes into a Gainsight sandbox whose response object has the new field. Its last line of output
is one JSON object (the run summary comes before it): the exit code, the derived structures, and per response id the staged value and the
value Gainsight holds. Only a process that has not imported the schema yet shows honestly that every
derived structure (staging schema, outbox select, field map, key registry) follows the one entry: a
fresh interpreter, or one forked from the test zygote (tests/zygote.py), which imports nothing that
derives from the schema (checked below).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLIENT_ID, CLIENT_SECRET, ACCESS_KEY = "ext-client", "ext-secret-5b1e", "ext-gainsight-key-0c4d"
AUTHOR = "nps.connector@example.com"
JOB = "ext-nps-upsert"


def load_extended_schema(entry: str) -> Any:
    """connector_common.schema with `entry` as the last item of PROPERTIES, installed in sys.modules."""
    import connector_common

    if "connector_common.schema" in sys.modules:  # what derives from it would keep the shipped entries
        raise SystemExit("connector_common.schema is imported already: run this in a process that has not")
    path = REPO / "connector_common" / "schema.py"
    source, count = re.subn(r"(\nPROPERTIES = \((?:\n    .*)*?)\n\)\n", rf"\1\n    {entry}\n)\n", path.read_text(), count=1)
    if count != 1:
        raise SystemExit("PROPERTIES = (...) not found in connector_common/schema.py")
    spec = importlib.util.spec_from_file_location("connector_common.schema", path)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["connector_common.schema"] = module
    exec(compile(source, str(path), "exec"), module.__dict__)
    connector_common.schema = module
    return module


def main(entry: str, workdir: Path) -> dict[str, Any]:
    schema = load_extended_schema(entry)
    column = schema.PROPERTIES[-1]

    from destinations.gainsight.settings import load_settings
    from pipelines.config_keys import known_keys
    from pipelines.runner import execute
    from pipelines.settings import RunSettings
    from sandbox.customergauge import CustomerGaugeSandbox, SeedSpec
    from sandbox.gainsight import BulkJob, FieldSpec, GainsightSandbox, ObjectSpec, Schema
    from sandbox.gainsight.schema import DEFAULT_ACTIVITY_TYPES, DEFAULT_USERS, nps_response_object, standard_objects

    # The Gainsight admin's part: the new field on the response object.
    plain = nps_response_object()
    extended = ObjectSpec(plain.name, plain.key_prefix, (*plain.fields, FieldSpec(column.field, "STRING", 255)), label=plain.label)
    tenant = Schema([*standard_objects(), extended], DEFAULT_ACTIVITY_TYPES, DEFAULT_USERS)
    seed = SeedSpec(responses=12, days=5, accounts=3, seed=5)
    job = BulkJob(JOB, plain.name, "UPSERT", keys=("ResponseId__gc",))
    with (
        CustomerGaugeSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, seed=seed) as cg,
        GainsightSandbox(ACCESS_KEY, schema=tenant, bulk_jobs=[job], quotas=False) as gs,
    ):
        sent = {}
        for record in cg.records:
            cgid = record["number_customergauge"]
            sent[str(cgid)] = f"{column.label} {cgid % 4}"
            cg.edit_response(cgid, properties=[*record["properties"], {"field": column.label, "reference": sent[str(cgid)]}])
        settings = RunSettings(
            duckdb_path=workdir / "staging.duckdb",
            pipeline_name="schema_extension",
            dataset_name="nps",
            pipelines_dir=str(workdir / "pipelines"),
        )
        source = {
            "api_base_url": cg.base_url,
            "token_url": cg.token_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "initial_response_date": (date.today() - timedelta(days=seed.days + 1)).isoformat(),
        }
        destination = {
            "base_url": gs.base_url,
            "access_key": ACCESS_KEY,
            "timeline_author_email": AUTHOR,
            "response_bulk_job_id": JOB,
            "bulk_min_rows": 1,  # the Bulk CSV too, not only the sync records
            "bulk_poll_interval_seconds": 0.05,
            "create_missing_companies": True,
        }
        code, _ = execute(settings, source, destination)
        import duckdb

        with duckdb.connect(str(settings.duckdb_path), read_only=True) as db:
            staged = dict(db.execute(f"SELECT response_id, {column.name} FROM nps.nps_responses").fetchall())
        pushed = {record["ResponseId__gc"]: record.get(column.field) for record in gs.records(plain.name)}
    return {
        "exit_code": int(code),
        "sent": sent,
        "staged": staged,
        "pushed": pushed,
        "property_map": schema.DEFAULT_PROPERTY_MAP,
        "response_fields": dict(load_settings(destination).response_fields),
        "known_response_fields": sorted(known_keys()["destination.gainsight"]["response_fields"] or ()),
        "known_property_map": sorted(known_keys()["sources.customergauge"]["property_map"] or ()),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]))))
