"""The outbox: staged responses Gainsight does not hold in their current version yet.

It is computed from the staging table and the ledger, never remembered: a response is in it when
its content hash differs from the hash last confirmed in Gainsight (`needs_response`), when its
Timeline activity is missing (recent responses only) or shows an older version of it
(`needs_activity`), or when its person or company was dead-lettered and is due for another attempt
(`needs_retry`). Content that already failed `max_attempts` times stays out until it changes (the
rules are in `retries.py`).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa
import pyarrow.compute as pc


from .ledger import SCHEMA
from .retries import given_up as given_up_sql
from .retries import needs_activity, needs_response, retry_sql
from .settings import GainsightSettings

# Canonical columns the push reads (the field map may name any of them).
COLUMNS = (
    "response_id, score, category, comment, email, first_name, last_name, account_id, account_name, "
    "survey_id, touchpoint, channel, language, country, segment, product, case_link, responded_at, content_hash"
)

def outbox_sql(dataset: str) -> str:
    """The outbox query over `dataset`; flags per row say which steps it needs. `needs_retry`
    brings back a dead-lettered person or company whose responses Gainsight already holds."""
    retry = retry_sql(dataset, "$max_attempts", "$timeline", "$activity_since")
    return f"""
WITH retry AS ({retry})
SELECT * FROM (
    SELECT {', '.join('r.' + c.strip() for c in COLUMNS.split(','))},
        {needs_response('$max_attempts')} AS needs_response,
        {needs_activity('$max_attempts', '$timeline', '$activity_since')} AS needs_activity,
        (r.email IN (SELECT record_key FROM retry WHERE object = 'people' AND will_retry)
            OR r.account_id IN (SELECT record_key FROM retry WHERE object = 'companies' AND will_retry))
            AS needs_retry
    FROM {dataset}.nps_responses r
    LEFT JOIN {SCHEMA}.responses l USING (response_id)
    LEFT JOIN {SCHEMA}.activities a USING (response_id)
) WHERE needs_response OR needs_activity OR needs_retry
"""


def outbox_parameters(settings: GainsightSettings) -> dict[str, object]:
    return {
        "max_attempts": settings.max_attempts,
        "timeline": settings.timeline_enabled,
        "activity_since": datetime.now(timezone.utc) - timedelta(days=max(settings.timeline_max_age_days, 0)),
    }


def read_outbox(
    db: duckdb.DuckDBPyConnection, dataset: str, settings: GainsightSettings, batch_rows: int = 10_000
) -> pa.RecordBatchReader:
    """The whole outbox as a stream of Arrow batches (the push pipeline's extract)."""
    return db.sql(outbox_sql(f'"{dataset}"'), params=outbox_parameters(settings)).to_arrow_reader(batch_rows)


def staged_rows(db: duckdb.DuckDBPyConnection, dataset: str, hashes: dict[str, str]) -> pa.Table:
    """Staged rows of `hashes`' response ids whose content still has that hash (Bulk recovery)."""
    db.register("_uploaded", pa.table({"response_id": list(hashes), "content_hash": list(hashes.values())}))
    try:
        return db.sql(
            f"""SELECT {', '.join('r.' + c.strip() for c in COLUMNS.split(','))}, TRUE AS needs_response,
                       FALSE AS needs_activity, FALSE AS needs_retry
                FROM "{dataset}".nps_responses r JOIN _uploaded u USING (response_id, content_hash)"""
        ).to_arrow_table()
    finally:
        db.unregister("_uploaded")


def given_up(db: duckdb.DuckDBPyConnection, dataset: str, settings: GainsightSettings) -> dict[str, int]:
    """Per object, the staged records Gainsight rejected that no run sends again until they change."""
    retry = retry_sql(f'"{dataset}"', "$max_attempts", "$timeline", "$activity_since")
    rows = db.execute(
        f"SELECT object, count(*) FROM ({retry}) WHERE NOT will_retry GROUP BY object", outbox_parameters(settings)
    ).fetchall()
    return {name: int(count) for name, count in rows}


def still_pending(db: duckdb.DuckDBPyConnection, outbox: pa.Table, max_attempts: int, run_id: str) -> pa.Table:
    """The rows of an outbox file the ledger has not confirmed (or given up on) since it was written.

    A package a killed run left pending is delivered again by the next run, after other work
    (a recovered Bulk upload, say) may already have confirmed its rows or failed them for the last
    time: without this check they would be sent again, at the price of calls and quota. A record
    Gainsight rejected in this run (`run_id`) is not sent again before the next run either, so a
    re-delivered package and the fresh outbox count one attempt, not two. Only the flags are
    recomputed, in DuckDB (100k Python strings would stay in the process's heap); the (large)
    table is copied only when some row changed.
    """
    if "needs_retry" not in outbox.column_names:  # a package written before retries were flagged
        outbox = outbox.append_column("needs_retry", pa.array([False] * outbox.num_rows, pa.bool_()))
    flags = ["needs_response", "needs_activity", "needs_retry"]
    keys = outbox.select(["response_id", "email", "account_id", "content_hash", *flags])
    db.register("_outbox", keys.append_column("position", pa.array(range(outbox.num_rows), pa.int64())))
    try:
        fresh = db.sql(
            f"""WITH dead AS (SELECT object, record_key, run_id = $run_id AS now FROM {SCHEMA}.dead_letters)
                SELECT o.needs_response AND l.pushed_hash IS DISTINCT FROM o.content_hash
                           AND NOT {given_up_sql('l', 'o.content_hash', '$max_attempts')}
                           AND NOT {_dead('responses', 'o.response_id', 'now')} AS needs_response,
                       o.needs_activity AND a.source_hash IS DISTINCT FROM o.content_hash
                           AND NOT {given_up_sql('a', 'o.content_hash', '$max_attempts')}
                           AND NOT {_dead('activities', 'o.response_id', 'now')} AS needs_activity,
                       o.needs_retry
                           AND ({_dead('people', 'o.email', 'NOT now')} OR {_dead('companies', 'o.account_id', 'NOT now')})
                           AS needs_retry
                FROM _outbox o
                LEFT JOIN {SCHEMA}.responses l USING (response_id)
                LEFT JOIN {SCHEMA}.activities a USING (response_id)
                ORDER BY o.position""",
            params={"max_attempts": max_attempts, "run_id": run_id},
        ).to_arrow_table()
    finally:
        db.unregister("_outbox")
    if all(fresh[flag].equals(outbox[flag]) for flag in flags):
        return outbox
    table = outbox
    for flag in flags:
        table = table.set_column(table.schema.get_field_index(flag), flag, fresh[flag])
    return table.filter(pc.or_(pc.or_(table["needs_response"], table["needs_activity"]), table["needs_retry"]))


def _dead(table: str, key: str, condition: str) -> str:
    """SQL: the record `key` of `table` has a dead letter (CTE `dead`) meeting `condition`."""
    return f"EXISTS (SELECT 1 FROM dead WHERE object = '{table}' AND record_key = {key} AND {condition})"


def latest_per(
    db: duckdb.DuckDBPyConnection, outbox: pa.Table, key: str, columns: list[str], only_needing_record: bool = False
) -> dict[str, dict[str, object]]:
    """key -> `columns` of its most recent response in the outbox (names and accounts drift).

    Grouped in DuckDB, so a 100k-row outbox becomes a few thousand Python objects, not 100k dicts.
    """
    picks = ", ".join(f"arg_max({column}, responded_at) AS {column}" for column in columns)
    condition = "AND (needs_response OR needs_retry)" if only_needing_record else ""
    db.register("_latest", outbox.select([key, "responded_at", "needs_response", "needs_retry", *columns]))
    try:
        rows = db.sql(f"SELECT {key}, {picks} FROM _latest WHERE {key} IS NOT NULL {condition} GROUP BY {key}").fetchall()
    finally:
        db.unregister("_latest")
    return {row[0]: dict(zip(columns, row[1:])) for row in rows}
