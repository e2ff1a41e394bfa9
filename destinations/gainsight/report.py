"""What a push did, per Gainsight object, for the run summary and the exit code."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from .specs import OBJECTS


@dataclass
class ObjectCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0  # dead-lettered this run (Gainsight rejected the record)
    deferred: int = 0  # records left for a later run (quota, lost Bulk upload, company not confirmed yet)
    given_up: int = 0  # failed max_attempts times for this content; not resent until it changes


@dataclass
class CompanyWaits:
    """Accounts with no Company to reference (see `gainsight.accounts_waiting`); sets, because a run
    may deliver several outbox files naming the same account."""

    account_ids: set[str] = field(default_factory=set)
    ambiguous_ids: set[str] = field(default_factory=set)  # their name fits several Companies
    started: int = 0  # accounts that started waiting in this run: only these make the run exit 12
    responses: int = 0  # responses that wait with them

    @property
    def accounts(self) -> int:
        return len(self.account_ids)

    @property
    def ambiguous(self) -> int:
        return len(self.ambiguous_ids)


@dataclass
class PeopleSplit:
    """Where each person the push handled stood in Gainsight, from the read before any write
    (`people.py`): most respondents of a CRM-synced tenant already exist there."""

    exists: int = 0  # already right (person and Company association): booked, not written
    association_added: int = 0  # existed without the association: written for it
    names_updated: int = 0  # existed with the association; `update_person_names` rewrote the names
    created: int = 0  # new to Gainsight

    @property
    def total(self) -> int:
        return self.exists + self.association_added + self.names_updated + self.created


@dataclass(frozen=True)
class Deferral:
    """Why work was left for the next run: a used-up quota window, or (`reason`) a Bulk upload
    whose outcome this run could not learn."""

    family: str
    window: str
    resume_at: datetime | None
    reason: str = ""


@dataclass
class PushReport:
    objects: dict[str, ObjectCounts] = field(default_factory=lambda: {name: ObjectCounts() for name in OBJECTS})
    bulk_uploads: int = 0
    bulk_rows: int = 0
    recovered_uploads: int = 0
    deferrals: list[Deferral] = field(default_factory=list)
    waiting: CompanyWaits = field(default_factory=CompanyWaits)
    people: PeopleSplit = field(default_factory=PeopleSplit)
    people_bulk_calls: int = 0  # async People upserts submitted (people_bulk.py)
    people_bulk_persons: int = 0  # persons they carried
    people_bulk_recovered: int = 0  # async upserts an earlier run left open, polled and reconciled here
    calls: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    token_grants: int = 0
    quota_left: dict[str, dict[str, int]] = field(default_factory=dict)
    dry_run: bool = False
    # Per object, the keys behind `deferred`: a record deferred twice in one run (a re-delivered
    # package, then the fresh outbox) is one record left for the next run.
    deferred_keys: dict[str, set[str]] = field(default_factory=lambda: {name: set() for name in OBJECTS})

    def __getitem__(self, name: str) -> ObjectCounts:
        return self.objects[name]

    @property
    def failed(self) -> int:
        return sum(counts.failed for counts in self.objects.values())

    @property
    def deferred(self) -> int:
        return sum(counts.deferred for counts in self.objects.values())

    @property
    def write_calls(self) -> int:
        return sum(n for endpoint, n in self.calls.items() if endpoint not in ("query", "bulk_status", "people_bulk_status", "token"))

    def defer(self, family: str, window: str, resume_at: datetime | None, reason: str = "") -> None:
        if not any(d.family == family and d.reason == reason for d in self.deferrals):
            self.deferrals.append(Deferral(family, window, resume_at, reason))

    def defer_records(self, name: str, keys: Iterable[str]) -> None:
        """Count `keys` of object `name` as left for the next run (each once per run)."""
        deferred = self.deferred_keys[name]
        deferred.update(keys)
        self.objects[name].deferred = len(deferred)

    def settle(self, name: str, keys: Iterable[str]) -> None:
        """`keys` deferred earlier in this run were pushed after all (a later delivery sent them)."""
        deferred = self.deferred_keys[name]
        deferred.difference_update(keys)
        self.objects[name].deferred = len(deferred)
        if not any(self.deferred_keys.values()):
            # Bulk deferrals are about records; with none left, nothing waits for the next run.
            self.deferrals = [d for d in self.deferrals if not d.reason]
