"""The benchmarks still run: each at a tiny size, checked on counts only (never on times or memory).

Benchmarks are run by hand, rarely, so a change elsewhere can break one without anyone noticing
(the extract benchmark once exited 2 for a month-old reason). These runs catch that; the figures
themselves come from the full-size runs in the README. Each benchmark's parent runs in this
process and each contender it starts in a process of its own, forked from the test session's zygote
(tests/zygote.py), which has imported dlt already: a contender's imports are what the real runs
time, not what these runs check (~1 CPU-s each of ~2).
"""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.replay import Call, classify, replay_log

from .cli import run_cli
from .conftest import REPO

OBJECT = "CG_NPS_Response__gc"
TOKEN = "/v1/users/m2m/oauth/token"
COMPANY_QUERY = "/v1/data/objects/query/Company"
PERSON = "/v1/peoplemgmt/v1.0/people"
BULK_PEOPLE = "/v1/peoplemgmt/v1.0/people/async"
BULK_UPLOAD = "/v1.0/admin/connector/job/bulkimport"
BULK_STATUS = "/v1.0/admin/connector/job/bulkimport/status/job-1"
ACTIVITY = "/v1/ant/es/activity"


def bench_here(script: str, *args: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """`python bench/<script> <args>` with its parent in this process: the script runs as `__main__`
    with that argv (the push benchmark's parent imports dlt and stages: here it finds both imported
    already). Each contender it starts, `python bench/<script> --contender ...`, is a child process
    forked from the zygote (`run_cli`); every other process (the sandboxes) starts as it would."""
    started = subprocess.run

    def run(argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        if argv[0] != sys.executable or "--contender" not in argv:
            return started(argv, **options)
        return run_cli(*argv[2:], cwd=Path(options["cwd"]), env=options["env"], timeout=300, script=str(argv[1]))

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(sys, "argv", [str(REPO / "bench" / script), *args])
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    capsys.readouterr()
    runpy.run_path(str(REPO / "bench" / script), run_name="__main__")
    return capsys.readouterr().out


def test_push_benchmark_lands_everything_once_and_counts_calls_exactly(capsys, monkeypatch):
    # 600 responses: just above the shipped bulk_min_rows (500), so the responses still go by Bulk
    table = bench_here("push.py", "--responses", "600", "--accounts", "20", "--people", "120", "--naive-responses", "40",
                       "--people-setups", "existing-bulk", capsys=capsys, monkeypatch=monkeypatch)  # fmt: skip
    assert "Bulk uploads carrying the responses: 1 " in table
    assert "re-run with nothing new: 0 write calls, 0 calls in all" in table
    assert "600 responses, 600 distinct response keys, 20 companies" in table and "(as staged)" in table
    assert table.count("client call counts match the sandbox request log") == 4
    assert "0 records dead-lettered, 0 deferred" in table
    # the CRM-synced tenant: 80% of the 119 respondents seeded, 7 in 8 of them with their association
    assert "tenant held 96 of 119 people (84 with their Company_Person) and all 20 companies" in table
    assert "people split: 84 exists, 12 association_added, 0 names_updated, 23 created" in table
    assert re.search(r"^80% exist, bulk people .+ min", table, re.MULTILINE)  # its time-to-value row


def test_extract_benchmark_stages_every_response(capsys, monkeypatch):
    table = bench_here("extract.py", "--responses", "300", capsys=capsys, monkeypatch=monkeypatch)
    rows = dict(re.findall(r"^(ceiling|source|naive) +([\d,]+) ", table, re.MULTILINE))
    assert rows == {"ceiling": "300", "source": "300", "naive": "300"}


def test_replay_paces_each_family_in_log_order_and_runs_families_side_by_side():
    # sync: 1 company + 99 people in minute 0, 100 in minute 1, the last 51 and the Bulk status
    # poll in minute 2; the upload itself waits for nothing; Timeline: 200 in minute 0, 100 in minute 1.
    log = [TOKEN, COMPANY_QUERY, *[PERSON] * 250, BULK_UPLOAD, BULK_STATUS, *[ACTIVITY] * 300]
    assert replay_log(log, OBJECT) == {"response": 2.0, "activity": 1.0, "person": 2.0, "all": 2.0}
    # The same calls with responses and activities logged before the people: responses at once.
    log = [TOKEN, COMPANY_QUERY, BULK_UPLOAD, BULK_STATUS, *[ACTIVITY] * 300, *[PERSON] * 250]
    assert replay_log(log, OBJECT) == {"response": 0.0, "activity": 1.0, "person": 2.0, "all": 2.0}


def test_replay_starts_nothing_on_a_company_before_the_company_calls_logged_before_it():
    # 150 company queries end in minute 1 (sync 100/min): the idle Timeline family waits for them.
    log = [*[COMPANY_QUERY] * 150, ACTIVITY, f"/v1/data/objects/{OBJECT}"]
    assert replay_log(log, OBJECT) == {"response": 1.0, "activity": 1.0, "person": None, "all": 1.0}


def test_replay_reads_bulk_people_calls_both_ways_and_honours_the_daily_caps():
    log = [BULK_PEOPLE] * 101
    # as the async/bulk family: 10 an hour for 10 hours, then the 100/day cap holds the 101st a day
    assert replay_log(log, OBJECT, "async")["person"] == 24 * 60
    assert replay_log(log, OBJECT, "sync")["person"] == 1.0
    # 50,000 sync calls a day: the 50,001st waits for the next day although its minute has room
    assert replay_log([PERSON] * 50_001, OBJECT)["person"] == 24 * 60


def test_replay_classifies_the_sandbox_paths_by_quota_family_and_record_kind():
    assert classify(TOKEN, OBJECT, "bulk") == Call(None, "other")
    assert classify("/v1/data/objects/query/Company_Person", OBJECT, "bulk") == Call("sync", "person")
    assert classify(f"/v1/data/objects/{OBJECT}", OBJECT, "bulk") == Call("sync", "response")
    assert classify("/v1/data/objects/query/GsUser", OBJECT, "bulk") == Call("sync", "other")
    assert classify(PERSON, OBJECT, "bulk") == Call("sync", "person")
    assert classify(BULK_PEOPLE, OBJECT, "bulk") == Call("bulk", "person")
    assert classify(BULK_PEOPLE + "/status/s-1", OBJECT, "bulk") == Call("sync", "person")
    assert classify(BULK_STATUS, OBJECT, "bulk") == Call("sync", "response")
