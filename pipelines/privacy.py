"""What the staging file keeps of e-mails and comments: the `stage_*` rules and the retention periods.

Applied at the end of every run (README "PII and GDPR controls"), in this order:

1. **Staged responses Gainsight holds** (every response not in the outbox: its current version is
   confirmed, its Timeline entry too where it gets one) get `stage_email` / `stage_comment`, through
   the same transform as the push (`connector_common.pii.apply`). Responses still to be pushed keep
   what the push needs; they are scrubbed by the run that confirms them. `content_hash` is left as it
   was, so a scrubbed response is not "changed" for the push. The source re-reads the last
   `lookback_days` on every run and its merge brings clear values back: this step runs after every
   run, so they never outlive the run that re-read them.
2. **Comments older than `comment_retention_days`** (by response date) are nulled, under the same
   "Gainsight holds it" condition.
3. **Non-responses** (invitations, never pushed) get `stage_email` right away.
4. **Quarantined raw payloads older than `quarantine_retention_days`** are deleted.

Then DuckDB checkpoints, so the write-ahead log holds no copy of what was replaced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc

from connector_common import pii
from destinations.gainsight import GainsightSettings
from destinations.gainsight.store import pending_responses

from .staging import QUARANTINE, RESPONSES, StagingStore

log = logging.getLogger("nps.privacy")

NON_RESPONSES = "nps_non_responses"


@dataclass
class PrivacyCounts:
    """What the end-of-run step changed in the staging file (the summary's `privacy` line)."""

    emails: int = 0  # staged responses and non-responses whose e-mail was hashed or masked
    comments: int = 0  # staged comments dropped or truncated by `stage_comment`
    expired_comments: int = 0  # nulled by `comment_retention_days`
    quarantine_deleted: int = 0  # raw payloads deleted by `quarantine_retention_days`

    def __bool__(self) -> bool:
        return any((self.emails, self.comments, self.expired_comments, self.quarantine_deleted))

    def line(self) -> str:
        return (
            f"staging scrubbed: {self.emails:,} e-mail(s), {self.comments:,} comment(s); "
            f"{self.expired_comments:,} comment(s) past retention nulled, "
            f"{self.quarantine_deleted:,} quarantined payload(s) past retention deleted"
        )


def apply_staging_rules(store: StagingStore, settings: pii.PiiSettings, destination: GainsightSettings | None) -> PrivacyCounts:
    """Steps 1-4 of the module docstring. Without Gainsight settings (a `--stage-only` run) nothing
    says which responses Gainsight holds: steps 1 and 2 wait for the next run that pushes."""
    counts = PrivacyCounts()
    now = datetime.now(timezone.utc)
    if store.table_exists(RESPONSES) and destination is not None and settings.scrubs_staging:
        cutoff = None if settings.comment_retention_days is None else now - timedelta(days=settings.comment_retention_days)
        _scrub_responses(store, settings.stage, destination, cutoff, counts)
    if store.table_exists(NON_RESPONSES) and settings.stage.email != "keep":
        emails_only = pii.Rules(settings.stage.email, salt=settings.hash_salt)
        changing = _read(store, NON_RESPONSES, ["email"], pii.changes_sql(emails_only))
        counts.emails += _scrub(store, NON_RESPONSES, pii.apply(changing, emails_only))
    if store.table_exists(QUARANTINE) and settings.quarantine_retention_days is not None:
        cutoff = now - timedelta(days=settings.quarantine_retention_days)
        (counts.quarantine_deleted,) = store.connection.execute(
            f'DELETE FROM "{store.dataset}".{QUARANTINE} WHERE quarantined_at < ?', [cutoff]
        ).fetchone() or (0,)
    if counts:
        store.connection.execute("CHECKPOINT")
        log.info("privacy: %s", counts.line())
    return counts


def _scrub_responses(
    store: StagingStore, rules: pii.Rules, destination: GainsightSettings, cutoff: datetime | None, counts: PrivacyCounts
) -> None:
    db = store.connection
    changing = pii.changes_sql(rules)
    if cutoff is not None:
        changing += f" OR (comment IS NOT NULL AND responded_at < '{cutoff.isoformat()}'::TIMESTAMPTZ)"
    db.register("_pending", pending_responses(db, store.dataset, destination))
    try:
        held = _read(
            store,
            RESPONSES,
            ["email", "comment", "responded_at"],
            f"response_id NOT IN (SELECT response_id FROM _pending) AND ({changing})",
        )
    finally:
        db.unregister("_pending")
    scrubbed = pii.apply(held, rules)
    counts.comments += _changed(held["comment"], scrubbed["comment"])
    if cutoff is not None:
        expired = pc.fill_null(pc.less(scrubbed["responded_at"], pa.scalar(cutoff, held.schema.field("responded_at").type)), False)
        kept = scrubbed["comment"]
        comments = pc.if_else(expired, pa.scalar(None, pa.string()), kept)
        counts.expired_comments += _changed(kept, comments)
        scrubbed = scrubbed.set_column(scrubbed.schema.get_field_index("comment"), "comment", comments)
    counts.emails += _changed(held["email"], scrubbed["email"])
    _scrub(store, RESPONSES, scrubbed.drop_columns(["responded_at"]))


def _read(store: StagingStore, table: str, columns: list[str], where: str = "TRUE") -> pa.Table:
    return store.connection.sql(
        f'SELECT response_id, {", ".join(columns)} FROM "{store.dataset}".{table} WHERE {where}'
    ).to_arrow_table()


def _changed(before: pa.ChunkedArray, after: pa.ChunkedArray) -> int:
    """Rows whose value differs (null-aware)."""
    differs = pc.fill_null(pc.not_equal(before, after), True)
    both_null = pc.and_(pc.is_null(before), pc.is_null(after))
    return int(pc.sum(pc.and_not(differs, both_null)).as_py() or 0)


def _scrub(store: StagingStore, table: str, values: pa.Table) -> int:
    """Write `values` (response_id + the columns to set) over the rows that differ; returns how many."""
    columns = [name for name in values.column_names if name != "response_id"]
    differs = " OR ".join(f"t.{name} IS DISTINCT FROM v.{name}" for name in columns)
    store.connection.register("_scrubbed", values)
    try:
        (changed,) = store.connection.execute(
            f'UPDATE "{store.dataset}".{table} t SET {", ".join(f"{name} = v.{name}" for name in columns)} '
            f"FROM _scrubbed v WHERE t.response_id = v.response_id AND ({differs})"
        ).fetchone() or (0,)
    finally:
        store.connection.unregister("_scrubbed")
    return int(changed)
