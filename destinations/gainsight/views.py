"""Inspection views over the ledger, recreated after every push.

`gainsight.response_status` answers "did Jane's detractor response reach Gainsight?" in one query;
`gainsight.dead_letter_report` lists what Gainsight rejected, why, and whether it is still retried;
`gainsight.accounts_waiting` lists the accounts that have no Company to reference yet, and why.
"""

from __future__ import annotations

import duckdb

from .ledger import SCHEMA
from .retries import retry_sql
from .settings import GainsightSettings

RESPONSE_STATUS_VIEW = """
CREATE OR REPLACE VIEW {schema}.response_status AS
SELECT
    r.response_id, r.email, r.score, r.category, r.account_id, r.responded_at,
    CASE
        WHEN l.pushed_hash = r.content_hash THEN 'in gainsight'
        WHEN l.status = 'failed' AND l.failed_hash = r.content_hash AND l.attempts >= {max_attempts}
            THEN 'rejected (given up)'
        WHEN l.status = 'failed' THEN 'rejected (will retry)'
        WHEN l.pushed_hash IS NOT NULL THEN 'older version in gainsight'
        WHEN w.account_id IS NOT NULL THEN 'waiting for its company'
        WHEN l.status = 'deferred' THEN 'deferred (quota)'
        ELSE 'not pushed yet'
    END AS gainsight_status,
    l.gsid AS gainsight_gsid, l.via, l.updated_at AS pushed_at,
    l.last_error_code, l.last_error,
    c.gsid AS company_gsid,
    a.status AS timeline_status, a.external_id AS timeline_external_id, a.last_error_code AS timeline_error_code
FROM {dataset}.nps_responses r
LEFT JOIN {schema}.responses l USING (response_id)
LEFT JOIN {schema}.activities a USING (response_id)
LEFT JOIN {schema}.companies c ON c.account_id = r.account_id
LEFT JOIN {schema}.company_waits w ON w.account_id = r.account_id
"""

ACCOUNTS_WAITING_VIEW = """
CREATE OR REPLACE VIEW {schema}.accounts_waiting AS
SELECT
    w.account_id, w.account_name, w.reason, w.candidates,
    count(r.response_id) FILTER (WHERE l.pushed_hash IS DISTINCT FROM r.content_hash) AS responses_waiting,
    w.first_waited_at, w.last_checked_at
FROM {schema}.company_waits w
LEFT JOIN {dataset}.nps_responses r ON r.account_id = w.account_id
LEFT JOIN {schema}.responses l USING (response_id)
GROUP BY ALL
ORDER BY responses_waiting DESC, w.account_id
"""

# `will_retry` is the outbox's own rule (`retries.retry_sql`), evaluated with the run's settings:
# true exactly when the next run sends the record again.
DEAD_LETTER_VIEW = """
CREATE OR REPLACE VIEW {schema}.dead_letter_report AS
SELECT
    d.object, d.record_key, d.error_code, d.error_message, d.attempts,
    coalesce(retry.will_retry, FALSE) AS will_retry,
    d.first_failed_at, d.last_failed_at, d.run_id, d.payload
FROM {schema}.dead_letters d
LEFT JOIN ({retry}) retry USING (object, record_key)
ORDER BY d.last_failed_at DESC
"""


def ensure_views(db: duckdb.DuckDBPyConnection, dataset: str, settings: GainsightSettings) -> None:
    max_attempts = int(settings.max_attempts)
    names = {"schema": SCHEMA, "dataset": f'"{dataset}"', "max_attempts": max_attempts}
    db.execute(RESPONSE_STATUS_VIEW.format(**names))
    since = f"now() - INTERVAL {max(int(settings.timeline_max_age_days), 0)} DAY"
    retry = retry_sql(names["dataset"], str(max_attempts), str(bool(settings.timeline_enabled)).upper(), since)
    db.execute(DEAD_LETTER_VIEW.format(retry=retry, **names))
    db.execute(ACCOUNTS_WAITING_VIEW.format(**names))
