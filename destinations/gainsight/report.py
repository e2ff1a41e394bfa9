"""What a push did, per Gainsight object, for the run summary and the exit code."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

OBJECTS = ("companies", "people", "responses", "activities")


@dataclass
class ObjectCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0  # dead-lettered this run (Gainsight rejected the record)
    deferred: int = 0  # left for a later run (quota, or a company not confirmed yet)
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


@dataclass(frozen=True)
class Deferral:
    family: str
    window: str
    resume_at: datetime


@dataclass
class PushReport:
    objects: dict[str, ObjectCounts] = field(default_factory=lambda: {name: ObjectCounts() for name in OBJECTS})
    bulk_uploads: int = 0
    bulk_rows: int = 0
    recovered_uploads: int = 0
    deferrals: list[Deferral] = field(default_factory=list)
    waiting: CompanyWaits = field(default_factory=CompanyWaits)
    calls: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    token_grants: int = 0
    quota_left: dict[str, dict[str, int]] = field(default_factory=dict)
    dry_run: bool = False

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
        return sum(n for endpoint, n in self.calls.items() if endpoint not in ("query", "bulk_status", "token"))

    def defer(self, family: str, window: str, resume_at: datetime) -> None:
        if not any(d.family == family for d in self.deferrals):
            self.deferrals.append(Deferral(family, window, resume_at))
