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
from functools import cache

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
