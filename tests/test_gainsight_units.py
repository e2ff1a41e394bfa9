"""Pure parts of the Gainsight destination: quota windows (persisted in a real DuckDB file),
payload mapping and CSV packing."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

import duckdb
import pyarrow as pa
import pytest

from destinations.gainsight.answers import bulk_status, bulk_status_id, epoch_ms, timeline_outcome
from destinations.gainsight.bulk import holds_as_sent
from destinations.gainsight.errors import QuotaExhausted
from destinations.gainsight.multipart import BulkFile
from destinations.gainsight.quota import QuotaLimiter
from destinations.gainsight.records import (
    activity_record,
    csv_bytes,
    person_record,
    response_table,
)
from destinations.gainsight.settings import DEFAULT_RESPONSE_FIELDS, QuotaLimits
from destinations.gainsight.store import Ledger


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter_for(path, clock: FakeClock, **limits: int) -> tuple[QuotaLimiter, Ledger, duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(path))
    ledger = Ledger(connection, "test", 3)
    return QuotaLimiter(QuotaLimits(**limits), ledger, 65.0, clock, clock.sleep), ledger, connection


def test_minute_window_is_slept_out_and_hour_window_defers(tmp_path):
    clock = FakeClock(1_800_000_030.0)  # 30 s into a minute
    limiter, _, connection = limiter_for(tmp_path / "q.duckdb", clock, sync_per_minute=3, bulk_per_hour=2)
    for _ in range(4):
        limiter.acquire("sync")
    assert clock.slept == [30.0]  # the 4th call waited for the next minute, no longer
    limiter.acquire("bulk")
    limiter.acquire("bulk")
    with pytest.raises(QuotaExhausted) as raised:
        limiter.acquire("bulk")
    assert raised.value.family == "bulk" and raised.value.window == "hour"
    assert raised.value.resume_at == datetime.fromtimestamp(1_800_000_000 + 3600 - 1_800_000_000 % 3600, timezone.utc)
    connection.close()


def test_counts_persist_across_runs(tmp_path):
    clock = FakeClock(1_800_000_000.0)
    limiter, _, connection = limiter_for(tmp_path / "q.duckdb", clock, bulk_per_hour=2)
    limiter.acquire("bulk")
    limiter.acquire("bulk")
    limiter.flush()
    connection.close()

    clock.now += 120  # a run two minutes later, in the same hour
    limiter, _, connection = limiter_for(tmp_path / "q.duckdb", clock, bulk_per_hour=2)
    with pytest.raises(QuotaExhausted):
        limiter.acquire("bulk")
    assert limiter.remaining()["bulk"]["hour"] == 0
    clock.now += 3600
    limiter.acquire("bulk")  # a new hour
    connection.close()


def outbox(rows: int = 3, comment: str = 'Said "great", then: a, b\nnew line') -> pa.Table:
    when = datetime(2026, 11, 20, 9, 30, 5, tzinfo=timezone.utc)
    columns = {
        "response_id": [str(i) for i in range(rows)],
        "score": list(range(rows)),
        "category": ["detractor"] * rows,
        "comment": [comment] * rows,
        "email": ["jane@acme.com"] * rows,
        **{
            name: [None] * rows
            for name in ("survey_id", "touchpoint", "channel", "language", "country", "segment", "product", "case_link")
        },
        "responded_at": pa.array([when] * rows, pa.timestamp("us", tz="UTC")),
    }
    return pa.table(columns)


def test_csv_round_trips_quotes_commas_newlines_and_nulls():
    table = response_table(outbox(), pa.array(["1P02X", None, "1P02Y"]), DEFAULT_RESPONSE_FIELDS)
    parsed = list(csv.DictReader(io.StringIO(csv_bytes(table).decode("utf-8"), newline="")))
    assert [row["Comment__gc"] for row in parsed] == ['Said "great", then: a, b\nnew line'] * 3
    assert parsed[1]["CompanyId__gc"] == "" and parsed[0]["CompanyId__gc"] == "1P02X"
    assert parsed[0]["ResponseDatetime__gc"] == "2026-11-20T09:30:05.000+00:00"
    assert parsed[0]["NpsCategory__gc"] == "Detractor"


def test_long_text_is_cut_to_the_field_length_in_code_points():
    table = response_table(outbox(1, comment="é" * 6000), pa.array([None], pa.string()), DEFAULT_RESPONSE_FIELDS, {"Comment__gc": 5000})
    assert len(table["Comment__gc"][0].as_py()) == 5000


def test_bulk_files_are_packed_under_the_byte_limit():
    table = response_table(outbox(1000), pa.array([None] * 1000, pa.string()), DEFAULT_RESPONSE_FIELDS)
    limit = len(csv_bytes(table)) // 3
    files, start = [BulkFile("job-1", "f.csv")], 0
    while start < table.num_rows:  # appended a slice at a time, as the push's pages arrive
        written = files[-1].append_fitting(table.slice(start, 150), limit)
        if not written:
            files[-1].seal()
            files.append(BulkFile("job-1", "f.csv"))
        start += written
    files[-1].seal()
    assert sum(f.rows for f in files) == 1000 and 3 <= len(files) <= 5
    assert all(f.csv_bytes <= limit for f in files)
    # the body is a well-formed multipart form whose file part is exactly the CSV
    body = files[0].body.read()
    for upload in files:
        upload.close()
    assert body.startswith(f"--{files[0].boundary}\r\n".encode()) and body.endswith(f"--{files[0].boundary}--\r\n".encode())
    assert b'name="jobId"\r\n\r\njob-1\r\n' in body
    assert csv_bytes(table.slice(0, files[0].rows)) in body


def test_reconcile_comparison_accepts_epoch_ms_and_iso():
    sent = {"ResponseId__gc": "1", "Score__gc": 3, "ResponseDatetime__gc": "2026-11-20T09:30:05.000+00:00", "Comment__gc": None}
    stored = {"ResponseId__gc": "1", "Score__gc": 3.0, "ResponseDatetime__gc": 1795167005000, "Comment__gc": None}
    assert holds_as_sent(sent, stored, {"ResponseDatetime__gc"})
    assert holds_as_sent(sent, {**stored, "ResponseDatetime__gc": "2026-11-20T09:30:05Z"}, {"ResponseDatetime__gc"})
    assert not holds_as_sent(sent, {**stored, "Score__gc": 4}, {"ResponseDatetime__gc"})


def test_activity_and_person_payloads():
    row = {"response_id": "77", "score": 3, "category": "detractor", "email": "jane@acme.com", "comment": "Slow support",
           "responded_at": datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)}
    activity = activity_record(row, "1P02ABC", "cs@acme.com", "Survey Response")
    assert activity["Subject"] == "NPS 3 (Detractor) from jane@acme.com"
    assert activity["ExternalId"] == "cg-nps-77" and activity["Notes"] == "Slow support"
    assert activity["GsCompanyId"] == "1P02ABC" and activity["ActivityDate"] == "2026-11-20T09:30:00.000+00:00"
    person = person_record("jane@acme.com", "Jane", None, "1P02ABC")
    assert person == {"Email": "jane@acme.com", "FirstName": "Jane", "Name": "Jane", "companies": [{"Company_ID": "1P02ABC"}]}


def test_a_redelivered_outbox_file_drops_rows_confirmed_or_given_up_since(tmp_path):
    connection = duckdb.connect(str(tmp_path / "l.duckdb"))
    ledger = Ledger(connection, "test", 3)
    rows = outbox(4).append_column("content_hash", pa.array(["h0", "h1", "h2", "h3"]))
    rows = rows.append_column("account_id", pa.array([None] * 4, pa.string()))
    rows = rows.append_column("needs_response", pa.array([True] * 4)).append_column("needs_activity", pa.array([False] * 4))
    ledger.confirm("responses", [{"response_id": "0", "gsid": "G0", "pushed_hash": "h0", "status": "synced"}])
    for _ in range(3):  # the third failure of this content: given up until it changes
        ledger.fail("responses", "1", "h1", "GSOBJ_1008", "bad value", {})
    ledger.fail("responses", "2", "h2", "GSOBJ_1008", "bad value", {})  # one failure: retried
    ledger.confirm("responses", [{"response_id": "3", "gsid": "G3", "pushed_hash": "old", "status": "synced"}])

    next_run = Ledger(connection, "next", 3)  # the run that re-delivers the file
    assert next_run.load_outbox(rows, people=False) == 2
    pending = next_run.outbox_page("response_id", [], ["needs_response"], False, -1, 10)

    assert pending["response_id"].to_pylist() == ["2", "3"]
    connection.close()


@pytest.mark.parametrize(
    "data, written, duplicate, missing, failed",
    [
        ({"success": {"a": [{"activityId": "1A"}]}, "failure": {"b": [{"errorCode": "ACTIVITY_DUPLICATE_EXTERNAL_ID"}]}},
         {"a": "1A"}, {"b"}, set(), {}),
        ({"success": [{"ExternalId": "a", "activityId": "1A"}], "failure": [{"b": {"errorMessage": "No activity with this ExternalId"}}]},
         {"a": "1A"}, set(), {"b"}, {}),
        ({"success": [{"a": "1A"}], "failure": {"b": {"errorCode": "GSOBJ_1001", "errorMessage": "Too long"}}},
         {"a": "1A"}, set(), set(), {"b": ("GSOBJ_1001", "Too long")}),
        ({"failure": {"a": [{"code": "X", "message": "ExternalId already exists"}]}}, {}, {"a"}, set(), {}),
        (None, {}, set(), set(), {}),
        ({"status": "ACCEPTED", "count": 2}, {}, set(), set(), {}),
    ],
    ids=["keyed", "lists", "pairs-and-failure", "already-exists", "bare", "unknown"],
)
def test_timeline_answers_name_only_what_they_clearly_say(data, written, duplicate, missing, failed):
    outcome = timeline_outcome(data, update=True)
    assert (outcome.written, outcome.duplicate, outcome.missing, outcome.failed) == (written, duplicate, missing, failed)
    assert outcome.unknown(["a", "b", "c"]) == [e for e in ["a", "b", "c"] if e not in {*written, *duplicate, *missing, *failed}]
    if missing:  # an insert's "not found" is an ordinary failure, not a missing activity
        assert timeline_outcome(data).failed.keys() == missing


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"statusId": "s", "jobStatus": "COMPLETED", "totalCount": 3, "successCount": 2, "failureCount": 1}, ("COMPLETED", 3, 2, 1)),
        ({"id": "s", "status": "SUCCESS", "total": 3, "success": 2, "failed": 1}, ("COMPLETED", 3, 2, 1)),
        ({"state": "running"}, ("IN_PROGRESS", None, None, None)),
        ([{"state": "FAILED", "totalRecords": 3, "successRecordsCount": 0, "failedRecordsCount": 3}], ("FAILED", 3, 0, 3)),
        ({"status": "Queued"}, ("INIT", None, None, None)),
        ({"status": "WHATEVER"}, ("", None, None, None)),
        ("not a status", ("", None, None, None)),
    ],
)
def test_bulk_status_spellings(data, expected):
    status = bulk_status(data)
    assert (status["jobStatus"], status.get("totalCount"), status.get("successCount"), status.get("failureCount")) == expected


@pytest.mark.parametrize(
    "value",
    [1656682560000, "2022-07-01T13:36:00Z", "2022-07-01T13:36:00.000Z", "2022-07-01T06:36:00.000-07:00",
     "2022-07-01T13:36:00.000+0000", "2022-07-01 13:36:00", "2022-07-01 13:36:00.0"],
)  # fmt: skip
def test_query_dates_in_every_spelling(value):
    assert epoch_ms(value) == 1656682560000
    assert bulk_status_id({"statusId": "x"}) == bulk_status_id({"id": "x"}) == bulk_status_id("x") == "x"
