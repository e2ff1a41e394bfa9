"""Failures of the command itself and the exit code each maps to.

Exit codes are part of the interface: schedulers alert on them and the README documents them.
"""

from __future__ import annotations

from enum import IntEnum

from sources.customergauge.errors import (
    ApiUnavailable,
    ContractViolation,
    CredentialsRejected,
    CustomerGaugeError,
    InvalidSetting,
    RequestRejected,
)


class ExitCode(IntEnum):
    OK = 0
    INTERNAL_ERROR = 1  # a bug: the traceback is in the log
    CONFIG_ERROR = 2  # missing or invalid configuration / secrets / command line
    CREDENTIALS_REJECTED = 3  # CustomerGauge refused the client id/secret
    LOCKED = 4  # another process holds the DuckDB file
    SOURCE_API_ERROR = 5  # CustomerGauge unavailable or rejected a request; retry next run
    STAGING_ERROR = 6  # writing to DuckDB failed; the next run finishes the pending load
    QUARANTINED = 10  # the run completed but some records were quarantined


class CommandError(Exception):
    """An error with a message written for the operator and a fixed exit code."""

    exit_code = ExitCode.INTERNAL_ERROR


class ConfigError(CommandError):
    exit_code = ExitCode.CONFIG_ERROR


class StagingLocked(CommandError):
    exit_code = ExitCode.LOCKED


class StagingFailed(CommandError):
    exit_code = ExitCode.STAGING_ERROR


def exit_code_for(exc: BaseException) -> ExitCode:
    """Map any exception escaping a run to its documented exit code."""
    if isinstance(exc, CommandError):
        return exc.exit_code
    if isinstance(exc, InvalidSetting):
        return ExitCode.CONFIG_ERROR
    if isinstance(exc, CredentialsRejected):
        return ExitCode.CREDENTIALS_REJECTED
    if isinstance(exc, (ApiUnavailable, RequestRejected, ContractViolation, CustomerGaugeError)):
        return ExitCode.SOURCE_API_ERROR
    return ExitCode.INTERNAL_ERROR
