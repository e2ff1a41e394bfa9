"""The state store is the destination's only door to DuckDB (issue 9: one module owns the sync state's SQL)."""

from __future__ import annotations

import ast
from pathlib import Path

import duckdb
import pytest

from destinations.gainsight.errors import LocalWriteFailed
from destinations.gainsight.store import Ledger

DESTINATIONS = Path(__file__).resolve().parent.parent / "destinations"
STORE = DESTINATIONS / "gainsight" / "store.py"


def imports_duckdb(path: Path) -> bool:
    """Whether the module imports duckdb in any form (`import duckdb`, `from duckdb import ...`, nested)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "duckdb" for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "duckdb":
            return True
    return False


def test_only_the_state_store_imports_duckdb_under_destinations():
    modules = sorted(DESTINATIONS.rglob("*.py"))
    assert STORE in modules and len(modules) > 10  # the walk sees the real package

    importers = [path.relative_to(DESTINATIONS).as_posix() for path in modules if imports_duckdb(path)]

    assert importers == ["gainsight/store.py"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device every write to fails with ENOSPC")
def test_a_full_disk_under_the_ledger_stops_with_local_write_failed_and_loses_nothing(tmp_path):
    path = tmp_path / "staging.duckdb"
    connection = duckdb.connect(str(path))
    ledger = Ledger(connection, "full-disk", 3)
    ledger.confirm("responses", [{"response_id": "r1", "gsid": "G1", "pushed_hash": "h1", "status": "synced"}])
    connection.execute("CHECKPOINT")  # the ledger so far is in the file; the write-ahead log starts empty
    wal = tmp_path / "staging.duckdb.wal"
    wal.symlink_to("/dev/full")  # the disk is full from here on: every write to the log fails

    with pytest.raises(LocalWriteFailed, match="No space left on device"):  # a transaction of two statements
        ledger.confirm("responses", [{"response_id": "r1", "gsid": "G1", "pushed_hash": "h2", "status": "synced"}])
    with pytest.raises(LocalWriteFailed, match="No space left on device"):  # a single statement
        ledger.mark("responses", ["r2"], "deferred")
    ledger.close()
    connection.close()

    wal.unlink()  # space freed: the next run opens the file
    with duckdb.connect(str(path)) as connection:
        state = Ledger(connection, "next", 3).state("responses", ["r1", "r2"], ["pushed_hash", "status"])
    assert state == {"r1": {"pushed_hash": "h1", "status": "synced"}}  # the confirmed state, no half of a batch
