"""Handing freed memory back to the operating system between a run's big steps (glibc only).

A run's peak RSS is not what it holds at its busiest moment but what the allocator still keeps
from earlier ones. glibc's malloc gives each thread that allocates its own arena (up to 8 per
core): the CustomerGauge decode threads' freed Arrow and JSON buffers stay in theirs while
DuckDB's threads load in others, and nothing is returned to the kernel until an arena's top is
free. Measured on the 200k-response stage (bench/push.py --whole-command): with two arenas, a
trim before and after each DuckDB load (pipelines/stage.py) and DuckDB's cache emptied after it,
its peak went from 397-413 to 345 MB (361 MB at 1M), and the push that follows in the same process
starts ~150 MB lower.

Elsewhere (musl, macOS) these are no-ops: the connector's correctness never depends on them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import duckdb

log = logging.getLogger("nps.memory")

M_ARENA_MAX = -8  # mallopt parameter (glibc's malloc.h)
ARENAS = 2  # the main thread plus one shared by the decode and DuckDB threads: enough on 2 cores


@cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def limit_arenas(arenas: int = ARENAS) -> None:
    """Cap glibc's malloc arenas; call before the run starts threads (later threads share them)."""
    libc = _glibc()
    if libc is not None and not libc.mallopt(M_ARENA_MAX, arenas):
        log.debug("mallopt(M_ARENA_MAX, %d) refused; arenas stay at glibc's default", arenas)


def return_freed_memory() -> None:
    """Give the kernel back every free page of every arena (`malloc_trim(0)`; a few ms)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


RELEASE_LIMIT = "16MB"  # DuckDB's memory limit for the instant `empty_duckdb_cache` empties its cache
RELEASE_BYTES = 16 * 1024 * 1024  # the same, for comparing with what DuckDB holds
HELD = "SELECT current_setting('memory_limit'), (SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory())"
READ_ONCE_LIMIT = "32MB"  # DuckDB's memory limit while `read_once` runs a scan (16MB: a 5,000-row rebuild runs out)

T = TypeVar("T")


def empty_duckdb_cache(connection: Any) -> None:
    """Fold DuckDB's write-ahead log into the file, empty its block cache and hand freed pages back.

    DuckDB keeps every block it read or wrote cached up to its `memory_limit` (128 MB by default
    here): the stage's merges, and in the push the scans of the staged responses (each Bulk
    reconciliation chunk rebuilds what it sent from them) and the ledger's new rows, ~1.5 MB more
    per 5,000-key chunk until the limit. Lowering the limit for an instant evicts every unpinned
    block; a block still needed is read back from the file (the OS page cache) when next used.

    When DuckDB holds no more than that instant's limit (a small run: every run of the hourly
    schedule that finds a few new responses), there is nothing to release, and the checkpoint and
    the limit's round trip are skipped: they were ~8% of the CPU of such a run (bench/run_cost.py),
    and the checkpoint at close folds the log anyway; the trim of Python's and Arrow's freed pages
    still runs. What DuckDB holds (its buffer pool, `duckdb_memory()`) counts the table blocks a
    checkpoint would write, so a large load or scan still releases, and after this call DuckDB
    holds at most the release limit either way.

    DuckDB refuses a CHECKPOINT while another transaction on the file has made a catalog change or
    an update (in `serve`, a webhook being spooled at that instant): folding the log is then left to
    DuckDB's own checkpoint at the next commit, and only what can be evicted is.
    """
    _release(connection, checkpoint=True)


def evict_duckdb_cache(connection: Any) -> None:
    """Evict DuckDB's unpinned cached blocks and hand freed pages back, without a checkpoint: for a
    long read (the push's outbox scan) that would otherwise cache every block it passed, up to the
    memory limit (`BASE_TABLE` 109 MB after streaming the 1M-response outbox, +146 MB of RSS).
    Skipped, as in `empty_duckdb_cache`, when DuckDB holds no more than the release limit."""
    _release(connection, checkpoint=False)


def _release(connection: Any, checkpoint: bool) -> None:
    """When DuckDB holds more than the release limit: evict every unpinned block by lowering the
    limit for an instant, checkpoint (if asked), and evict again. Freed pages are handed back
    either way.

    Evicting before the checkpoint too keeps its peak down: a checkpoint wrote its row groups on
    top of the whole cache. On a copy of the 1M-response file after a 20,000-person page (DuckDB
    holding 15 MB of cached and 16 MB of in-memory table blocks), the release peaked 16-17 MB above
    the page (179 -> 196 MB); evicting first, 2-3 MB (-> 182 MB), for ~0.02 CPU-s more. The 1M whole
    command's two highest samples were taken inside that checkpoint. The checkpoint itself runs
    under the connection's own limit: one that runs out of memory invalidates the database (DuckDB
    raises a FatalException; tried under the release limit, it did).
    """
    ((limit, held),) = connection.execute(HELD).fetchall()
    if held > RELEASE_BYTES:
        if checkpoint:
            _evict(connection, limit)
            try:
                connection.execute("CHECKPOINT")
            except duckdb.TransactionException as exc:
                log.debug("DuckDB did not checkpoint now: %s", exc)
        _evict(connection, limit)
    return_freed_memory()


def _evict(connection: Any, limit: str) -> None:
    """Lower DuckDB's limit to the release limit for an instant, which evicts every unpinned block."""
    try:
        connection.execute(f"SET memory_limit = '{RELEASE_LIMIT}'")
    except duckdb.Error as exc:  # something still pinned: keep the cache rather than fail the run
        log.debug("DuckDB kept its buffers: %s", exc)
    finally:
        if limit:
            connection.execute(f"SET memory_limit = '{limit}'")


def read_once(connection: Any, query: Callable[[], T]) -> T:
    """Run `query`, which scans a large table to pick a few rows, under a small DuckDB memory limit.

    DuckDB caches every block a scan reads, up to its memory limit, and the cache is only emptied
    when something evicts it: a Bulk reconciliation chunk rebuilds its 5,000 rows from a scan of
    every staged response, which at 1M responses left 108 MB of blocks cached (+126 MB of RSS) under
    the chunk's Gainsight read and comparison; under this limit, +15 MB, at the same CPU time. If the
    scan needs more (very long comments), or DuckDB cannot lower its limit now, it runs under the
    connection's own limit, as before.
    """
    (limit,) = connection.execute("SELECT current_setting('memory_limit')").fetchone() or ("",)
    try:
        connection.execute(f"SET memory_limit = '{READ_ONCE_LIMIT}'")
    except duckdb.Error as exc:
        log.debug("DuckDB kept its limit for this scan: %s", exc)
        return query()
    try:
        return query()
    except duckdb.OutOfMemoryException:
        connection.execute(f"SET memory_limit = '{limit}'")
        return query()
    finally:
        connection.execute(f"SET memory_limit = '{limit}'")
