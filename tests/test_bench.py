"""The benchmarks still run: each at a tiny size, checked on counts only (never on times or memory).

Benchmarks are run by hand, rarely, so a change elsewhere can break one without anyone noticing
(the extract benchmark once exited 2 for a month-old reason). These runs catch that; the figures
themselves come from the full-size runs in the README.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from .conftest import REPO


def bench(script: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_push_benchmark_lands_everything_once_and_counts_calls_exactly():
    table = bench("push.py", "--responses", "1500", "--accounts", "40", "--people", "300", "--naive-responses", "150")
    assert "Bulk uploads carrying the responses: 1 " in table
    assert "re-run with nothing new: 0 write calls, 0 calls in all" in table
    assert "1,500 responses, 1,500 distinct response keys, 40 companies" in table and "(as staged)" in table
    assert table.count("client call counts match the sandbox request log") == 3
    assert "0 records dead-lettered, 0 deferred" in table


def test_extract_benchmark_stages_every_response():
    table = bench("extract.py", "--responses", "1500")
    rows = dict(re.findall(r"^(ceiling|source|naive) +([\d,]+) ", table, re.MULTILINE))
    assert rows == {"ceiling": "1,500", "source": "1,500", "naive": "1,500"}
