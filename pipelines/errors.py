"""Failures of the command itself and the exit code each maps to.

Exit codes are part of the interface: schedulers alert on them and the README documents them.

This module imports no vendor package at import time: the command line imports it before it knows
whether a run happens at all, and the vendor packages pull in dlt, DuckDB and pyarrow (seconds),
which `--help` and a mistyped option must not wait for. `exit_code_for` imports them when a run
has failed, by which time they are loaded anyway.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL_ERROR = 1  # a bug: the traceback is in the log
    CONFIG_ERROR = 2  # missing or invalid configuration / secrets / command line
    CREDENTIALS_REJECTED = 3  # CustomerGauge refused the client id/secret
    LOCKED = 4  # another process holds the DuckDB file
    SOURCE_API_ERROR = 5  # CustomerGauge unavailable or rejected a request; retry next run
    STAGING_ERROR = 6  # writing locally (DuckDB, the Bulk file) failed; the next run finishes the job
    GAINSIGHT_CREDENTIALS_REJECTED = 7  # Gainsight refused the access key / OAuth client
    GAINSIGHT_API_ERROR = 8  # Gainsight unavailable or refused a request; the next run continues
    QUARANTINED = 10  # completed, but CustomerGauge records were quarantined (see quarantine_report)
    DEAD_LETTERED = 11  # completed, but Gainsight rejected records (see gainsight.dead_letter_report)
    DEFERRED = 12  # completed what Gainsight allowed (quota, Bulk upload without an outcome); the next run continues
    INTERRUPTED = 130  # SIGINT (Ctrl-C): stopped at a safe point; the next run resumes (128 + 2)
    TERMINATED = 143  # SIGTERM (systemd, k8s, kill): stopped at a safe point; the next run resumes (128 + 15)


# "Completed with warnings": what `warnings_as_success` reports as 0 (run_history keeps the real one).
WARNINGS = (ExitCode.QUARANTINED, ExitCode.DEAD_LETTERED, ExitCode.DEFERRED)


class CommandError(Exception):
    """An error with a message written for the operator and a fixed exit code."""

    exit_code = ExitCode.INTERNAL_ERROR


class ConfigError(CommandError):
    exit_code = ExitCode.CONFIG_ERROR


class StagingLocked(CommandError):
    exit_code = ExitCode.LOCKED


class StagingFailed(CommandError):
    exit_code = ExitCode.STAGING_ERROR


def outcome_code(quarantined: int, dead_lettered: int, quota_deferred: bool) -> ExitCode:
    """The exit code of a run that completed: what needs a human outranks what heals itself.

    The counts are of records *new* in this run (pipelines/alerts.py): a problem already reported
    by an earlier run does not alert again."""
    if dead_lettered:
        return ExitCode.DEAD_LETTERED
    if quarantined:
        return ExitCode.QUARANTINED
    if quota_deferred:
        return ExitCode.DEFERRED
    return ExitCode.OK


def exit_code_for(exc: BaseException) -> ExitCode:
    """Map any exception escaping a run to its documented exit code."""
    from connector_common.stop import StopRequested
    from destinations.gainsight.errors import (
        GainsightCredentialsRejected,
        GainsightError,
        GainsightSettingError,
        LocalWriteFailed,
    )
    from sources.customergauge.errors import (
        ApiUnavailable,
        ContractViolation,
        CredentialsRejected,
        CustomerGaugeError,
        InvalidSetting,
        RequestRejected,
    )

    if isinstance(exc, CommandError):
        return exc.exit_code
    if isinstance(exc, StopRequested):
        return ExitCode(128 + exc.signal_number)  # the shell's convention for "ended by signal N"
    if isinstance(exc, LocalWriteFailed):
        return ExitCode.STAGING_ERROR
    if isinstance(exc, (InvalidSetting, GainsightSettingError)):
        return ExitCode.CONFIG_ERROR
    if isinstance(exc, GainsightCredentialsRejected):
        return ExitCode.GAINSIGHT_CREDENTIALS_REJECTED
    if isinstance(exc, GainsightError):
        return ExitCode.GAINSIGHT_API_ERROR
    if isinstance(exc, CredentialsRejected):
        return ExitCode.CREDENTIALS_REJECTED
    if isinstance(exc, (ApiUnavailable, RequestRejected, ContractViolation, CustomerGaugeError)):
        return ExitCode.SOURCE_API_ERROR
    return ExitCode.INTERNAL_ERROR
