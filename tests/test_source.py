"""The source on its own, as any dlt user would run it: `pipeline.run(customergauge(...))`.

The command loads a large window in parts (tests/test_stage.py); a plain run has no loop around
it, so the source itself must page the whole window into its one load.
"""

from __future__ import annotations

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


def test_plain_pipeline_run_loads_a_window_larger_than_rows_per_load_once(cg_sandbox, staging_for, tmp_path):
    sandbox = cg_sandbox(responses=2500, days=20, invalid=2)
    options = staging_for(sandbox).options(rows_per_load=1000)
    pipeline = plain_pipeline(tmp_path)

    pipeline.run(customergauge(**options))

    assert staged(tmp_path) == (2500, 2500, 2)
    assert len(pipeline.list_completed_load_packages()) == 1
    assert not pipeline.list_extracted_load_packages() and not pipeline.list_normalized_load_packages()
    sandbox.clear_log()

    pipeline.run(customergauge(**options))  # nothing new: the lookback re-reads recent days only

    assert staged(tmp_path) == (2500, 2500, 2)
    first_page = sandbox.requests(path="/v7/rest/sync/responses")[0].query
    assert first_page["period[start]"][0] > options["initial_response_date"]
