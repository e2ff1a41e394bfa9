"""`export-csv`: the survey-import CSV, checked against the staging it comes from.

One staging file per module, built by the real run (stage and push, so the ledger knows Company
ids) against both sandboxes, with hostile text seeded in CustomerGauge; each test exports from its
own copy of it.
"""

from __future__ import annotations

import csv
import io
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.errors import WARNINGS, ExitCode
from pipelines.export import erase_person
from pipelines.export.columns import HEADER as WRITTEN
from pipelines.settings import RunSettings
from sandbox.customergauge import CustomerGaugeSandbox, SeedSpec
from sandbox.gainsight import BulkJob, GainsightSandbox

from .cli import cli_env, run_cli, run_main
from .conftest import (
    ACCESS_KEY,
    BULK_JOB,
    CLIENT_ID,
    CLIENT_SECRET,
    GS_CLIENT_ID,
    GS_CLIENT_SECRET,
    REPO,
    RESPONSE_OBJECT,
    Connector,
    Staging,
)

# The module's staged world is built once per process that runs its tests: keep them on one xdist
# worker, or each worker stages it again (~3 s each).
pytestmark = pytest.mark.xdist_group("export_csv")

# The documented header (README "Survey CSV export"), in its documented order.
HEADER = [
    "response_id", "company_gsid", "account_id", "account_name", "email", "first_name", "last_name", "score",
    "category", "comment", "survey_id", "survey_name", "touchpoint", "responded_at", "language", "channel",
]
TEXT = ["response_id", "account_id", "account_name", "email", "first_name", "last_name", "category", "comment",
        "survey_id", "touchpoint", "language", "channel"]
HOSTILE = [
    "commas, in, the, middle",
    'she said "no", then "yes"',
    "line one\r\nline two\nline three\rline four",
    "nul\x00inside",
    "\u200fright-to-left mark, \u202eoverride\u202c and back",
    "emoji 👍🏽 👨\u200d👩\u200d👧 🇳🇱",
    '=HYPERLINK("http://evil.example","click")',
    "+31 20 555 0100",
    "-2+3",
    "@SUM(A1:A2)",
    "\tleading tab",
    "\rleading carriage return",
    "'already an apostrophe",
]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HOSTILE_EMAIL = "-odd.address@example.com"


@dataclass
class World:
    cg: CustomerGaugeSandbox
    staged: Path  # the module's staging file, never exported from directly
    hostile_ids: list[str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("export_world")
    seed = SeedSpec(responses=40, days=6, accounts=4, invalid=0, non_responses=0, seed=23)
    with CustomerGaugeSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, seed=seed) as cg:
        hostile_ids = _seed_hostile_text(cg)
        gs = GainsightSandbox(
            ACCESS_KEY, GS_CLIENT_ID, GS_CLIENT_SECRET, quotas=False,
            bulk_jobs=[BulkJob(BULK_JOB, RESPONSE_OBJECT, "UPSERT", keys=("ResponseId__gc",))],
        )
        gs.start()
        try:
            settings = RunSettings(folder / "staging.duckdb", "export_world", "nps", str(folder / "pipelines"))
            code, _ = Connector(Staging(settings, cg, 40), gs).run()
            assert code in (ExitCode.OK, *WARNINGS), code  # completed; Gainsight may refuse hostile people
        finally:
            gs.close()
        yield World(cg, settings.duckdb_path, hostile_ids)


def _seed_hostile_text(cg: CustomerGaugeSandbox) -> list[str]:
    """Hostile values in every text field the CSV carries, on as many responses as there are values."""
    responses = [record for record in cg.records if "nps" in record][: len(HOSTILE)]
    for number, (record, text) in enumerate(zip(responses, HOSTILE, strict=True)):
        properties = [dict(pair) for pair in record["properties"]]
        for pair in properties:
            if pair["field"] in ("Touchpoint", "Language", "Channel", "Survey ID"):
                pair["reference"] = HOSTILE[(number + len(pair["field"])) % len(HOSTILE)]
        changes: dict[str, Any] = {
            "comment": text,
            "contact": {"first_name": HOSTILE[-1 - number], "last_name": text},
            "properties": properties,
        }
        if number == 0:
            changes["email"] = HOSTILE_EMAIL
        if number == 1:
            changes["account"] = {"name": "Acme, \"Widgets\"\r\n=Holdings"}
        cg.edit_response(record["number_customergauge"], **changes)
    return [str(record["number_customergauge"]) for record in responses]


@dataclass
class Copy:
    """One test's copy of the staging file, configured like a scheduled job, and its export folder."""

    project: Path
    out: Path
    env: dict[str, str]

    @property
    def path(self) -> Path:
        return self.project / "staging.duckdb"

    def export(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_main("export-csv", "--out", str(self.out), *args, cwd=self.project, env={**self.env, **env})

    def files(self) -> list[Path]:
        return sorted(self.out.glob("nps_responses_*.csv"))

    def staged(self) -> dict[str, dict[str, Any]]:
        """Every staged response with its ledger Company id, by response id: what the CSV must say."""
        with duckdb.connect(str(self.path), read_only=True) as db:
            cursor = db.execute(
                "SELECT r.*, c.gsid AS company_gsid FROM nps.nps_responses r "
                "LEFT JOIN gainsight.companies c ON c.account_id = r.account_id AND c.gsid IS NOT NULL"
            )
            names = [column[0] for column in cursor.description]
            return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


@pytest.fixture
def copy(world: World, project: Path) -> Copy:
    shutil.copy(world.staged, project / "staging.duckdb")
    out = project / "out"
    out.mkdir()
    return Copy(project, out, cli_env(project=project))


def parse(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # no byte-order mark (README: why)
    assert raw.startswith(",".join(HEADER).encode() + b"\r\n") and raw.endswith(b"\r\n")
    records = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert records[0] == HEADER
    return [dict(zip(HEADER, record, strict=True)) for record in records[1:]]


def expected_row(staged: dict[str, Any]) -> dict[str, str]:
    """A staged response as the CSV must hold it with the guard off: text byte for byte."""
    row = {name: staged[name] or "" for name in TEXT}
    row["company_gsid"] = staged["company_gsid"] or ""
    row["score"] = str(staged["score"])
    row["survey_name"] = ""  # not staged (CustomerGauge sends no survey name)
    row["responded_at"] = staged["responded_at"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return row


def test_the_csv_parsed_back_equals_staging_byte_for_byte(copy: Copy, world: World):
    result = copy.export("--all", NPS_TO_GAINSIGHT__EXPORT__FORMULA_GUARD="false")

    assert result.returncode == 0, result.stderr
    [path] = copy.files()
    assert f"wrote 40 response(s) to {path}" in result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # e-mails, names and comments
    staged = copy.staged()
    rows = parse(path)
    assert [row["response_id"] for row in rows] == sorted(
        staged, key=lambda rid: (staged[rid]["responded_at"], rid)
    )
    assert rows == [expected_row(staged[row["response_id"]]) for row in rows]
    # the hostile values reached staging intact, so the comparison above covered them
    assert [staged[rid]["comment"] for rid in world.hostile_ids] == HOSTILE
    assert staged[world.hostile_ids[0]]["email"] == HOSTILE_EMAIL
    assert any(row["company_gsid"] for row in rows)  # the ledger knows the Companies after the push
    assert not list(copy.out.glob(".*"))  # no temp file left


def test_the_formula_guard_adds_exactly_one_apostrophe_and_is_on_by_default(copy: Copy):
    result = copy.export("--all")

    assert result.returncode == 0, result.stderr
    [path] = copy.files()
    staged = copy.staged()
    guarded_cells = 0
    for row in parse(path):
        for name, cell in expected_row(staged[row["response_id"]]).items():
            if cell.startswith(FORMULA_STARTS):
                assert row[name] == "'" + cell
                guarded_cells += 1
            else:
                assert row[name] == cell
    assert guarded_cells >= 8


def test_incremental_exports_write_only_new_and_changed_responses(copy: Copy, world: World):
    first = copy.export()
    assert first.returncode == 0, first.stderr
    assert len(parse(copy.files()[0])) == 40
    again = copy.export()
    assert again.returncode == 0, again.stderr
    assert "no incremental rows to export; no file written" in again.stdout
    assert len(copy.files()) == 1

    edited = world.hostile_ids[2]
    world.cg.edit_response(int(edited), comment="edited, after the first export\r\n=still hostile")
    added = {str(cgid) for cgid in world.cg.add_responses(2)}
    stage = Staging(
        RunSettings(copy.path, "export_copy", "nps", str(copy.project / "pipelines"), stage_only=True), world.cg, 40
    )
    assert stage.run()[0] == ExitCode.OK

    changed = copy.export()
    assert changed.returncode == 0, changed.stderr
    newest = copy.files()[-1]
    rows = parse(newest)
    assert {row["response_id"] for row in rows} == added | {edited}
    assert [row["comment"] for row in rows if row["response_id"] == edited] == [
        "edited, after the first export\r\n=still hostile"
    ]
    everything = copy.export("--all")
    assert everything.returncode == 0, everything.stderr
    assert len(parse(copy.files()[-1])) == 42 and len(copy.files()) == 3

    day = rows[0]["responded_at"][:10]
    ranged = copy.export("--all", "--since", day, "--until", day)
    assert ranged.returncode == 0, ranged.stderr
    on_that_day = [rid for rid, staged in copy.staged().items() if expected_row(staged)["responded_at"][:10] == day]
    assert sorted(row["response_id"] for row in parse(copy.files()[-1])) == sorted(on_that_day)


KILLED_AT_THE_RENAME = """
import os, signal, sys
sys.path.insert(0, {repo!r})
rename = os.replace
def dying_replace(*args):
    if {after}:
        rename(*args)
    os.kill(os.getpid(), signal.SIGKILL)
os.replace = dying_replace  # the file's publication, the one place it is renamed
from pipelines import nps_to_gainsight
nps_to_gainsight.main(sys.argv[1:])
"""


@pytest.mark.parametrize("after", [False, True], ids=["before the rename", "after the rename, before the booking"])
def test_a_kill_at_publication_loses_no_row(copy: Copy, after: bool, tmp_path: Path):
    # A child process each (forked from the zygote), because the point is a real kill -9 at that instant.
    script = tmp_path / "killed_at_the_rename.py"
    script.write_text(KILLED_AT_THE_RENAME.format(repo=str(REPO), after=after))
    killed = run_cli("export-csv", "--out", str(copy.out), cwd=copy.project, env=copy.env, script=str(script))

    assert killed.returncode == -9, killed.stderr
    leftovers = list(copy.out.glob(".nps_responses_*.tmp"))
    if after:  # published whole, never booked
        [published] = copy.files()
        assert len(parse(published)) == 40 and leftovers == []
    else:  # written, never published: nothing under a final name
        assert copy.files() == [] and len(leftovers) == 1 and leftovers[0].stat().st_size > 0
    result = copy.export()
    assert result.returncode == 0, result.stderr
    assert len(parse(copy.files()[-1])) == 40  # the state did not advance: every row comes again
    assert list(copy.out.glob(".nps_responses_*.tmp")) == []


def test_erase_person_rewrites_the_files_and_forgets_the_state(copy: Copy, world: World):
    assert copy.export("--all").returncode == 0
    assert copy.export("--all").returncode == 0
    first, second = copy.files()
    moved = copy.project / "moved.csv"
    second.rename(moved)  # a pick-up job took this one
    before = first.read_bytes()
    person_ids = {world.hostile_ids[0]}

    with duckdb.connect(str(copy.path)) as db:
        dry = erase_person(db, "nps", f"  {HOSTILE_EMAIL.upper()} ", dry_run=True)
        assert first.read_bytes() == before
        done = erase_person(db, "nps", HOSTILE_EMAIL.upper())
        left = db.execute(
            "SELECT count(*) FROM gainsight.csv_exported WHERE list_contains(?, response_id)", [sorted(person_ids)]
        ).fetchall()[0][0]
        recorded = db.execute("SELECT rows FROM gainsight.csv_exports ORDER BY written_at").fetchall()

    assert dry == done
    assert (done.state_rows, done.files_rewritten, done.rows_removed, done.files_missing) == (1, (first,), 1, 1)
    assert left == 0 and recorded == [(39,), (40,)]
    kept = [line for line in _records(before) if not line.startswith(f"{world.hostile_ids[0]},".encode())]
    assert first.read_bytes() == b"".join(kept)  # every other row byte for byte as it was
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert HOSTILE_EMAIL.encode() not in first.read_bytes()


def _records(raw: bytes) -> list[bytes]:
    """The raw bytes of each record of a CSV (header first), split where the csv module ends one."""
    text = raw.decode("utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    records, start = [], 0
    for _ in reader:
        end = _record_end(text, start)
        records.append(text[start:end].encode("utf-8"))
        start = end
    return records


def _record_end(text: str, start: int) -> int:
    """Where the record starting at `start` ends (after its CRLF), skipping CRLFs inside quotes."""
    quoted = False
    i = start
    while True:
        char = text[i]
        if char == '"':
            quoted = not quoted
        elif not quoted and text.startswith("\r\n", i):
            return i + 2
        i += 1


def test_a_held_staging_file_exits_4_and_writes_nothing(copy: Copy):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); input()",
         str(copy.path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = copy.export()
    finally:
        holder.communicate("\n", timeout=30)
    assert result.returncode == ExitCode.LOCKED, result.stderr
    assert "in use by another process" in result.stderr
    assert list(copy.out.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--since", "2026-02-01", "--until", "2026-01-01"], {}, "is after --until"),
        (["--dry-run"], {}, "unrecognized arguments"),
        ([], {"NPS_TO_GAINSIGHT__EXPORT__FORMULA_GAURD": "false"}, "NPS_TO_GAINSIGHT__EXPORT__FORMULA_GUARD"),
        ([], {"NPS_TO_GAINSIGHT__EXPORT__FORMULA_GUARD": "maybe"}, "must be true or false"),
    ],
)
def test_bad_arguments_and_settings_exit_2(copy: Copy, args: list[str], env: dict[str, str], message: str):
    result = copy.export(*args, **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert list(copy.out.iterdir()) == []


def test_a_missing_out_folder_or_staging_file_exits_2(copy: Copy):
    missing_out = run_main("export-csv", "--out", str(copy.out / "nope"), cwd=copy.project, env=copy.env)
    assert missing_out.returncode == 2 and "no such folder" in missing_out.stderr
    copy.path.unlink()
    no_staging = copy.export()
    assert no_staging.returncode == 2 and "no staging file" in no_staging.stderr
    assert not copy.path.exists()  # not created by the export


def test_the_readme_lists_the_header_in_its_order():
    """The README's column table is the interface a rule is mapped by: it cannot drift from the file."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("| Column (header, in this order) |", 1)[1].split("\n\n", 1)[0]
    documented = [
        name.strip().strip("`")
        for row in table.splitlines()[2:]
        for name in row.split("|")[1].split(",")
    ]
    assert documented == list(WRITTEN) == HEADER
