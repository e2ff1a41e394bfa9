"""When a record Gainsight rejected is sent again: one definition for the push and for the report.

A dead-lettered company, person, response or Timeline activity is retried by every later run until
the same content has failed `max_attempts` times; content that changed starts counting again. The
outbox (what the next run sends) and `dead_letter_report.will_retry` (what an operator is told)
are both built from the SQL here, so they cannot disagree. Responses and activities are compared
with the staged `content_hash`; companies and people with the hashes of `records.company_hash` and
`records.person_hash`, recomputed in SQL from their latest staged response (a unit test keeps the
two spellings equal).
"""

from __future__ import annotations

from .ledger import SCHEMA


def given_up(ledger: str, content_hash: str, max_attempts: str) -> str:
    """SQL: this content of the `ledger` row already failed `max_attempts` times (stop sending it)."""
    return f"coalesce({ledger}.failed_hash = {content_hash} AND {ledger}.attempts >= {max_attempts}, FALSE)"


def needs_response(max_attempts: str) -> str:
    """SQL over staged `r` and ledger `l`: Gainsight lacks this version and it is not given up."""
    return (
        f"((l.response_id IS NULL OR l.pushed_hash IS DISTINCT FROM r.content_hash) "
        f"AND NOT {given_up('l', 'r.content_hash', max_attempts)})"
    )


# An activity exists in Gainsight (an edit then updates it, whatever the response's age).
ACTIVITY_BOOKED = "coalesce(a.status IN ('created', 'exists', 'updated') OR a.pushed_hash IS NOT NULL, FALSE)"


def needs_activity(max_attempts: str, timeline: str, activity_since: str) -> str:
    """SQL over staged `r` and activity ledger `a`: a recent response without its Timeline entry,
    or one whose entry shows an older version of it."""
    return (
        f"({timeline} AND r.account_id IS NOT NULL "
        f"AND CASE WHEN {ACTIVITY_BOOKED} THEN a.source_hash IS DISTINCT FROM r.content_hash "
        f"ELSE r.responded_at >= {activity_since} END "
        f"AND NOT {given_up('a', 'r.content_hash', max_attempts)})"
    )


# records.company_hash(account_id, name) and records.person_hash(email, first, last, company gsid):
# sha1 of the parts joined by \x1f, a missing part spelled \x00.
COMPANY_HASH = "sha1(x.account_id || chr(31) || coalesce(nullif(x.account_name, ''), x.account_id))"
PERSON_HASH = (
    "sha1(x.email || chr(31) || coalesce(x.first_name, chr(0)) || chr(31) || coalesce(x.last_name, chr(0)) "
    "|| chr(31) || coalesce(c.gsid, chr(0)))"
)


def retry_sql(dataset: str, max_attempts: str, timeline: str, activity_since: str) -> str:
    """SQL: (object, record_key, will_retry) for every dead letter whose record is still staged.

    Arguments are SQL text: `$parameters` in the outbox query, literals in the report's view.
    """
    dead = f"SELECT record_key FROM {SCHEMA}.dead_letters WHERE object = "
    return f"""
    SELECT 'companies' AS object, x.account_id AS record_key,
        NOT {given_up('l', COMPANY_HASH, max_attempts)} AS will_retry
    FROM (SELECT account_id, arg_max(account_name, responded_at) AS account_name FROM {dataset}.nps_responses
          WHERE account_id IN ({dead}'companies') GROUP BY account_id) x
    JOIN {SCHEMA}.companies l USING (account_id)
    UNION ALL
    SELECT 'people', x.email, NOT {given_up('l', PERSON_HASH, max_attempts)}
    FROM (SELECT email, arg_max(first_name, responded_at) AS first_name, arg_max(last_name, responded_at) AS last_name,
                 arg_max(account_id, responded_at) AS account_id
          FROM {dataset}.nps_responses WHERE email IN ({dead}'people') GROUP BY email) x
    JOIN {SCHEMA}.people l USING (email)
    LEFT JOIN {SCHEMA}.companies c ON c.account_id = x.account_id
    UNION ALL
    SELECT 'responses', r.response_id, {needs_response(max_attempts)}
    FROM {dataset}.nps_responses r JOIN {SCHEMA}.responses l USING (response_id)
    WHERE r.response_id IN ({dead}'responses')
    UNION ALL
    SELECT 'activities', r.response_id, {needs_activity(max_attempts, timeline, activity_since)}
    FROM {dataset}.nps_responses r JOIN {SCHEMA}.activities a USING (response_id)
    WHERE r.response_id IN ({dead}'activities')
    """
