"""What one run's extracts did, for the run summary and the exit code.

A run may extract several times (a large window is loaded in bounded parts), so the counts here
accumulate over all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from .client import CustomerGaugeClient


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
    loads: int = 0  # extracts of this feed in the run (a large window is paged over several)
    complete: bool = False  # the window was paged to its end
    resumed: bool = False  # the run continued a window an earlier load left unfinished


@dataclass
class ExtractReport:
    """Filled in by the source while it runs; read by the command afterwards."""

    run_id: str
    feeds: dict[str, FeedReport] = field(default_factory=dict)
    clients: list[CustomerGaugeClient] = field(default_factory=list)

    def feed(self, table: str) -> FeedReport:
        return self.feeds.setdefault(table, FeedReport(table))

    @property
    def api_calls(self) -> int:
        return sum(client.stats.total for client in self.clients)

    @property
    def retries(self) -> int:
        return sum(client.stats.retries for client in self.clients)

    @property
    def token_grants(self) -> int:
        return sum(client.token_grants for client in self.clients)

    @property
    def unfinished(self) -> list[str]:
        """Tables whose window still has pages to fetch."""
        return [feed.table for feed in self.feeds.values() if not feed.complete]

    @property
    def quarantined(self) -> int:
        return sum(feed.quarantined for feed in self.feeds.values())
