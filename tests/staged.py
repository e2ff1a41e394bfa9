"""Staged once, copied per test: the DuckDB file and dlt working folder a first stage leaves.

Many push tests begin the same way: seed a CustomerGauge sandbox, stage its responses, then push.
Their point is what the push does, not the stage, yet that first stage cost each of them a dlt
extract-normalize-load run (~0.7 CPU-s). Here it runs once per seed and session (its xdist workers
share it): `staged_connector` starts a fresh sandbox seeded exactly like the template's (a fixed
`end` day makes the seed deterministic: the sandbox's default ends "now", so two sandboxes a second
apart differ) and copies the template's staging file and working folder into the test's temp folder.
The test then holds a real staging file a real stage run wrote, against a sandbox serving the same
records, and pushes it with `push_only` (or stages edits with a full run: the cursor and ledger are
the template's).

The same for the command: `staged_project` copies what `--stage-only` left in a project folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pipelines.errors import ExitCode
from sandbox.customergauge import CustomerGaugeSandbox, SeedSpec

from .cli import cli_env, run_main
from .conftest import CLIENT_ID, CLIENT_SECRET, REPO, Connector, Staging

# Yesterday, fixed for the whole session: every sandbox seeded with it serves the same records, and
# yesterday's responses are still "recent" for the Timeline and the tests' two-day edits.
SEED_END = datetime.now(timezone.utc).date() - timedelta(days=1)


def seed(responses: int, days: int, accounts: int, invalid: int = 0, people: int | None = None) -> SeedSpec:
    return SeedSpec(responses=responses, days=days, accounts=accounts, invalid=invalid, seed=11, end=SEED_END, people=people)


class Templates:
    """Staged folders built on first use, one per (seed, layout), kept for the session and shared
    by its xdist workers: the first worker to need one builds it under a file lock, the others wait
    for it and copy it (xdist deals a module's tests out one at a time, so with four workers each
    built most templates itself: up to four stage runs where one does)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: dict[tuple[SeedSpec, str], Path] = {}

    def folder(self, spec: SeedSpec, layout: str, stage: Any) -> Path:
        key = (spec, layout)
        if key not in self.built:
            folder = self.root / hashlib.sha256(repr(key).encode()).hexdigest()[:16]
            with (self.root / f"{folder.name}.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
                if not (folder / BUILT).exists():
                    shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half-way
                    folder.mkdir()
                    with CustomerGaugeSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, seed=spec) as sandbox:
                        code = stage(sandbox, folder)
                    assert code in (ExitCode.OK, ExitCode.QUARANTINED), f"staging the template failed: exit {code}"
                    (folder / BUILT).touch()
            self.built[key] = folder
        return self.built[key]


BUILT = ".built"  # written last in a template folder, left out of the copies


@pytest.fixture(scope="session")
def staged_templates(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    """Under the session's temp root: one per run of pytest, common to its xdist workers."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "staged"
    root.mkdir(exist_ok=True)
    return Templates(root)


@pytest.fixture
def started_sandboxes() -> Iterator[list[CustomerGaugeSandbox]]:
    started: list[CustomerGaugeSandbox] = []
    yield started
    for sandbox in started:
        sandbox.__exit__(None, None, None)


def _start(spec: SeedSpec, started: list[CustomerGaugeSandbox], **kwargs: Any) -> CustomerGaugeSandbox:
    sandbox = CustomerGaugeSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, seed=spec, **kwargs)
    sandbox.__enter__()
    started.append(sandbox)
    return sandbox


def _staged_copy(templates: Templates, staging: Staging, spec: SeedSpec, tmp_path: Path) -> None:
    """Copy the template staged for `spec` under `staging`'s file names into `tmp_path`."""

    def stage(sandbox: CustomerGaugeSandbox, folder: Path) -> ExitCode:
        settings = staging.settings
        in_folder = replace(
            settings, duckdb_path=folder / settings.duckdb_path.name,
            pipelines_dir=str(folder / Path(settings.pipelines_dir).name), stage_only=True,
        )  # fmt: skip
        return Staging(in_folder, sandbox, staging.initial_days).run()[0]

    layout = f"{staging.settings.duckdb_path.name}:{staging.settings.pipeline_name}"
    template = templates.folder(spec, layout, stage)
    shutil.copytree(template, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns(BUILT))


@pytest.fixture
def staged_connector(staged_templates: Templates, started_sandboxes, connector_for, tmp_path: Path):
    """Factory: (sandbox, connector) whose staging file already holds the sandbox's responses,
    staged by a stage-only run of the same seed; nothing pushed yet."""

    def make(gs: Any, responses: int = 40, days: int = 5, accounts: int = 3, invalid: int = 0):
        spec = seed(responses, days, accounts, invalid)
        cg = _start(spec, started_sandboxes)
        connector = connector_for(cg, gs)
        _staged_copy(staged_templates, connector.staging, spec, tmp_path)
        return cg, connector

    return make


@pytest.fixture
def staged_staging(staged_templates: Templates, started_sandboxes, staging_for, tmp_path: Path):
    """Factory: (sandbox, stage-only Staging) whose file already holds the sandbox's responses."""

    def make(responses: int = 40, days: int = 5, accounts: int = 3):
        spec = seed(responses, days, accounts)
        cg = _start(spec, started_sandboxes)
        staging = staging_for(cg)
        _staged_copy(staged_templates, staging, spec, tmp_path)
        return cg, staging

    return make


def push_only(connector: Connector) -> Connector:
    """The same files and sandboxes, run with `push_only`: CustomerGauge is not called."""
    staging = replace(connector.staging, settings=replace(connector.staging.settings, push_only=True))
    return Connector(staging, connector.gainsight)


@pytest.fixture
def staged_project(staged_templates: Templates, started_sandboxes, project: Path):
    """Factory: a CustomerGauge sandbox and `project` holding what `--stage-only` left there for it."""

    def make(responses: int = 150, days: int = 19, accounts: int = 10, people: int | None = None) -> CustomerGaugeSandbox:
        spec = seed(responses, days, accounts, people=people)

        def stage(sandbox: CustomerGaugeSandbox, folder: Path) -> ExitCode:
            (folder / ".dlt").mkdir()
            shutil.copy(REPO / ".dlt" / "config.toml", folder / ".dlt" / "config.toml")
            return ExitCode(run_main("--stage-only", cwd=folder, env=cli_env(sandbox, folder)).returncode)

        template = staged_templates.folder(spec, "project", stage)
        for name in ("staging.duckdb", "pipelines"):
            source = template / name
            if source.is_dir():
                shutil.copytree(source, project / name)
            else:
                shutil.copy(source, project / name)
        return _start(spec, started_sandboxes)

    return make
