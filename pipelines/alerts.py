"""Which warnings of a run are new, so that exit codes 10 and 11 alert once per problem.

A bad record inside the lookback window is re-read, and re-quarantined, by every run for days; a
record Gainsight rejects is retried and rejected again on later runs. Alerting on each of those
runs pages someone every hour for a problem already reported. A quarantined record or dead letter
is *seen before* when an earlier run that reported it recorded the same record with the same
reason; only the others are *new* and raise the exit code. "Reported" means that run completed
(its outcome in run_history is ok/quarantined/dead_lettered/deferred) or ran before the history
existed (the previous version alerted on every run); a run that failed or was killed reported
nothing, so what it recorded is still new to the operator.

What was reported is kept in its own table, `gainsight.reported_problems`, written at the end of a
reported run from the rows it recorded. It cannot be read off the quarantine and dead-letter rows:
those are merged on the record (raw-payload hash; object and record key), so a later run that fails
or is stopped re-saves a reported record under its own run_id, and every run after it would take
the record for new again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from destinations.gainsight import store as state_store
from destinations.gainsight.store import REPORTED, Connection, StateError

from .history import REPORTED_OUTCOMES, RunRecord
from .staging import QUARANTINE

log = logging.getLogger("nps.alerts")


@dataclass
class NewAndSeen:
    """Records with a problem in this run: first reported now, or already reported by an earlier run."""

    new: int = 0
    seen_before: int = 0

    def add(self, other: NewAndSeen) -> None:
        self.new += other.new
        self.seen_before += other.seen_before


def ensure_reported(db: Connection, dataset: str) -> None:
    """At the start of a run (after `ensure_run_history`): create the reported-problems table, and
    forget problems whose record is no longer quarantined or dead-lettered (delivered, cleared), so
    that the same failure coming back later alerts again. A file from a version without the table
    starts with what that version counted as reported: rows last recorded by a completed run, or
    older than the history."""
    state_store.ensure_reported(db, dataset, QUARANTINE, REPORTED_OUTCOMES)


def remember_reported(db: Connection, dataset: str, run: RunRecord) -> None:
    """At the end of a run that reported what it found, keep the problems it recorded as reported.
    A failure is logged, never raised: the run's outcome stands, its problems alert once more."""
    if run.outcome not in REPORTED_OUTCOMES:
        return
    try:
        state_store.remember_reported(db, dataset, QUARANTINE, run.run_id)
    except StateError as exc:
        log.warning("could not note what run %s reported in %s: %s", run.run_id, REPORTED, exc)


def quarantine_novelty(db: Connection, staged_files: list[str]) -> NewAndSeen:
    """Distinct quarantined records in this run's not-yet-loaded files: new, or already reported
    with the same reason. Runs on the files only, like the change counts. Needs `ensure_reported` first."""
    if not staged_files:
        return NewAndSeen()
    new, seen = state_store.quarantine_novelty(db, staged_files)
    return NewAndSeen(new=new, seen_before=seen)


def dead_letter_novelty(db: Connection, run_id: str) -> dict[str, NewAndSeen]:
    """Per object, the dead letters this run wrote: new, or the same record already reported with
    the same error code. Needs `ensure_reported` first."""
    return {obj: NewAndSeen(new=new, seen_before=seen) for obj, (new, seen) in state_store.dead_letter_novelty(db, run_id).items()}
