"""The source on its own, as any dlt user would run it: `pipeline.run(customergauge(...))`.

The command loads a large window in parts (tests/test_stage.py); a plain run has no loop around
it, so the source itself must page the whole window into its one load.
"""

from __future__ import annotations

import threading

import dlt
import duckdb

from sources.customergauge import customergauge


def plain_pipeline(tmp_path) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name="plain_customergauge",
        destination=dlt.destinations.duckdb(str(tmp_path / "plain.duckdb")),
        dataset_name="nps",
        pipelines_dir=str(tmp_path / "pipelines"),
    )


def staged(tmp_path) -> tuple[int, int, int]:
    """Staged rows, distinct responses among them, quarantined records."""
    with duckdb.connect(str(tmp_path / "plain.duckdb"), read_only=True) as conn:
        rows, responses = conn.execute("SELECT count(*), count(DISTINCT response_id) FROM nps.nps_responses").fetchone()
        return rows, responses, conn.execute("SELECT count(*) FROM nps.quarantine").fetchone()[0]


def edit_when_held(sandbox, response: int) -> threading.Thread:
    """Edit `response` while the run waits for a held page, then release the page."""

    def edit() -> None:
        try:
            sandbox.clock.wait_for_sleepers(1)
            sandbox.edit_response(response, comment="edited during the run")
        finally:
            sandbox.advance(60)

    editor = threading.Thread(target=edit)
    editor.start()
    return editor


def test_plain_pipeline_run_loads_a_window_larger_than_rows_per_load_once(cg_sandbox, staging_for, tmp_path):
    sandbox = cg_sandbox(responses=1500, days=20, invalid=2)  # two parts of rows_per_load
    options = staging_for(sandbox).options(rows_per_load=1000)
    pipeline = plain_pipeline(tmp_path)

    pipeline.run(customergauge(**options))

    assert staged(tmp_path) == (1500, 1500, 2)
    assert len(pipeline.list_completed_load_packages()) == 1
    assert not pipeline.list_extracted_load_packages() and not pipeline.list_normalized_load_packages()
    sandbox.clear_log()

    pipeline.run(customergauge(**options))  # nothing new: the lookback re-reads recent days only

    assert staged(tmp_path) == (1500, 1500, 2)
    first_page = sandbox.requests(path="/v7/rest/sync/responses")[0].query
    assert first_page["period[start]"][0] > options["initial_response_date"]


def test_plain_run_keeps_the_latest_copy_of_a_response_edited_while_its_window_is_paged(cg_sandbox, staging_for, tmp_path):
    sandbox = cg_sandbox(responses=1500, days=20, invalid=2, time_scale=0)  # two pages
    sandbox.add_fault(kind="delay", delay=60, path="/v7/rest/sync/responses", skip=1)  # page two waits for the clock
    options = staging_for(sandbox).options(decode_workers=0)
    edited = sandbox.records[10]["number_customergauge"]  # on page one; re-emitted at the end of the feed
    editor = edit_when_held(sandbox, edited)

    pipeline = plain_pipeline(tmp_path)
    pipeline.run(customergauge(**options))
    editor.join()

    assert pipeline.last_trace.last_normalize_info.row_counts["nps_responses"] == 1501  # both copies in one load
    assert staged(tmp_path) == (1500, 1500, 2)
    with duckdb.connect(str(tmp_path / "plain.duckdb"), read_only=True) as conn:
        comment = conn.execute("SELECT comment FROM nps.nps_responses WHERE response_id = ?", [str(edited)]).fetchone()
    assert comment == ("edited during the run",)
