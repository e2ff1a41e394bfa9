"""The command line answers `--help` and argument errors without loading the data stack.

dlt, DuckDB and pyarrow take seconds to import; an operator asking for help, or a cron line with a
mistyped option, must not wait for them. The probe runs in a fresh interpreter, because this test
process has loaded them already, and reports module names, not times.
"""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import REPO

HEAVY = ("dlt", "duckdb", "pyarrow")

PROBE = """
import contextlib, io, json, sys
import pipelines.errors
import pipelines.nps_to_gainsight as cli
answers = {}
for argv in (["--help"], ["--start", "2025-01-01"], ["status", "--runs", "many"], ["--bogus"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli.main(argv)
        except SystemExit as exc:
            answers[" ".join(argv)] = exc.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[1:]))
print(json.dumps({"answers": answers, "heavy": heavy}))
"""


def test_help_and_argument_errors_load_no_data_stack():
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, *HEAVY], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(probe.stdout)
    assert report["answers"] == {"--help": 0, "--start 2025-01-01": 2, "status --runs many": 2, "--bogus": 2}
    assert report["heavy"] == []
