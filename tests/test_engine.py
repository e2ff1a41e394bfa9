"""The object-sync engine: the plan as a pure function, one error policy for every object, a dry
run with no side effect, and a failed push that dlt keeps pending instead of recording as loaded."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import dlt

from destinations.gainsight.engine import Action, plan_actions
from destinations.gainsight.report import PushReport
from destinations.gainsight.specs import KEYS, OBJECTS, SPECS
from pipelines.errors import ExitCode

from .conftest import RESPONSE_OBJECT, read_only
from .staged import push_only

PEOPLE_PATH = "/v1/peoplemgmt/v1.0/people"


# --- the plan: a pure function of the items and the ledger state -----------------------------------


def test_plan_decides_each_item_from_the_ledger_alone():
    keys = ["new", "same", "edited", "hopeless", "hopeless-edited", "orphan", "legacy", "deferred"]
    digests = ["h1", "h2", "h3-new", "h4", "h5-new", "h6", "h7", "h8"]
    state: dict[str, dict[str, Any]] = {
        "same": {"pushed_hash": "h2", "status": "synced"},
        "edited": {"pushed_hash": "h3-old", "status": "synced"},
        "hopeless": {"status": "failed", "failed_hash": "h4", "attempts": 3},
        "hopeless-edited": {"status": "failed", "failed_hash": "h5-old", "attempts": 3},
        "legacy": {"status": "created"},  # booked by a version that kept no hash
        "deferred": {"status": "deferred"},
    }
    ready = [True, True, True, True, True, False, True, True]

    actions = plan_actions(keys, digests, digests, ready, state, max_attempts=3)

    assert dict(zip(keys, actions, strict=True)) == {
        "new": Action.CREATE,
        "same": Action.UNCHANGED,
        "edited": Action.UPDATE,
        "hopeless": Action.GIVE_UP,
        "hopeless-edited": Action.CREATE,  # new content starts counting again
        "orphan": Action.WAIT,  # its Company is not confirmed
        "legacy": Action.UPDATE,
        "deferred": Action.CREATE,
    }


def test_give_up_counts_the_failure_hash_not_the_digest():
    # A Timeline activity fails against its response's version, but is compared by what it shows.
    state = {"r1": {"pushed_hash": "shown-old", "failed_hash": "v2", "attempts": 2}}
    assert plan_actions(["r1"], ["shown-new"], ["v2"], [True], state, 2) == [Action.GIVE_UP]
    assert plan_actions(["r1"], ["shown-new"], ["v3"], [True], state, 2) == [Action.UPDATE]


def test_every_list_of_objects_comes_from_the_specs():
    assert OBJECTS == tuple(spec.name for spec in SPECS) == tuple(PushReport().objects)
    assert {spec.name: spec.key for spec in SPECS} == KEYS
    names = {spec.name for spec in SPECS}
    assert all(spec.depends_on in names | {None} for spec in SPECS)
    # a spec comes after the spec it depends on: the push order is the table's order
    assert all(OBJECTS.index(spec.depends_on) < OBJECTS.index(spec.name) for spec in SPECS if spec.depends_on)


# --- one error policy -------------------------------------------------------------------------------


def _exactly_once(connector, staged: int) -> None:
    keys = Counter(record["ResponseId__gc"] for record in connector.records())
    assert len(keys) == staged and set(keys.values()) == {1}
    people = Counter(person["Email"].lower() for person in connector.gainsight.records("Person"))
    assert set(people.values()) == {1}


def test_a_person_refused_for_a_reason_not_about_the_record_fails_the_run_like_any_object(gs_sandbox, staged_connector):
    # Before: people dead-lettered any refusal, so a 409 (or a misconfiguration) became a dead
    # letter per person while the other objects failed the run.
    gs = gs_sandbox()
    gs.add_fault(path=PEOPLE_PATH, status=409, times=1)
    _, connector = staged_connector(gs)  # 40 responses staged
    connector = push_only(connector)

    code, _ = connector.run()

    assert code == ExitCode.GAINSIGHT_API_ERROR
    assert connector.scalar("SELECT count(*) FROM gainsight.dead_letters") == 0
    assert gs.count_records(RESPONSE_OBJECT) == 40  # written before the people, where the run stopped

    code, result = connector.run()

    assert code == ExitCode.OK and result.push["people"].failed == 0
    _exactly_once(connector, 40)


# --- the dry run: the same plan, no side effect ------------------------------------------------------


def _fingerprint(connector) -> dict[str, str]:
    """A hash of the staging table, of every ledger table and of dlt's state, in DuckDB and on disk."""
    prints = {}
    with read_only(connector.staging.settings.duckdb_path) as db:
        tables = db.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('nps', 'gainsight') AND table_type = 'BASE TABLE' ORDER BY ALL"
        ).fetchall()
        for schema, table in tables:
            if table == "run_history" or table == "reported_problems":
                continue  # the run's own record: a dry run is a run
            rows = db.execute(f'SELECT * FROM "{schema}"."{table}" ORDER BY ALL').fetchall()
            prints[f"{schema}.{table}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    working = Path(connector.staging.settings.pipelines_dir)
    for path in sorted(working.rglob("*")):
        if path.is_file() and "trace" not in path.name:
            prints[str(path.relative_to(working))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return prints


def test_a_dry_run_fetches_and_plans_but_changes_no_staging_ledger_or_cursor(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    cg, connector = staged_connector(gs)  # staged by an earlier run
    assert push_only(connector).run()[0] == ExitCode.OK
    edited = int(connector.scalar("SELECT max(response_id) FROM nps.nps_responses"))
    cg.edit_response(edited, comment="changed")
    new_ids = cg.add_responses(4)
    before = _fingerprint(connector)
    gs.clear_log()
    cg.clear_log()

    code, result = connector.run(dry_run=True)

    assert code == ExitCode.OK
    plan = result.push
    assert plan.dry_run
    assert (plan["responses"].created, plan["responses"].updated) == (4, 1)  # read from CustomerGauge
    assert cg.count() > 0  # CustomerGauge was read ...
    assert all(entry.method == "POST" and "/query/" in entry.path for entry in gs.requests())  # ... Gainsight only queried
    assert _fingerprint(connector) == before  # no staging write, no cursor move, no ledger change
    assert result.changes.new == 4 and result.changes.updated == 1

    code, result = connector.run()  # the real run does what the dry run said

    assert code == ExitCode.OK
    assert (result.push["responses"].created, result.push["responses"].updated) == (4, 1)
    assert set(map(str, new_ids)) <= {record["ResponseId__gc"] for record in connector.records()}


# --- the sink: a failed push stays pending in dlt, and the next run finishes it once ----------------


def _pending_push_packages(connector) -> int:
    settings = connector.staging.settings
    pipeline = dlt.pipeline(pipeline_name=f"{settings.pipeline_name}_push", pipelines_dir=settings.pipelines_dir)
    return len(pipeline.list_normalized_load_packages())


def test_a_config_error_in_the_push_is_terminal_for_dlt_and_the_next_run_finishes_once(gs_sandbox, staged_connector, caplog):
    gs = gs_sandbox()
    _, connector = staged_connector(gs)  # 40 responses staged
    connector = push_only(connector)

    code, _ = connector.run(timeline_author_email="left.the.company@example.com")  # no such user

    # Before: dlt recorded the package as loaded although the push had failed.
    assert code == ExitCode.CONFIG_ERROR
    assert _pending_push_packages(connector) == 1
    assert gs.family_counts().get("timeline") == 1  # refused once; dlt did not retry the job on its own
    # The run stops instead of dead-lettering every activity; the responses before it are in, and in the ledger.
    assert connector.scalar("SELECT count(*) FROM gainsight.dead_letters") == 0
    assert len(connector.records()) == 40

    code, result = connector.run()  # the setting fixed: the activities follow

    assert code == ExitCode.OK
    assert "re-delivering 1 package(s)" in caplog.text
    assert _pending_push_packages(connector) == 0
    assert gs.count_records("activity_timeline") == 40
    assert Counter(a["ExternalId"] for a in gs.records("activity_timeline")).most_common(1)[0][1] == 1
    _exactly_once(connector, 40)
    assert result.push["responses"].created == 0  # the first run had landed them
