"""Errors the CustomerGauge side can raise, grouped by what an operator has to do about them.

The command maps each class to its own exit code, so a scheduler can tell "fix the credentials"
from "the API is down, the next run will catch up" without parsing log text.
"""

from __future__ import annotations


class CustomerGaugeError(Exception):
    """Base class for every failure talking to CustomerGauge."""


class CredentialsRejected(CustomerGaugeError):
    """The token endpoint refused the client id/secret, or a fresh token was refused by the API."""


class RequestRejected(CustomerGaugeError):
    """A non-retryable 4xx (e.g. 422 validation): retrying the same request cannot succeed.

    `errors` holds the per-parameter messages of the Laravel error envelope, when there is one.
    """

    def __init__(self, message: str, status: int, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.status = status
        self.errors = errors or {}


class ApiUnavailable(CustomerGaugeError):
    """Transient failures (429, 5xx, dropped connections) outlasted the retry budget.

    Nothing is committed for the failed extract, so the next scheduled run starts from the same
    cursor and fetches the same window again.
    """


class ContractViolation(CustomerGaugeError):
    """A page whose envelope (not a single record) does not match the documented shape."""


class InvalidSetting(ValueError):
    """A source option has a value that cannot work (bad date, unknown zone, unknown expansion)."""
