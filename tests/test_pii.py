"""PII and GDPR controls end to end: what Gainsight receives, what the staging file and dlt's working
folder keep, retention, and `forget` - against both sandboxes, read back from them.

The end-to-end tests cost 3-5 CPU-s each (the whole command, twice, with both sandboxes in-process):
what they prove (nothing clear left in any table, file byte or working-folder file after real runs,
and Gainsight's copies in the form the rules say) only the real pipeline shows. Seeds are small.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from connector_common import pii
from pipelines.errors import ExitCode
from pipelines.serve.spool import Event, Spool

from .cli import cli_env, push_env, run_main
from .conftest import RESPONSE_OBJECT, read_only

SALT = "test-salt-3b9d1e7f5a2c"


def clear_values(cg: Any) -> tuple[set[str], set[str]]:
    """(e-mails lower-cased, comments) CustomerGauge holds: what must not leak where the rules say so."""
    emails = {str(r["email"]).strip().lower() for r in cg.records if r.get("email")}
    comments = {str(r["comment"]) for r in cg.records if r.get("comment")}
    return emails, comments


def found_in_tables(path: Path, needles: set[str]) -> dict[str, int]:
    """`schema.table.column` -> rows holding any needle (case-insensitive), over every column of every
    table in the file, cast to text."""
    hits: dict[str, int] = {}
    lowered = [needle.lower() for needle in needles]
    with read_only(path) as conn:
        columns = conn.execute(
            """SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c
               JOIN information_schema.tables t USING (table_schema, table_name) WHERE t.table_type = 'BASE TABLE'"""
        ).fetchall()
        for schema, table, column in columns:
            values = conn.execute(f'SELECT lower(CAST("{column}" AS VARCHAR)) FROM "{schema}"."{table}"').fetchall()
            count = sum(1 for (value,) in values if value and any(needle in value for needle in lowered))
            if count:
                hits[f"{schema}.{table}.{column}"] = count
    return hits


def found_in_bytes(paths: list[Path], needles: set[str]) -> dict[str, list[str]]:
    """file -> the needles its raw bytes hold (ASCII case folded)."""
    hits: dict[str, list[str]] = {}
    for path in paths:
        data = path.read_bytes().lower()
        present = sorted(needle for needle in needles if needle.encode().lower() in data)
        if present:
            hits[str(path)] = present
    return hits


def checkpointed(path: Path) -> list[Path]:
    """The DuckDB file after a CHECKPOINT, and its WAL if one is left: every byte DuckDB keeps."""
    with duckdb.connect(str(path)) as conn:
        conn.execute("CHECKPOINT")
    return [p for p in (path, path.with_name(path.name + ".wal")) if p.exists()]


def working_folder(connector: Any) -> list[Path]:
    return [p for p in Path(connector.staging.settings.pipelines_dir).rglob("*") if p.is_file()]


def run(connector: Any, rules: pii.PiiSettings, **gs: Any) -> Any:
    connector.staging.settings = replace_pii(connector.staging.settings, rules)
    code, result = connector.run(**gs)
    assert code == ExitCode.OK, code
    return result


def replace_pii(settings: Any, rules: pii.PiiSettings) -> Any:
    from dataclasses import replace

    return replace(settings, pii=rules)


@pytest.mark.parametrize(
    ("email", "comment"),
    [("hash", "drop"), ("mask", "truncate:12")],
)
def test_rules_reach_gainsight_and_nothing_clear_stays_anywhere(cg_sandbox, gs_sandbox, connector_for, email, comment):
    cg = cg_sandbox(responses=60, days=8, accounts=4)
    gs = gs_sandbox()
    connector = connector_for(cg, gs)
    emails, comments = clear_values(cg)
    rules = pii.PiiSettings(push_email=email, push_comment=comment, stage_email=email, stage_comment=comment, hash_salt=SALT)

    first = run(connector, rules)

    # What Gainsight received, read back from the sandbox.
    records = connector.records()
    assert len(records) == 60
    by_id = {str(r["number_customergauge"]): r for r in cg.records}
    for record in records:
        raw = by_id[record["ResponseId__gc"]]
        address = (raw.get("email") or "").strip().lower()
        expected = pii.apply_row({"email": address or None, "comment": raw.get("comment")}, rules.push)
        assert record["PersonEmail__gc"] == expected["email"]
        assert record["Comment__gc"] == expected["comment"]
    sent = {r["PersonEmail__gc"] for r in records if r["PersonEmail__gc"]}
    assert sent and not sent & emails
    if email == "hash":  # salted and stable: the same person, the same value
        assert sent == {pii.hashed_email(address, SALT) for address in emails}
    activities = gs.records("activity_timeline")
    assert activities and not any(address in (a["Subject"] or "") for a in activities for address in emails)
    assert all(a["Notes"] is None or len(a["Notes"]) <= 12 for a in activities)
    # People upserts need the clear address: skipped, so no Person and no Company_Person.
    assert gs.count_records("Person") == 0 and gs.count_records("Company_Person") == 0
    assert first.privacy and first.privacy.emails > 0

    # The source re-reads its lookback window: the merge brings clear values back, the run removes them.
    second = run(connector, rules)
    assert second.push["responses"].created == second.push["responses"].updated == 0

    long_comments = {text for text in comments if len(text) > 12}
    needles = emails | long_comments
    path = connector.staging.settings.duckdb_path
    assert found_in_tables(path, needles) == {}
    assert found_in_bytes(checkpointed(path), needles | {SALT}) == {}
    assert found_in_bytes(working_folder(connector), needles | {SALT}) == {}


def test_new_push_rules_resend_once_and_the_people_ledger_keeps_gainsights_key(cg_sandbox, gs_sandbox, connector_for):
    cg = cg_sandbox(responses=25, days=8, accounts=3)
    gs = gs_sandbox()
    connector = connector_for(cg, gs)
    emails, _ = clear_values(cg)
    run(connector, pii.PiiSettings())
    assert {r["PersonEmail__gc"] for r in connector.records()} & emails
    assert gs.count_records("Person") == len(emails)

    # Gainsight should not keep copies the new rules forbid: every response and Timeline entry is
    # sent once more, in the new form (Persons stay: the People API has no documented delete).
    hashed = pii.PiiSettings(push_email="hash", stage_email="hash", hash_salt=SALT)
    result = run(connector, hashed)
    assert result.push["responses"].updated == 25 and result.push["activities"].updated > 0
    sent = {r["PersonEmail__gc"] for r in connector.records() if r["PersonEmail__gc"]}
    assert sent == {pii.hashed_email(address, SALT) for address in emails}
    assert not any(address in a["Subject"] for a in gs.records("activity_timeline") for address in emails)
    again = run(connector, hashed)
    assert again.push["responses"].updated == again.push["activities"].updated == 0

    # Staging holds no clear address; the people ledger keys each Person Gainsight holds by its Email.
    assert set(found_in_tables(connector.staging.settings.duckdb_path, emails)) == {"gainsight.people.email"}


def test_retention_deletes_old_quarantined_payloads_and_nulls_old_comments(cg_sandbox, gs_sandbox, connector_for):
    cg = cg_sandbox(responses=40, days=10, accounts=3, invalid=3)
    gs = gs_sandbox()
    connector = connector_for(cg, gs)
    code, _ = connector.run()
    assert code == ExitCode.QUARANTINED
    quarantined = connector.scalar("SELECT count(*) FROM nps.quarantine")
    assert quarantined > 0
    old = connector.scalar(
        "SELECT count(*) FROM nps.nps_responses WHERE comment IS NOT NULL AND responded_at < now() - INTERVAL 5 DAY"
    )
    assert old > 0
    connector.staging.settings = replace_pii(
        connector.staging.settings, pii.PiiSettings(quarantine_retention_days=0, comment_retention_days=5)
    )

    code, result = connector.run()

    assert code == ExitCode.OK  # the one re-read in the lookback is quarantined again: seen before, deleted again
    assert result.privacy.expired_comments == old and result.privacy.quarantine_deleted == quarantined
    assert connector.scalar("SELECT count(*) FROM nps.quarantine") == 0
    assert connector.scalar(
        "SELECT count(*) FROM nps.nps_responses WHERE comment IS NOT NULL AND responded_at < now() - INTERVAL 5 DAY"
    ) == 0
    # Gainsight keeps what it was sent: retention is about the staging file.
    assert sum(1 for r in connector.records() if r["Comment__gc"]) > 0


def forget_env(connector: Any, project: Path) -> dict[str, str]:
    """The command's environment for the connector's staging file and working folder."""
    settings = connector.staging.settings
    return push_env(
        connector.staging.sandbox,
        connector.gainsight,
        project,
        DESTINATION__DUCKDB__CREDENTIALS=str(settings.duckdb_path),
        NPS_TO_GAINSIGHT__PIPELINES_DIR=settings.pipelines_dir,
        NPS_TO_GAINSIGHT__PIPELINE_NAME=settings.pipeline_name,
        NPS_TO_GAINSIGHT__PII__HASH_SALT=SALT,
    )


def deletes(gs: Any) -> int:
    return sum(1 for entry in gs.requests() if entry.method == "DELETE")


def test_forget_dry_run_then_erase_everywhere_then_nothing_to_do(cg_sandbox, gs_sandbox, connector_for, project):
    cg = cg_sandbox(responses=30, days=8, accounts=3)
    gs = gs_sandbox()
    # The tenant wants the activity id in a JSON body: the query-parameter form is refused first.
    gs.variants.missing_record, gs.variants.activity_delete = "not_found", "body"
    mine = [r for r in cg.records if r.get("email")]
    address = str(mine[0]["email"]).strip().lower()
    theirs = [r for r in mine if str(r["email"]).strip().lower() == address]
    invalid = mine[1] if len(theirs) == 1 else theirs[1]  # one more response of theirs, quarantined
    cg.edit_response(invalid["number_customergauge"], email=mine[0]["email"], nps=11)
    connector = connector_for(cg, gs)
    assert connector.run()[0] == ExitCode.QUARANTINED
    ids = [str(r["number_customergauge"]) for r in theirs if r is not invalid]
    path = connector.staging.settings.duckdb_path
    env = forget_env(connector, project)
    (project / "exports").mkdir()
    with duckdb.connect(str(path)) as conn:  # a webhook event of theirs `serve` has not staged yet
        Spool(conn).append([Event(int(ids[0]), json.dumps(theirs[0]).encode())])
    exported = run_main("export-csv", "--out", str(project / "exports"), cwd=project, env=env)
    assert exported.returncode == 0, exported.stderr
    exports = [p for p in (project / "exports").rglob("*") if p.is_file()]
    assert found_in_bytes(exports, {address})
    before = (len(connector.records()), len(gs.records("activity_timeline")), found_in_tables(path, {address}))
    assert before[2], "the person is staged before forget"

    dry = run_main("forget", "--email", address.upper(), cwd=project, env=env)

    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing changed" in dry.stdout and f"responses: {len(ids) + 1}" in dry.stdout
    assert "left alone: a Person in Gainsight" in dry.stdout  # the dry run says what --yes will not erase
    assert "webhooks.spool 1" in dry.stdout
    assert len(ids) == 1 and "gainsight: --yes would delete 1 response record, 1 Timeline entry" in dry.stdout
    assert (len(connector.records()), len(gs.records("activity_timeline")), found_in_tables(path, {address})) == before
    assert deletes(gs) == 0

    # A forget killed after deleting in Gainsight: one record is gone already (answered GSOBJ_1004 / 404).
    gs_record = next(r for r in connector.records() if r["ResponseId__gc"] == ids[0])
    gs.delete_record(RESPONSE_OBJECT, gs_record["Gsid"])

    done = run_main("forget", "--email", address, "--yes", cwd=project, env=env)

    assert done.returncode == 0, done.stderr
    assert "erased" in done.stdout
    # the record deleted before this forget is confirmed gone without a second delete
    assert "gainsight: 0 response records, 1 Timeline entry deleted" in done.stdout
    assert not {r["ResponseId__gc"] for r in connector.records()} & set(ids)
    assert not {a["ExternalId"] for a in gs.records("activity_timeline")} & {f"cg-nps-{i}" for i in ids}
    assert len(connector.records()) == before[0] - len(ids)  # nobody else's
    assert found_in_tables(path, {address, pii.hashed_email(address, SALT)}) == {}
    assert found_in_bytes(checkpointed(path), {address}) == {}
    assert found_in_bytes(exports, {address}) == {} and f"{len(ids)} CSV row(s) in 1 file(s)" in done.stdout
    ledger = connector.query(
        "SELECT count(*) FROM gainsight.responses WHERE list_contains(?, response_id) "
        "UNION ALL SELECT count(*) FROM gainsight.activities WHERE list_contains(?, response_id)",
        [ids, ids],
    )
    assert ledger == [(0,), (0,)]
    for output in (dry, done):
        assert address not in (output.stdout + output.stderr).lower()

    calls = deletes(gs)
    again = run_main("forget", "--email", address, "--yes", cwd=project, env=env)
    assert again.returncode == 0, again.stderr
    assert "responses: 0" in again.stdout and deletes(gs) == calls


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"push_email": "hash"}, "hash_salt"),
        ({"stage_email": "hash", "hash_salt": "short"}, "hash_salt"),
        ({"push_email": "encrypt"}, "push_email"),
        ({"push_comment": "truncate"}, "push_comment"),
        ({"stage_comment": "truncate:-3"}, "stage_comment"),
        ({"comment_retention_days": "a week"}, "comment_retention_days"),
        ({"quarantine_retention_days": -1}, "quarantine_retention_days"),
    ],
)
def test_invalid_settings_name_their_key(values, key):
    with pytest.raises(pii.InvalidPiiSetting) as refused:
        pii.parse(values)
    assert refused.value.key == key


def test_rules_are_stable_idempotent_and_leave_other_columns_alone():
    rules = pii.Rules("hash", "truncate:4", SALT)
    table = pii.apply(
        pa.table({"email": [" Jane@Acme.com", "jane@acme.com", None], "comment": ["Great", None, "ok"], "score": [9, 3, 7]}),
        rules,
    )
    first, second, _ = table["email"].to_pylist()
    assert first == second == pii.hashed_email("jane@acme.com", SALT) and first.endswith("@hashed.invalid")
    assert first != pii.hashed_email("jane@acme.com", SALT + "x")  # salted
    assert table["comment"].to_pylist() == ["Grea", None, "ok"] and table["score"].to_pylist() == [9, 3, 7]
    assert pii.apply(table, rules).equals(table)  # scrubbing twice changes nothing
    masked = pii.apply_row({"email": "jane@acme.com", "comment": "Great"}, pii.Rules("mask", "drop"))
    assert masked == {"email": "j***@acme.com", "comment": None}
    assert pii.person_label("jane@acme.com", SALT) != pii.person_label("jane@acme.com", None) == "person j***@acme.com"


def test_hash_without_a_salt_stops_the_run_with_exit_2_naming_key_and_env_var(project):
    env = cli_env(project=project, NPS_TO_GAINSIGHT__PII__PUSH_EMAIL="hash")

    refused = run_main("--stage-only", cwd=project, env=env)

    assert refused.returncode == ExitCode.CONFIG_ERROR
    assert "nps_to_gainsight.pii.hash_salt" in refused.stderr and "NPS_TO_GAINSIGHT__PII__HASH_SALT" in refused.stderr
    salted = {**env, "NPS_TO_GAINSIGHT__PII__HASH_SALT": SALT}
    nothing_staged = run_main("forget", "--email", "nobody@example.com", "--yes", cwd=project, env=salted)
    # No staging file: nothing known to erase in Gainsight either (the ids come from staging); not "erased".
    assert nothing_staged.returncode == ExitCode.CONFIG_ERROR and "no staging file at" in nothing_staged.stderr
    assert "erased" not in nothing_staged.stdout and SALT not in nothing_staged.stdout + nothing_staged.stderr
    assert not (project / "staging.duckdb").exists() and not (project / "pipelines").exists()


@pytest.mark.parametrize(
    "rules",
    [pii.Rules("hash", "drop", SALT), pii.Rules("mask", "truncate:3"), pii.Rules("keep", "keep"), pii.Rules("hash", "keep", SALT)],
)
def test_the_sql_says_which_rows_the_transform_changes(rules):
    """The staging scrub reads only the rows `changes_sql` selects: exactly those `apply` changes."""
    emails = ["jane@acme.com", pii.hashed_email("x@y.com", SALT), "j***@acme.com", None]
    comments = ["Great", "ok", None, "Fine thanks"]
    rows = pa.table({"email": [e for e in emails for _ in comments], "comment": comments * len(emails)})
    changed = pii.apply(rows, rules)
    expected = [a != b for a, b in zip(rows.to_pylist(), changed.to_pylist(), strict=True)]
    with duckdb.connect() as conn:
        selected = [bool(row[0]) for row in conn.sql(f"SELECT {pii.changes_sql(rules)} FROM rows").fetchall()]
    assert selected == expected
