"""DuckDB's block cache under a scan read once (connector_common.memory), on a real DuckDB file."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from connector_common.memory import evict_duckdb_cache, read_once

MB = 1 << 20
# Both tests on one worker, so the 60 MB table (~1.5 CPU-s to build) is built once, not once per worker.
pytestmark = pytest.mark.xdist_group("memory")


def cached_table_bytes(db: duckdb.DuckDBPyConnection) -> int:
    (used,) = db.execute("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'BASE_TABLE'").fetchone()
    return int(used)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A file whose table is larger than `read_once`'s limit (~60 MB in the file), its cache empty."""
    db = duckdb.connect(str(tmp_path_factory.mktemp("memory") / "staging.duckdb"), config={"memory_limit": "256MB"})
    db.execute(
        # one md5 a row, four times over: as large in the file and in the cache as four distinct ones
        "CREATE TABLE responses AS SELECT 'r' || i AS response_id, repeat(md5(i::VARCHAR), 4) AS comment "
        "FROM range(800000) t(i)"
    )
    db.execute("CHECKPOINT")
    db.register("picked", pa.table({"response_id": [f"r{i * 97}" for i in range(5000)]}))  # as a reconciliation chunk
    evict_duckdb_cache(db)
    yield db
    db.close()


PICK = "SELECT response_id, comment FROM responses JOIN picked USING (response_id)"


def limit(db: duckdb.DuckDBPyConnection) -> str:
    return db.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_a_scan_read_once_leaves_no_more_cached_than_its_small_limit(staged):
    before = limit(staged)
    evict_duckdb_cache(staged)
    plain = staged.execute(PICK).fetchall()
    cached_after_plain = cached_table_bytes(staged)
    evict_duckdb_cache(staged)

    picked = read_once(staged, lambda: staged.execute(PICK).fetchall())

    assert sorted(picked) == sorted(plain) and len(picked) == 5000
    assert cached_after_plain > 48 * MB  # without it, DuckDB keeps what the scan read
    assert cached_table_bytes(staged) <= 32 * MB
    assert limit(staged) == before


def test_a_scan_that_needs_more_than_the_small_limit_runs_under_the_connections_own(staged):
    before = limit(staged)

    # One list value of every comment's first 40 characters: ~45 MB, which DuckDB cannot spill.
    (count,) = read_once(staged, lambda: staged.execute("SELECT len(list(left(comment, 40))) FROM responses").fetchone())

    assert count == 800_000
    assert limit(staged) == before
