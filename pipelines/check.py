"""`check`: prove the setup against both tenants before the first run, changing nothing anywhere.

No DuckDB file is opened or created, no dlt pipeline is made (so no cursor or state moves), and
Gainsight only sees reads: metadata describe and queries. Each check prints one line, ✓ passed,
✗ failed (with the setting to fix), – unchecked (with why); the exit code is the most urgent
failure's documented code: 2 configuration, 3 CustomerGauge credentials, 5 CustomerGauge
unavailable, 7 Gainsight credentials, 8 Gainsight unavailable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import duckdb
from dlt.common.configuration.exceptions import ConfigFieldMissingException

from connector_common.first_contact import Setting
from destinations.gainsight import (
    GainsightCredentialsRejected,
    GainsightError,
    GainsightSettingError,
    load_settings,
    preflight,
)
from destinations.gainsight.client import GainsightClient
from destinations.gainsight.matching import count_company_matches
from destinations.gainsight.preflight import Finding
from destinations.gainsight.quota import QuotaLimiter
from destinations.gainsight.settings import GainsightSettings
from destinations.gainsight.store import staged_accounts
from sources.customergauge import ExtractReport, customergauge
from sources.customergauge.errors import CredentialsRejected, CustomerGaugeError, InvalidSetting
from sources.customergauge.paging import Period, feed_params, peek
from sources.customergauge.settings import CREDENTIALS, DEFAULT_EXPANSIONS, RESPONSES_PATH, SECTION

from .config_keys import misplaced_secrets, unknown_keys
from .errors import ConfigError, ExitCode
from .settings import RunSettings, describe_missing, load_run_settings
from .staging import require_staging_file

MARKS = {True: "✓", False: "✗", None: "–"}
SAMPLE_DAYS = 7  # the CustomerGauge page is read over this many recent days
SAMPLE_SIZE = 5  # records on that page: enough to prove the envelope, cheap for the API


@dataclass
class Checklist:
    """The printed lines and the exit code they add up to."""

    out: TextIO
    codes: list[ExitCode] = field(default_factory=list)

    def add(self, finding: Finding, code: ExitCode = ExitCode.CONFIG_ERROR) -> None:
        line = f"{MARKS[finding.passed]} {finding.text}"
        if finding.passed is False:
            self.codes.append(code)
            if finding.fix is not None:
                line += f" — fix {finding.fix}"
        print(line, file=self.out, flush=True)

    def failed(self, text: str, code: ExitCode = ExitCode.CONFIG_ERROR, fix: Setting | None = None) -> None:
        self.add(Finding(False, text, fix), code)

    @property
    def exit_code(self) -> ExitCode:
        """The most urgent failure: the lowest code (configuration before credentials before outages)."""
        return min(self.codes, default=ExitCode.OK)


def run_check(settings_dir: Path, environ: Mapping[str, str], out: TextIO | None = None) -> ExitCode:
    out = out or sys.stdout  # looked up per call, not at import: whoever redirected stdout gets the lines
    checks = Checklist(out)
    unknown = unknown_keys(settings_dir, environ)
    misplaced = misplaced_secrets(settings_dir)
    for problem in [*map(str, unknown), *misplaced]:
        checks.failed(problem)
    if not unknown and not misplaced:
        checks.add(Finding(True, "configuration: every key in .dlt/*.toml and every connector env var is known"))
    run = _run_settings(checks)
    _check_customergauge(checks)
    gainsight = _gainsight_settings(checks)
    if gainsight is not None:
        _check_gainsight(checks, gainsight, run)
    print(f"check: exit {int(checks.exit_code)}", file=out, flush=True)
    return checks.exit_code


def _run_settings(checks: Checklist) -> RunSettings | None:
    try:
        run = load_run_settings()
    except ConfigError as exc:
        checks.failed(str(exc))
        try:  # the staging file is still worth reporting when only a [pii] setting is wrong
            return load_run_settings(with_pii=False)
        except ConfigError:
            return None
    state = "exists" if run.duckdb_path.exists() else "does not exist yet (the first run creates it)"
    checks.add(Finding(True, f"DuckDB staging file {run.duckdb_path} {state}; check leaves it untouched"))
    return run


def _check_customergauge(checks: Checklist) -> None:
    """The source's own validation, a token (proves the secret) and one small page (proves the path)."""
    report = ExtractReport(run_id="check")
    try:
        customergauge(report=report)
    except ConfigFieldMissingException as exc:
        checks.failed(str(describe_missing(exc, SECTION)))
        return
    except InvalidSetting as exc:
        checks.failed(str(exc))
        return
    client = report.clients[-1]
    try:
        client.authenticate()
        checks.add(Finding(True, f"CustomerGauge token granted by {urlsplit(client.token_url).netloc}"))
        today = date.today()
        period = Period("date_survey_response", today - timedelta(days=SAMPLE_DAYS), today)
        body = client.get_page(RESPONSES_PATH, feed_params(DEFAULT_EXPANSIONS, period, per_page=SAMPLE_SIZE))
        peek(body)  # the documented envelope, or ContractViolation
        envelope = json.loads(body)
        records = len(envelope.get("data") or []) if isinstance(envelope, dict) else 0
        checks.add(
            Finding(
                True,
                f"CustomerGauge responses readable at {urlsplit(client.api_base_url).netloc} "
                f"({records} on a {SAMPLE_SIZE}-record page of the last {SAMPLE_DAYS} days)",
            )
        )
    except CredentialsRejected as exc:
        checks.failed(f"{exc}", ExitCode.CREDENTIALS_REJECTED, _both(CREDENTIALS))
    except InvalidSetting as exc:
        checks.failed(str(exc))
    except (CustomerGaugeError, ValueError) as exc:
        checks.failed(f"CustomerGauge: {exc}", ExitCode.SOURCE_API_ERROR)
    finally:
        client.close()


def _gainsight_settings(checks: Checklist) -> GainsightSettings | None:
    try:
        return load_settings()
    except GainsightSettingError as exc:
        checks.failed(str(exc))
        return None


def _check_gainsight(checks: Checklist, settings: GainsightSettings, run: RunSettings | None) -> None:
    """Describe and query only. The first check proves the key; if it fails, the rest would too."""
    client = GainsightClient(settings, QuotaLimiter(settings.quotas, None, settings.max_rate_limit_wait_seconds))
    steps: list[Callable[[], Iterable[Finding]]] = [
        lambda: preflight.company_key(client, settings),
        lambda: preflight.response_object(client, settings),
    ]
    if settings.timeline_enabled:
        steps += [lambda: [preflight.timeline_author(client, settings)], lambda: [preflight.activity_type(client, settings)]]
    try:
        for step in steps:
            if not _gainsight_step(checks, step) and not client.reached_tenant:
                return  # refused key or unreachable host: every further read would fail the same way
        if not settings.timeline_enabled:
            checks.add(Finding(None, "Timeline entries: off (destination.gainsight.timeline_max_age_days = 0)"))
        checks.add(preflight.bulk_job(settings))
        _gainsight_step(checks, lambda: [_staged_accounts(run, client, settings)])
    finally:
        client.close()


def _staged_accounts(run: RunSettings | None, client: GainsightClient, settings: GainsightSettings) -> Finding:
    """How the staged accounts would find their Companies, counted before the first push writes.

    The DuckDB file is opened read-only, and only if it exists; a run holding it is not waited for.
    """
    nothing = Finding(None, "staged accounts: nothing staged yet (run --stage-only, then check again to count matches)")
    if run is None:
        return nothing
    try:
        require_staging_file(run.duckdb_path)
    except ConfigError:
        return nothing
    try:
        with duckdb.connect(str(run.duckdb_path), read_only=True) as db:
            counts = count_company_matches(staged_accounts(db, run.dataset_name), settings, client)
    except duckdb.Error as exc:
        return Finding(None, f"staged accounts: not counted, the DuckDB file cannot be read now ({type(exc).__name__})")
    text = (
        f"staged accounts: {counts.accounts:,}; {counts.by_key:,} match a Company by key, {counts.by_name:,} by name, "
        f"{counts.ambiguous:,} ambiguously, {counts.unmatched:,} not at all (company_match = {settings.company_match})"
    )
    return Finding(True if counts.by_key == counts.accounts else None, text)


def _gainsight_step(checks: Checklist, step: Callable[[], Iterable[Finding]]) -> bool:
    """Run one read-only step; a Gainsight error becomes a failed line with its exit code."""
    try:
        for finding in step():
            checks.add(finding)
        return True
    except GainsightCredentialsRejected as exc:
        checks.failed(str(exc), ExitCode.GAINSIGHT_CREDENTIALS_REJECTED)
    except GainsightSettingError as exc:
        checks.failed(str(exc))
    except GainsightError as exc:
        checks.failed(str(exc), ExitCode.GAINSIGHT_API_ERROR)
    return False


def _both(settings: Iterable[Setting]) -> Setting:
    items = list(settings)
    return Setting(" / ".join(s.key for s in items), " / ".join(s.env for s in items))
