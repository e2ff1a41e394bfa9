"""What one extract did, for the run summary and the exit code."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass
class FeedReport:
    """Counts for one feed (responses or non-responses)."""

    table: str
    window_start: date | None = None
    window_end: date | None = None
    cursor_before: datetime | None = None
    cursor_after: datetime | None = None
    pages: int = 0
    fetched: int = 0
    valid: int = 0
    quarantined: int = 0


@dataclass
class ExtractReport:
    """Filled in by the source while it runs; read by the command afterwards."""

    run_id: str
    feeds: dict[str, FeedReport] = field(default_factory=dict)
    api_calls: int = 0
    retries: int = 0
    token_grants: int = 0

    def feed(self, table: str) -> FeedReport:
        return self.feeds.setdefault(table, FeedReport(table))

    @property
    def quarantined(self) -> int:
        return sum(feed.quarantined for feed in self.feeds.values())
