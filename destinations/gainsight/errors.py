"""Errors the Gainsight side can raise, grouped by what an operator (or the pusher) does about them.

Gainsight answers failures with an envelope (`result: false`, `errorCode`, `errorDesc`), sometimes
with HTTP 200 (reference §3.1), so these classes are chosen from the envelope first and the status
second. Messages name the method, path and vendor code only: never a header, key or token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class GainsightError(Exception):
    """Base class for every failure talking to Gainsight."""


class GainsightCredentialsRejected(GainsightError):
    """401/403, `GS_APIG_2401`/`2402` or `GSOBJ_1024`: the access key or OAuth client is not accepted."""


class GainsightUnavailable(GainsightError):
    """5xx, dropped connections or non-JSON answers outlasted the retry budget."""


class GainsightRejected(GainsightError):
    """Gainsight refused the request itself (HTTP 4xx or `result: false`) with a vendor error code.

    `data` keeps the envelope's `data` (per-record `errors` of a failed write) for the caller.
    """

    def __init__(self, message: str, status: int, code: str | None, description: str | None, data: Any = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.description = description
        self.data = data

    @property
    def per_record(self) -> bool:
        """A verdict on the records sent (HTTP 400, or `result: false` with a 2xx status, reference
        §3.1): a smaller batch may pass, so the engine splits the call and dead-letters the record
        left alone. Any other refusal (404, 409, 413, ...) is not about the data: the run fails."""
        return self.status == 400 or self.status < 300

    @property
    def reason(self) -> str:
        """Gainsight's own words (`errorDesc`), for the dead-letter table; the full message otherwise."""
        return self.description or str(self)


class MaybeApplied(GainsightError):
    """A non-idempotent write was sent but no answer came back (timeout, dropped connection, 5xx).

    The caller must reconcile (query by key) before deciding to write again: a blind retry of an
    insert could create a duplicate.
    """


class QuotaExhausted(GainsightError):
    """A quota window is used up for longer than the run is willing to wait: defer, do not fail."""

    reason = ""  # why, when it is not a quota window (the report's deferral reason)

    def __init__(self, family: str, window: str, resume_at: datetime | None):
        super().__init__(self.describe(family, window, resume_at))
        self.family = family
        self.window = window
        self.resume_at = resume_at

    @staticmethod
    def describe(family: str, window: str, resume_at: datetime | None) -> str:
        until = f" until {resume_at:%Y-%m-%dT%H:%M:%SZ}" if resume_at else ""
        return f"Gainsight {family} quota ({window} window) is used up{until}"


class RunBudgetReached(QuotaExhausted):
    """The run's time budget (`max_run_minutes`) is used up: what is left waits for the next run,
    like work a used-up quota defers (exit 12), stopped between two calls."""

    reason = "run budget reached"

    def __init__(self, minutes: float) -> None:
        super().__init__("run", "budget", None)
        self.args = (f"the run's time budget of {minutes:g} minutes is reached (max_run_minutes)",)


class UploadUnsettled(QuotaExhausted):
    """A Bulk upload whose outcome this run cannot learn (still processing when the run stopped
    waiting, or no answer to the upload): its rows wait for the next run, which reconciles or
    re-sends them. Deferred like quota work, so the ledger and the summary say the same."""

    def __init__(self, reason: str) -> None:
        super().__init__("bulk", "upload", None)
        self.reason = reason
        self.args = (reason,)

    def __str__(self) -> str:
        return str(self.args[0])


class LocalWriteFailed(Exception):
    """Writing the run's own state failed: the ledger in DuckDB or a Bulk file in `$TMPDIR`
    (usually a full disk). Not Gainsight's fault, and nothing is lost: Gainsight keeps what it
    received, and the next run re-derives the rest from the ledger and by key."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}; the push stopped here and the next run continues from the ledger (nothing is lost)")


class GainsightSettingError(ValueError):
    """A destination setting is missing or cannot work; the message names the key and its env var."""
