"""What every push step needs: settings, the client, the ledger and the report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

from .client import GainsightClient
from .errors import QuotaExhausted
from .report import PushReport
from .settings import GainsightSettings
from .store import Ledger

log = logging.getLogger("nps.gainsight")


@dataclass
class PushContext:
    settings: GainsightSettings
    client: GainsightClient
    ledger: Ledger
    report: PushReport
    _lengths: dict[str, int] | None = None

    def field_lengths(self) -> dict[str, int]:
        """Text field lengths of the response object, described once per run."""
        if self._lengths is None:
            self._lengths = self.client.field_lengths(self.settings.response_object)
        return self._lengths

    def defer(self, table: str, keys: Iterable[str], exhausted: QuotaExhausted) -> int:
        """Leave `keys` for a later run because a quota is used up; returns how many."""
        keys = list(keys)
        self.ledger.mark(table, keys, "deferred")
        self.report.defer_records(table, keys)
        self.report.defer(exhausted.family, exhausted.window, exhausted.resume_at)
        log.warning("gainsight: %s; %d %s deferred to a later run", exhausted, len(keys), table)
        return len(keys)
