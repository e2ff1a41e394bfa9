"""The shipped defaults, as a new operator meets them: `.dlt/config.toml` untouched, only tenant URLs
and secrets in the environment, the command run from the project folder exactly as README says."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from destinations.gainsight.multipart import BulkFile
from pipelines.errors import ConfigError
from pipelines.settings import RunSettings, check_names, load_run_settings
from pipelines.staging import StagingStore
from sandbox.customergauge import CustomerGaugeSandbox, SeedSpec
from sandbox.gainsight import BulkJob, GainsightSandbox

from .cli import run_cli
from .conftest import ACCESS_KEY, AUTHOR, BULK_JOB, CLIENT_ID, CLIENT_SECRET, REPO, RESPONSE_OBJECT

COMMAND = str(REPO / "pipelines" / "nps_to_gainsight.py")
DEFAULT_FILE = "nps_to_gainsight.duckdb"
DEFAULT_WORKING_FOLDER = "nps_to_gainsight.pipelines"
README_QUERY = "SELECT * FROM nps.nps_daily ORDER BY day DESC LIMIT 7"
SEEDED = 24  # few enough that a run stays under the shipped sync quota (100 calls a minute)

# The shipped runs are made once per module: keep the tests reading them on one xdist worker.
pytestmark = pytest.mark.xdist_group("shipped")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@dataclass
class ShippedRuns:
    """The command run twice on the shipped config; what each run printed and what Gainsight saw."""

    project: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    writes_after_first: int
    writes_after_second: int
    records_in_gainsight: int


def operator_env(cg: CustomerGaugeSandbox, gs: GainsightSandbox) -> dict[str, str]:
    """What README asks an operator to set: tenant URLs and secrets, nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__", "NPS_TO_GAINSIGHT__", "RUNTIME__"))}
    env.update(
        SOURCES__CUSTOMERGAUGE__API_BASE_URL=cg.base_url,
        SOURCES__CUSTOMERGAUGE__TOKEN_URL=cg.token_url,
        SOURCES__CUSTOMERGAUGE__CLIENT_ID=CLIENT_ID,
        SOURCES__CUSTOMERGAUGE__CLIENT_SECRET=CLIENT_SECRET,
        DESTINATION__GAINSIGHT__BASE_URL=gs.base_url,
        DESTINATION__GAINSIGHT__ACCESS_KEY=ACCESS_KEY,
        DESTINATION__GAINSIGHT__TIMELINE_AUTHOR_EMAIL=AUTHOR,
    )
    return env


def tool_env() -> dict[str, str]:
    """dlt's tools as an operator runs them; this checkout's code first (the venv may hold another)."""
    return {**os.environ, "PYTHONPATH": str(REPO), "RUNTIME__DLTHUB_TELEMETRY": "false"}


def run_command(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Exactly as README says: a fresh `python pipelines/nps_to_gainsight.py` in the project folder."""
    return subprocess.run([sys.executable, COMMAND], cwd=project, env=env, capture_output=True, text=True, timeout=300)


def writes(gs: GainsightSandbox) -> int:
    """Requests that change something in Gainsight (queries, metadata and tokens do not)."""
    return sum(
        1
        for entry in gs.requests()
        if entry.method in ("POST", "PUT", "DELETE")
        and not any(part in entry.path for part in ("/query/", "/meta/", "token"))
    )


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> ShippedRuns:
    """A project folder holding the repository's `.dlt` folder as shipped (no secrets.toml), where
    `python pipelines/nps_to_gainsight.py` ran twice, as README tells a new operator: the first in a
    fresh interpreter, the second (the next scheduled run) in a process forked from the zygote
    (tests/cli.py `run_cli`: the same script, folder and environment, without importing dlt again)."""
    project = tmp_path_factory.mktemp("shipped") / "project"
    shutil.copytree(REPO / ".dlt", project / ".dlt", ignore=shutil.ignore_patterns("secrets.toml"))
    assert (project / ".dlt" / "config.toml").read_bytes() == (REPO / ".dlt" / "config.toml").read_bytes()
    seed = SeedSpec(responses=SEEDED, days=10, accounts=3, seed=11)
    job = BulkJob(BULK_JOB, RESPONSE_OBJECT, "UPSERT", keys=("ResponseId__gc",))
    with (
        CustomerGaugeSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, seed=seed) as cg,
        GainsightSandbox(ACCESS_KEY, bulk_jobs=[job], quotas=False) as gs,
    ):
        # The tenant as README's admin setup leaves it: each account's Company carries the key
        # (the shipped config matches by key and never creates or renames Companies).
        for account_id, name in cg.accounts().items():
            gs.add_record("Company", {"Name": name, "CG_Account_Id__gc": account_id})
        env = operator_env(cg, gs)
        first = run_command(project, env)
        writes_after_first = writes(gs)
        second = run_cli(cwd=project, env=env, timeout=300)
        return ShippedRuns(project, first, second, writes_after_first, writes(gs), gs.count_records(RESPONSE_OBJECT))


def test_shipped_config_runs_twice_with_only_urls_and_secrets(shipped):
    first, second = shipped.first, shipped.second

    assert first.returncode == 0, first.stderr
    assert f"fetched {SEEDED}, new {SEEDED}" in first.stderr
    assert f"responses created {SEEDED}" in first.stderr
    assert shipped.writes_after_first > 0
    assert second.returncode == 0, second.stderr
    assert "new 0, updated 0" in second.stderr and "responses created 0, updated 0" in second.stderr
    assert shipped.writes_after_second == shipped.writes_after_first, "the second run wrote to Gainsight"
    assert shipped.records_in_gainsight == SEEDED
    staging = shipped.project / DEFAULT_FILE
    with duckdb.connect(str(staging), read_only=True) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT response_id) FROM nps.nps_responses").fetchone() == (SEEDED, SEEDED)


def test_shipped_defaults_keep_personal_data_private(shipped):
    """The DuckDB file 0600 and dlt's working folder 0700, next to the file and named after it."""
    assert shipped.first.returncode == 0, shipped.first.stderr
    assert sorted(p.name for p in shipped.project.iterdir()) == [".dlt", DEFAULT_FILE, DEFAULT_WORKING_FOLDER]
    assert mode(shipped.project / DEFAULT_FILE) == 0o600
    working_folder = shipped.project / DEFAULT_WORKING_FOLDER
    assert mode(working_folder) == 0o700
    assert {p.name for p in working_folder.iterdir()} == {"nps_to_gainsight", "nps_to_gainsight_push"}
    for path in working_folder.rglob("*"):
        assert mode(path) & 0o077 == 0, path


def test_duckdb_cli_from_the_venv_opens_the_file_read_only(shipped):
    """README's inspection recipe with the pinned duckdb-cli, on a file the command wrote."""
    project, first = shipped.project, shipped.first
    assert first.returncode == 0, first.stderr
    cli = shutil.which("duckdb", path=str(Path(sys.executable).parent))
    assert cli, "duckdb-cli is not installed in this venv (pip install -e '.[test]')"

    def query(sql: str) -> list[str]:
        shown = subprocess.run([cli, "-readonly", "-csv", DEFAULT_FILE, sql], cwd=project, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        return shown.stdout.splitlines()

    days = query(README_QUERY)
    assert days[0] == "day,responses,promoters,passives,detractors,nps" and 1 < len(days) <= 1 + 7
    assert query("SELECT sum(responses) FROM nps.nps_daily")[1] == str(SEEDED)


def test_dlt_attach_dataset_queries_the_staged_responses(shipped, tmp_path):
    """README's dlt recipe: attach to the staging pipeline and query the file read-only through dlt."""
    project, first = shipped.project, shipped.first
    assert first.returncode == 0, first.stderr
    recipe = (
        "import dlt, duckdb\n"
        f"connection = duckdb.connect('{DEFAULT_FILE}', read_only=True)\n"
        f"pipeline = dlt.attach(pipeline_name='nps_to_gainsight', pipelines_dir='{DEFAULT_WORKING_FOLDER}',\n"
        "                       destination=dlt.destinations.duckdb(connection))\n"
        "print(pipeline.dataset()('SELECT count(*) FROM nps_responses').fetchall()[0][0])\n"
    )
    (tmp_path / "recipe.py").write_text(recipe)  # run from the project folder in a process forked from the zygote
    attached = run_cli(cwd=project, env=tool_env(), script=str(tmp_path / "recipe.py"))
    assert attached.returncode == 0, attached.stderr
    assert attached.stdout.strip().splitlines()[-1] == str(SEEDED)


def test_dlt_pipeline_cli_shows_both_pipelines(shipped):
    """README's `dlt pipeline` commands for both pipelines. The push one used to crash on its
    destination, so both commands run on it; the staging pipeline's destination is dlt's own duckdb,
    and README's `info` for it is enough. Each is the venv's `dlt` script in a process of its own,
    forked from the zygote (`run_cli`), which has imported dlt already (~1 of a fresh one's ~1.4 CPU-s)."""
    project, first = shipped.project, shipped.first
    assert first.returncode == 0, first.stderr
    dlt_cli = shutil.which("dlt", path=str(Path(sys.executable).parent))
    assert dlt_cli, "dlt's command line is not installed in this venv"
    for pipeline, commands in (("nps_to_gainsight", ("info",)), ("nps_to_gainsight_push", ("info", "trace"))):
        for command in commands:
            shown = run_cli("pipeline", "--pipelines-dir", DEFAULT_WORKING_FOLDER, pipeline, command,
                            cwd=project, env=tool_env(), script=dlt_cli)  # fmt: skip
            output = shown.stdout + shown.stderr
            assert shown.returncode == 0 and "Traceback" not in output, f"{pipeline} {command}: {output}"
            assert pipeline in shown.stdout


def test_two_staging_files_get_separate_working_folders(tmp_path, monkeypatch):
    """dlt's working folder is keyed by the DuckDB file, not shared per pipeline name on the host."""
    folders = []
    for checkout in ("a", "b"):
        monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(tmp_path / checkout / DEFAULT_FILE))
        folders.append(load_run_settings().pipelines_dir)
    assert folders == [str(tmp_path / "a" / DEFAULT_WORKING_FOLDER), str(tmp_path / "b" / DEFAULT_WORKING_FOLDER)]

    monkeypatch.setenv("NPS_TO_GAINSIGHT__PIPELINES_DIR", str(tmp_path / "explicit"))
    assert load_run_settings().pipelines_dir == str(tmp_path / "explicit")


def test_staging_file_and_its_wal_are_private_and_old_files_tightened(tmp_path):
    path = tmp_path / DEFAULT_FILE
    outer = os.umask(0o022)
    try:
        duckdb.connect(str(path)).close()  # a file an earlier version left world-readable
        path.chmod(0o644)
        store = StagingStore.open(path, "nps")
        store.connection.execute("CREATE TABLE t AS SELECT 'jane@acme.com' AS email")
        wal = path.with_name(path.name + ".wal")
        assert wal.exists() and mode(wal) == 0o600
        assert mode(path) == 0o600
        store.close()
        assert os.umask(0o022) == 0o022, "the run's umask outlived the run"
    finally:
        os.umask(outer)


@pytest.mark.parametrize("stem", ["nps", "nps_staging", "gainsight"])
def test_file_named_like_a_schema_inside_it_is_refused(tmp_path, stem):
    settings = RunSettings(duckdb_path=tmp_path / f"{stem}.duckdb", pipeline_name="p", dataset_name="nps", pipelines_dir=str(tmp_path))
    with pytest.raises(ConfigError) as refused:
        check_names(settings)
    message = str(refused.value)
    assert f"{stem}.duckdb" in message
    for name in (
        "destination.duckdb.credentials", "DESTINATION__DUCKDB__CREDENTIALS",
        "nps_to_gainsight.dataset_name", "NPS_TO_GAINSIGHT__DATASET_NAME",
    ):
        assert name in message


def test_bulk_file_is_private():
    upload = BulkFile("job", "nps.csv")
    upload.append_fitting(pa.table({"ResponseId__gc": ["1"], "PersonEmail__gc": ["jane@acme.com"]}), 1 << 20)
    try:
        assert stat.S_IMODE(os.fstat(upload.body.fileno()).st_mode) == 0o600
    finally:
        upload.close()
