"""CustomerGauge -> DuckDB staging through the real source, real HTTP and a real DuckDB file."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
from datetime import date, datetime, timedelta, timezone

import duckdb
import pytest

from pipelines.errors import ExitCode
from pipelines.stage import make_pipeline
from pipelines.staging import StagingStore
from sources.customergauge import ExtractReport, customergauge

RESPONSES = "/v7/rest/sync/responses"
# The seed of the tests that begin after a first stage: staged once (tests/staged.py), copied per test.
STAGED = {"responses": 300, "days": 20, "accounts": 12}


def sandbox_ids(sandbox) -> set[str]:
    return {str(r["number_customergauge"]) for r in sandbox.records}


def staged_ids(staging) -> list[str]:
    return [row[0] for row in staging.query("SELECT response_id FROM nps.nps_responses")]


def test_full_load_pages_with_the_same_filters_on_every_page(cg_sandbox, staging_for):
    sandbox = cg_sandbox(responses=2500, days=30)
    staging = staging_for(sandbox)
    code, result = staging.run()
    assert code == ExitCode.OK
    ids = staged_ids(staging)
    assert len(ids) == len(set(ids)) == 2500
    assert set(ids) == sandbox_ids(sandbox)
    feed = result.report.feeds["nps_responses"]
    assert (feed.pages, feed.fetched, feed.valid, feed.quarantined) == (3, 2500, 2500, 0)
    assert result.changes.new == 2500 and result.changes.updated == 0
    # 3 data pages + the empty page that ends paging, and exactly one token grant
    queries = staging.response_requests()
    assert len(queries) == 4
    assert result.report.api_calls == 5 and result.report.token_grants == 1
    first = queries[0]
    assert first["per_page"] == ["1000"] and sorted(first["with[]"]) == ["drivers", "properties"]
    assert first["period[field]"] == ["date_survey_response"]
    for query in queries[1:]:
        assert {k: v for k, v in query.items() if k != "cursor"} == first
        assert "cursor" in query
    cursors = [int(q["cursor"][0]) for q in queries[1:]]
    assert cursors == sorted(cursors) and len(set(cursors)) == 3


def test_staged_row_matches_the_sandbox_record(cg_sandbox, staging_for):
    sandbox = cg_sandbox(responses=200)
    staging = staging_for(sandbox)
    staging.run()
    record = next(r for r in sandbox.records if r.get("email") and r["email"] != r["email"].lower())
    email, score, category, comment, account_id = staging.query(
        "SELECT email, score, category, comment, account_id FROM nps.nps_responses WHERE response_id = ?",
        [str(record["number_customergauge"])],
    )[0]
    assert email == record["email"].strip().lower()
    assert score == record["nps"]
    assert category == ("promoter" if score >= 9 else "passive" if score >= 7 else "detractor")
    assert comment == record.get("comment")
    props = {p["field"]: p["reference"] for p in record["properties"]}
    assert account_id == props.get("Account Number")


def test_second_run_fetches_only_the_lookback_window_plus_new(staged_staging):
    sandbox, staging = staged_staging(**STAGED)  # its first run staged the 300 responses
    last_seen = staging.scalar("SELECT max(responded_at) FROM nps.nps_responses")
    sandbox.clear_log()
    new_ids = sandbox.add_responses(5)

    code, result = staging.run()

    assert code == ExitCode.OK
    window_start = (last_seen - timedelta(days=3)).astimezone(timezone.utc).date()
    [query] = [q for q in staging.response_requests() if "cursor" not in q]
    assert query["period[start]"] == [window_start.isoformat()]
    assert query["period[end]"] == [datetime.now(timezone.utc).date().isoformat()]
    in_window = [
        r for r in sandbox.records if datetime.fromisoformat(r["date_survey_response"]).date() >= window_start
    ]
    feed = result.report.feeds["nps_responses"]
    assert feed.fetched == len(in_window) < 300 / 2
    assert result.changes.new == 5 and result.changes.updated == 0
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == 305
    assert set(map(str, new_ids)) <= set(staged_ids(staging))
    assert feed.cursor_before is not None and feed.cursor_after > feed.cursor_before


def test_edited_response_updates_in_place(staged_staging):
    sandbox, staging = staged_staging(**STAGED)
    recent = sandbox.records[-3]
    cgid = recent["number_customergauge"]
    new_score = 2 if recent["nps"] > 6 else 10
    sandbox.edit_response(cgid, comment="Changed my mind ✍️", nps=new_score)

    code, result = staging.run()

    assert code == ExitCode.OK
    rows = staging.query("SELECT comment, score, category FROM nps.nps_responses WHERE response_id = ?", [str(cgid)])
    assert rows == [("Changed my mind ✍️", new_score, "detractor" if new_score == 2 else "promoter")]
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == 300
    assert result.changes.updated == 1 and result.changes.new == 0


def test_late_response_inside_lookback_is_caught_outside_is_left_to_backfill(staged_staging):
    sandbox, staging = staged_staging(**STAGED)
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    [inside] = sandbox.add_responses(1, responded_at=now - timedelta(days=2))
    [outside] = sandbox.add_responses(1, responded_at=now - timedelta(days=12))

    staging.run()
    ids = set(staged_ids(staging))
    assert str(inside) in ids
    # Documented limit: the API has no updated-at filter, so a response dated before the
    # lookback window is invisible to the scheduled run ...
    assert str(outside) not in ids

    # ... and a backfill over its date range picks it up.
    day = (now - timedelta(days=12)).date()
    code, _ = staging.run(backfill_start=day.isoformat(), backfill_end=day.isoformat())
    assert code == ExitCode.OK
    assert str(outside) in set(staged_ids(staging))


def test_backfill_does_not_move_the_cursor(cg_sandbox, staging_for):
    sandbox = cg_sandbox(responses=300, days=20)
    staging = staging_for(sandbox)
    _, first = staging.run()
    cursor = first.report.feeds["nps_responses"].cursor_after
    old = next(r for r in sandbox.records if datetime.fromisoformat(r["date_survey_response"]).date() < date.today() - timedelta(days=10))
    sandbox.edit_response(old["number_customergauge"], comment="edited long after")
    day = datetime.fromisoformat(old["date_survey_response"]).date()

    code, backfill = staging.run(backfill_start=(day - timedelta(days=1)).isoformat(), backfill_end=day.isoformat())

    assert code == ExitCode.OK
    assert backfill.report.feeds["nps_responses"].window_start == day - timedelta(days=1)
    assert backfill.changes.updated == 1
    assert staging.scalar(
        "SELECT comment FROM nps.nps_responses WHERE response_id = ?", [str(old["number_customergauge"])]
    ) == "edited long after"
    sandbox.clear_log()
    _, after = staging.run()
    feed = after.report.feeds["nps_responses"]
    assert feed.cursor_before == cursor
    assert feed.window_start == (cursor - timedelta(days=3)).date()


def test_invalid_rows_are_quarantined_with_reasons_while_valid_rows_load(cg_sandbox, staging_for):
    sandbox = cg_sandbox(responses=300, days=10, invalid=8)
    staging = staging_for(sandbox)

    code, result = staging.run()

    feed = result.report.feeds["nps_responses"]
    assert code == ExitCode.QUARANTINED
    assert feed.quarantined >= 4 and feed.valid == 300 and feed.fetched == feed.valid + feed.quarantined
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == feed.valid
    rows = staging.query("SELECT response_id, reason, raw FROM nps.quarantine_report")
    assert len(rows) == feed.quarantined
    for _, reason, raw in rows:
        assert reason
        # the payload is kept verbatim: it is one of the served records (which carry only the
        # requested expansions)
        payload = json.loads(raw)
        assert any(payload == {k: v for k, v in r.items() if k not in ("tags", "questions")} for r in sandbox.records)
    reasons = " | ".join(row[1] for row in rows)
    assert "nps: Input should be less than or equal to 10" in reasons
    assert "number_customergauge: Field required" in reasons

    # the same bad records re-read in the next lookback do not pile up, and do not alert again
    code, again = staging.run()
    assert code == ExitCode.OK
    seen = again.report.feeds["nps_responses"].quarantined
    assert seen > 0 and (again.quarantine.new, again.quarantine.seen_before) == (0, seen)
    assert staging.scalar("SELECT count(*) FROM nps.quarantine") == feed.quarantined
    assert staging.query(
        "SELECT outcome, counts->'staged'->>'quarantined_seen_before' FROM gainsight.run_history ORDER BY started_at"
    ) == [("quarantined", "0"), ("ok", str(seen))]

    # a record that turns bad later is new: it alerts once, next to the ones seen before
    latest = staging.scalar("SELECT response_id FROM nps.nps_responses ORDER BY responded_at DESC LIMIT 1")
    sandbox.edit_response(int(latest), nps=11)
    code, later = staging.run()
    assert code == ExitCode.QUARANTINED
    assert (later.quarantine.new, later.quarantine.seen_before) == (1, seen)


def test_clean_run_has_an_empty_quarantine_report_and_daily_view(cg_sandbox, staging_for):
    sandbox = cg_sandbox(responses=250, days=5)
    staging = staging_for(sandbox)
    staging.run()
    assert staging.scalar("SELECT count(*) FROM nps.quarantine_report") == 0
    days = staging.query("SELECT day, responses, promoters, passives, detractors, nps FROM nps.nps_daily")
    assert sum(d[1] for d in days) == 250
    for _, responses, promoters, passives, detractors, nps in days:
        assert promoters + passives + detractors == responses
        assert nps == round(100.0 * (promoters - detractors) / responses, 1)


def test_token_revoked_mid_run_is_renewed_once(cg_sandbox, staging_for):
    sandbox = cg_sandbox(responses=2500)
    sandbox.add_fault(kind="revoke_tokens", path=RESPONSES, skip=2)
    staging = staging_for(sandbox)

    code, result = staging.run()

    assert code == ExitCode.OK
    assert result.report.token_grants == 2
    assert sandbox.count(path=RESPONSES, status=401) == 1
    assert staging.scalar("SELECT count(DISTINCT response_id) FROM nps.nps_responses") == 2500


def test_short_lived_token_is_renewed_before_it_expires(cg_sandbox, staging_for):
    # Two slow pages outlast the 1 s token: the second is sent while the token is still usable and
    # answered after it expired (the sandbox checks on arrival); the third needs a new one.
    sandbox = cg_sandbox(responses=2500, token_lifetime=1.0)
    sandbox.add_fault(kind="delay", delay=0.6, path=RESPONSES, times=2)
    staging = staging_for(sandbox)

    code, result = staging.run()

    assert code == ExitCode.OK
    assert result.report.token_grants >= 2
    assert sandbox.count(path=RESPONSES, status=401) == 0


def test_429_5xx_and_dropped_connections_are_retried(cg_sandbox, staging_for):
    sandbox = cg_sandbox(responses=2500)
    sandbox.add_fault(kind="status", status=429, retry_after=0, path=RESPONSES, skip=1)  # "retry at once" (test_client: a wait)
    sandbox.add_fault(kind="status", status=429, path=RESPONSES, skip=1)
    sandbox.add_fault(kind="status", status=503, path=RESPONSES, skip=2)
    sandbox.add_fault(kind="status", status=500, path="/oauth2/token")
    sandbox.add_fault(kind="drop", path=RESPONSES, skip=3)
    staging = staging_for(sandbox)

    code, result = staging.run()

    assert code == ExitCode.OK
    assert result.report.retries == 5
    assert sandbox.count(path=RESPONSES, status=429) == 2
    assert sandbox.count(path=RESPONSES, status=503) == 1
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == 2500
    assert staging.scalar("SELECT count(DISTINCT response_id) FROM nps.nps_responses") == 2500


def test_exhausted_retries_fail_clearly_and_commit_nothing(staged_staging, caplog):
    sandbox, staging = staged_staging(**STAGED)  # every request fails: one page is as good as three
    sandbox.add_responses(3)
    sandbox.add_fault(kind="status", status=503, path=RESPONSES, skip=0, times=50)

    code, result = staging.run(max_attempts=3)

    assert code == ExitCode.SOURCE_API_ERROR and result is None
    assert "still failing after 3 attempts: HTTP 503 on GET /v7/rest/sync/responses" in caplog.text
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == 300
    sandbox.clear_faults()
    code, result = staging.run()
    assert code == ExitCode.OK and result.changes.new == 3


def test_long_retry_after_stops_the_run_instead_of_sleeping(cg_sandbox, staging_for, caplog):
    sandbox = cg_sandbox(responses=100)
    sandbox.add_fault(kind="status", status=429, retry_after=3600, path=RESPONSES)
    staging = staging_for(sandbox)
    code, _ = staging.run(max_retry_wait_seconds=5)
    assert code == ExitCode.SOURCE_API_ERROR
    assert "asks to wait 3600 s" in caplog.text
    # no wait and no second attempt: the one page request got its 429 and the run stopped there
    # (a retry would have slept first, and found the page served: the fault answers once)
    assert sandbox.count(path=RESPONSES) == 1 and sandbox.count(path=RESPONSES, status=429) == 1
    assert "retry 1/" not in caplog.text


def test_wrong_credentials_exit_3_without_leaking_the_secret(cg_sandbox, staging_for, caplog, capsys):
    sandbox = cg_sandbox(responses=10)
    staging = staging_for(sandbox)
    code, _ = staging.run(client_secret="wrong-secret-value-123")
    assert code == ExitCode.CREDENTIALS_REJECTED
    assert "rejected the client credentials" in caplog.text and "invalid_client" in caplog.text
    out = capsys.readouterr()
    for text in (caplog.text, out.out, out.err):
        assert "wrong-secret-value-123" not in text


def test_wiping_the_pipelines_dir_restores_the_cursor_from_duckdb(cg_sandbox, staging_for):
    sandbox = cg_sandbox(responses=600, days=30)
    staging = staging_for(sandbox)
    _, first = staging.run()
    cursor = first.report.feeds["nps_responses"].cursor_after
    shutil.rmtree(staging.settings.pipelines_dir)
    sandbox.add_responses(3)
    sandbox.clear_log()

    code, second = staging.run()

    assert code == ExitCode.OK
    feed = second.report.feeds["nps_responses"]
    assert feed.cursor_before == cursor
    assert feed.window_start == (cursor - timedelta(days=3)).date()
    assert feed.fetched < 300
    assert second.changes.new == 3
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == 603


def crash_after_normalize(staging, run_id: str) -> None:
    """A run that dies after dlt extracted and normalized, before anything was loaded."""
    store = StagingStore.open(staging.settings.duckdb_path, "nps")
    pipeline = make_pipeline(staging.settings, store)
    pipeline.sync_destination()
    pipeline.extract(customergauge(report=ExtractReport(run_id=run_id), **staging.options()))
    pipeline.normalize()
    store.close()


def test_run_killed_between_extract_and_load_is_finished_by_the_next_run(staged_staging):
    sandbox, staging = staged_staging(**STAGED)
    added = sandbox.add_responses(7)
    crash_after_normalize(staging, "crashed")  # data and the advanced cursor sit in a pending package

    code, result = staging.run()

    assert code == ExitCode.OK
    assert result.finished_pending == 1
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == 307
    assert staging.scalar("SELECT count(DISTINCT response_id) FROM nps.nps_responses") == 307
    assert set(map(str, added)) <= set(staged_ids(staging))
    # the pending package carried the cursor: this run's window starts from it
    assert result.report.feeds["nps_responses"].cursor_before == staging.scalar(
        "SELECT max(responded_at) FROM nps.nps_responses"
    )


def test_first_run_killed_before_any_load_starts_over_cleanly(cg_sandbox, staging_for):
    sandbox = cg_sandbox(responses=1500, days=20)
    staging = staging_for(sandbox)
    crash_after_normalize(staging, "crashed")

    code, result = staging.run()

    # nothing reached DuckDB, so dlt discards the orphaned package and this run starts from the
    # initial date again: everything arrives once
    assert code == ExitCode.OK
    initial = date.fromisoformat(staging.options()["initial_response_date"])
    assert result.report.feeds["nps_responses"].cursor_before.date() == initial
    assert staging.scalar("SELECT count(DISTINCT response_id) FROM nps.nps_responses") == 1500
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == 1500


def test_second_process_fails_fast_on_the_lock(staged_staging):
    sandbox, staging = staged_staging(**STAGED)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(staging.settings.duckdb_path)!r}); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, result = staging.run()
        assert code == ExitCode.LOCKED and result is None
        # it gave up while the other process still held the file, rather than waiting for it
        assert holder.poll() is None, "the run waited for the holder to let go"
        assert sandbox.count(path=RESPONSES) == 0  # nothing fetched by the locked-out run
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("initial_response_date", "01/02/2025", "initial_response_date must be a YYYY-MM-DD date"),
        ("lookback_days", -1, "lookback_days must be >= 0"),
        ("tenant_timezone", "Mars/Base", "not an IANA time zone"),
        ("expansions", ["drivers", "segments"], "expansions may only hold"),
    ],
)
def test_invalid_options_are_config_errors(cg_sandbox, staging_for, caplog, option, value, message):
    staging = staging_for(cg_sandbox(responses=10))
    code, _ = staging.run(**{option: value})
    assert code == ExitCode.CONFIG_ERROR
    assert message in caplog.text


def test_large_window_is_loaded_in_parts_and_late_rows_are_kept(cg_sandbox, staging_for):
    sandbox = cg_sandbox(responses=3500, days=30)
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    # late arrivals: old response dates at the very end of the feed, so they land in the last part,
    # after earlier parts already moved the cursor to recent dates
    late = sandbox.add_responses(3, responded_at=now - timedelta(days=25))
    staging = staging_for(sandbox)

    code, result = staging.run(rows_per_load=1000)

    assert code == ExitCode.OK
    feed = result.report.feeds["nps_responses"]
    assert feed.loads == 4 and feed.complete
    assert feed.fetched == 3503 and result.changes.new == 3503
    ids = staged_ids(staging)
    assert len(ids) == len(set(ids)) == 3503
    assert set(map(str, late)) <= set(ids)
    loads = staging.scalar("SELECT count(*) FROM nps._dlt_loads WHERE status = 0")
    assert loads == 4
    # every part after the first continued the same window at the feed position it reached
    first_pages = [q for q in staging.response_requests() if "cursor" not in q]
    assert len(first_pages) == 1


def test_run_killed_mid_window_resumes_at_the_feed_position(cg_sandbox, staging_for, caplog):
    sandbox = cg_sandbox(responses=3500, days=30)
    staging = staging_for(sandbox)
    sandbox.add_fault(kind="status", status=503, path=RESPONSES, skip=2, times=100)

    code, result = staging.run(rows_per_load=1000, decode_workers=0, max_attempts=2)

    assert code == ExitCode.SOURCE_API_ERROR
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == 2000  # two parts made it
    stopped_at = int(staging.response_requests()[-1]["cursor"][0])
    sandbox.clear_faults()
    sandbox.clear_log()

    code, result = staging.run(rows_per_load=1000, decode_workers=0)

    assert code == ExitCode.OK
    feed = result.report.feeds["nps_responses"]
    assert feed.resumed and feed.fetched == 1500
    first = staging.response_requests()[0]
    assert first["cursor"] == [str(stopped_at)]
    assert first["period[start]"] == [(date.today() - timedelta(days=40)).isoformat()]
    assert staging.scalar("SELECT count(DISTINCT response_id) FROM nps.nps_responses") == 3500
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == 3500


def test_merge_that_outgrows_the_duckdb_memory_budget_is_retried_with_more(cg_sandbox, staging_for, caplog, monkeypatch):
    # dlt retries a load job that failed transiently (out of memory at 4MB) up to
    # load.raise_on_max_retries times (5), each after its loader loop's 1 s wait, before it raises to
    # the connector: one try at the same budget shows the same as five, without ~5 s of waiting.
    monkeypatch.setenv("LOAD__RAISE_ON_MAX_RETRIES", "1")
    sandbox = cg_sandbox(responses=3000, days=20)
    staging = staging_for(sandbox, duckdb_memory_limit="4MB")

    code, result = staging.run()

    assert code == ExitCode.OK
    assert "DuckDB needed more than 4MB to merge this part; retrying with 512MB" in caplog.text
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == 3000


def test_window_ending_exactly_at_a_part_boundary_needs_no_empty_part(cg_sandbox, staging_for):
    sandbox = cg_sandbox(responses=3000, days=30)
    staging = staging_for(sandbox)

    code, result = staging.run(rows_per_load=1000, decode_workers=2)

    feed = result.report.feeds["nps_responses"]
    assert code == ExitCode.OK and feed.complete
    assert feed.loads == 3
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == 3000


def test_non_responses_are_staged_when_enabled(cg_sandbox, staging_for):
    sandbox = cg_sandbox(responses=200, days=10, non_responses=150)
    staging = staging_for(sandbox)

    code, result = staging.run(include_non_responses=True)

    assert code == ExitCode.OK
    feed = result.report.feeds["nps_non_responses"]
    assert feed.valid == 150 and feed.complete
    assert staging.scalar("SELECT count(DISTINCT response_id) FROM nps.nps_non_responses") == 150
    assert staging.scalar("SELECT count(*) FROM nps.nps_non_responses WHERE sent_at IS NULL") == 0
    [query] = [e.query for e in sandbox.requests(path="/v7/rest/sync/non-responses")][:1]
    assert query["period[field]"] == ["date_sent"]
    # an invalid invitation is quarantined like an invalid response
    sandbox.add_raw_non_response({"number_customergauge": 999001, "email": "x@y.z", "date_email_sent": "not a date"})
    sandbox.add_raw_non_response({"email": "no-id@y.z", "date_email_sent": "2026-11-27 10:00:00"})
    code, result = staging.run(include_non_responses=True, backfill_start="2026-11-27", backfill_end=date.today().isoformat())
    assert code == ExitCode.QUARANTINED
    reasons = staging.query("SELECT source_table, reason, sent_at FROM nps.quarantine ORDER BY reason")
    assert [r[0] for r in reasons] == ["nps_non_responses"]
    assert "number_customergauge: Field required" in reasons[0][1]
    assert reasons[0][2] is not None
    # off by default: the scheduled run does not touch the endpoint
    sandbox.clear_log()
    staging.run()
    assert sandbox.count(path="/v7/rest/sync/non-responses") == 0


def test_a_rejected_request_stops_the_run_with_the_vendor_message(cg_sandbox, staging_for, caplog):
    sandbox = cg_sandbox(responses=1200)  # the second of two pages is refused
    sandbox.add_fault(kind="status", status=422, path=RESPONSES, skip=1)
    staging = staging_for(sandbox)

    code, result = staging.run()

    assert code == ExitCode.SOURCE_API_ERROR and result is None
    assert "CustomerGauge rejected GET /v7/rest/sync/responses with HTTP 422: Unprocessable Entity" in caplog.text
    assert sandbox.count(path=RESPONSES, status=422) == 1  # a 422 is never retried
    with pytest.raises(duckdb.CatalogException):  # nothing was loaded: the part failed before its load
        staging.scalar("SELECT count(*) FROM nps.nps_responses")


def test_response_edited_while_its_window_is_paged_lands_once_in_its_latest_version(cg_sandbox, staging_for, caplog):
    caplog.set_level(logging.INFO)
    sandbox = cg_sandbox(responses=3500, days=20, time_scale=0)
    sandbox.add_fault(kind="delay", delay=60, path=RESPONSES, skip=1)  # page two waits for the sandbox clock
    staging = staging_for(sandbox)
    first_page_record = sandbox.records[10]["number_customergauge"]
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(result=staging.run(decode_workers=0)))
    runner.start()
    sandbox.clock.wait_for_sleepers(1)
    # page one is served: the record moves to the end of the feed, which this run has not read yet
    sandbox.edit_response(first_page_record, comment="edited during the run")
    sandbox.advance(60)
    runner.join(timeout=60)

    code, result = outcome["result"]
    assert code == ExitCode.OK
    assert "came back edited mid-window; it goes to the next part" in caplog.text
    assert result.report.feeds["nps_responses"].loads == 2
    assert staging.scalar("SELECT count(*) FROM nps.nps_responses") == 3500
    assert staging.scalar(
        "SELECT comment FROM nps.nps_responses WHERE response_id = ?", [str(first_page_record)]
    ) == "edited during the run"


def test_empty_last_page_ends_paging_whatever_its_cursor_says(cg_sandbox, staging_for):
    """The reference documents `cursor.next` on the empty page as a number [assumed]; a `null` or an
    absent `next` ends paging just the same, and every request asks for JSON. One staging file meets
    each form in turn (the sandbox answers the empty page the way it is told at that moment): a first
    run, then a run after new responses, each paging to the end and stopping there."""
    sandbox = cg_sandbox(responses=300, days=10)
    staging = staging_for(sandbox)
    for last_page_cursor, added in (("number", 0), ("null", 4), ("missing", 4)):
        sandbox.last_page_cursor = last_page_cursor
        sandbox.add_responses(added)
        sandbox.clear_log()

        code, _ = staging.run()

        assert code == ExitCode.OK, last_page_cursor
        assert set(staged_ids(staging)) == sandbox_ids(sandbox) and len(staged_ids(staging)) == len(sandbox.records)
        requests = staging.response_requests()
        assert len(requests) == 2 and "cursor" in requests[-1], last_page_cursor  # one data page, then the empty one
        sent = sandbox.requests()
        assert {entry.path for entry in sent} == {RESPONSES, "/oauth2/token"}
        assert all(entry.accept == "application/json" for entry in sent)  # token and data requests alike
    assert len(sandbox.records) == 308
