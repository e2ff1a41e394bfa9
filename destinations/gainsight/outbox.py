"""The outbox: staged responses Gainsight does not hold in their current version yet.

It is computed from the staging table and the ledger, never remembered: a response is in it when
its content hash differs from the hash last confirmed in Gainsight (`needs_response`), or when its
Timeline activity is missing (recent responses only) or shows an older version of it
(`needs_activity`). Content that already failed `max_attempts` times stays out until it changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from connector_common.sql import one_row

from .ledger import SCHEMA
from .settings import GainsightSettings

# Canonical columns the push reads (the field map may name any of them).
COLUMNS = (
    "response_id, score, category, comment, email, first_name, last_name, account_id, account_name, "
    "survey_id, touchpoint, channel, language, country, segment, product, case_link, responded_at, content_hash"
)

# An activity exists in Gainsight (an edit then updates it, whatever the response's age).
ACTIVITY_BOOKED = "coalesce(a.status IN ('created', 'exists', 'updated') OR a.pushed_hash IS NOT NULL, FALSE)"

OUTBOX_SQL = f"""
SELECT * FROM (
    SELECT {', '.join('r.' + c.strip() for c in COLUMNS.split(','))},
        (l.response_id IS NULL OR l.pushed_hash IS DISTINCT FROM r.content_hash)
            AND NOT coalesce(l.failed_hash = r.content_hash AND l.attempts >= $max_attempts, FALSE)
            AS needs_response,
        ($timeline AND r.account_id IS NOT NULL
            AND CASE WHEN {ACTIVITY_BOOKED} THEN a.source_hash IS DISTINCT FROM r.content_hash
                     ELSE r.responded_at >= $activity_since END
            AND NOT coalesce(a.failed_hash = r.content_hash AND a.attempts >= $max_attempts, FALSE))
            AS needs_activity
    FROM {{dataset}}.nps_responses r
    LEFT JOIN {SCHEMA}.responses l USING (response_id)
    LEFT JOIN {SCHEMA}.activities a USING (response_id)
    {{where}}
) WHERE needs_response OR needs_activity
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
    sql = OUTBOX_SQL.format(dataset=f'"{dataset}"', where="")
    return db.sql(sql, params=outbox_parameters(settings)).to_arrow_reader(batch_rows)


def staged_rows(db: duckdb.DuckDBPyConnection, dataset: str, hashes: dict[str, str]) -> pa.Table:
    """Staged rows of `hashes`' response ids whose content still has that hash (Bulk recovery)."""
    db.register("_uploaded", pa.table({"response_id": list(hashes), "content_hash": list(hashes.values())}))
    try:
        return db.sql(
            f"""SELECT {', '.join('r.' + c.strip() for c in COLUMNS.split(','))}, TRUE AS needs_response,
                       FALSE AS needs_activity
                FROM "{dataset}".nps_responses r JOIN _uploaded u USING (response_id, content_hash)"""
        ).to_arrow_table()
    finally:
        db.unregister("_uploaded")


def given_up(db: duckdb.DuckDBPyConnection, dataset: str, max_attempts: int) -> int:
    """Staged responses left out of the outbox because this content failed `max_attempts` times."""
    row = one_row(
        db,
        f"""SELECT count(*) FROM "{dataset}".nps_responses r JOIN {SCHEMA}.responses l USING (response_id)
            WHERE l.failed_hash = r.content_hash AND l.attempts >= ?""",
        [max_attempts],
    )
    return int(row[0]) if row else 0


def still_pending(db: duckdb.DuckDBPyConnection, outbox: pa.Table, max_attempts: int) -> pa.Table:
    """The rows of an outbox file the ledger has not confirmed (or given up on) since it was written.

    A package a killed run left pending is delivered again by the next run, after other work
    (a recovered Bulk upload, say) may already have confirmed its rows or failed them for the last
    time: without this check they would be sent again, at the price of calls and quota. Only the
    two flags are recomputed, in DuckDB (100k Python strings would stay in the process's heap);
    the (large) table is copied only when some row changed.
    """
    keys = outbox.select(["response_id", "content_hash", "needs_response", "needs_activity"])
    db.register("_outbox", keys.append_column("position", pa.array(range(outbox.num_rows), pa.int64())))
    try:
        flags = db.sql(
            f"""SELECT o.needs_response AND l.pushed_hash IS DISTINCT FROM o.content_hash
                           AND NOT coalesce(l.failed_hash = o.content_hash AND l.attempts >= $max_attempts, FALSE)
                           AS needs_response,
                       o.needs_activity AND a.source_hash IS DISTINCT FROM o.content_hash AS needs_activity
                FROM _outbox o
                LEFT JOIN {SCHEMA}.responses l USING (response_id)
                LEFT JOIN {SCHEMA}.activities a USING (response_id)
                ORDER BY o.position""",
            params={"max_attempts": max_attempts},
        ).to_arrow_table()
    finally:
        db.unregister("_outbox")
    if flags["needs_response"].equals(outbox["needs_response"]) and flags["needs_activity"].equals(outbox["needs_activity"]):
        return outbox
    table = outbox.set_column(outbox.schema.get_field_index("needs_response"), "needs_response", flags["needs_response"])
    table = table.set_column(table.schema.get_field_index("needs_activity"), "needs_activity", flags["needs_activity"])
    return table.filter(pc.or_(table["needs_response"], table["needs_activity"]))


def latest_per(
    db: duckdb.DuckDBPyConnection, outbox: pa.Table, key: str, columns: list[str], only_needing_record: bool = False
) -> dict[str, dict[str, object]]:
    """key -> `columns` of its most recent response in the outbox (names and accounts drift).

    Grouped in DuckDB, so a 100k-row outbox becomes a few thousand Python objects, not 100k dicts.
    """
    picks = ", ".join(f"arg_max({column}, responded_at) AS {column}" for column in columns)
    condition = "AND needs_response" if only_needing_record else ""
    db.register("_latest", outbox.select([key, "responded_at", "needs_response", *columns]))
    try:
        rows = db.sql(f"SELECT {key}, {picks} FROM _latest WHERE {key} IS NOT NULL {condition} GROUP BY {key}").fetchall()
    finally:
        db.unregister("_latest")
    return {row[0]: dict(zip(columns, row[1:])) for row in rows}
