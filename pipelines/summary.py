"""The end-of-run summary: what an operator reads first at 3 a.m."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from .errors import ExitCode

if TYPE_CHECKING:
    from .stage import StageResult


def format_summary(result: "StageResult", duration: float, staging_path: str, exit_code: ExitCode) -> str:
    report = result.report
    lines = [
        f"run {report.run_id}: {_verdict(exit_code, report.quarantined)} in {duration:.1f} s",
        f"  customergauge: {sum(f.pages for f in report.feeds.values())} pages, {report.api_calls} API calls "
        f"({report.retries} retries, {report.token_grants} token grants)",
    ]
    if result.finished_pending:
        lines.append(f"  recovered: {result.finished_pending} load package(s) from an interrupted run")
    for feed in report.feeds.values():
        line = (
            f"  {feed.table}: window {feed.window_start}..{feed.window_end}; fetched {feed.fetched:,}, "
            f"valid {feed.valid:,}, quarantined {feed.quarantined:,}"
        )
        if feed.table == "nps_responses":
            unchanged = max(0, feed.valid - result.changes.new - result.changes.updated)
            line += f" -> new {result.changes.new:,}, updated {result.changes.updated:,}, unchanged {unchanged:,}"
        lines.append(line)
        if feed.cursor_before is not None or feed.cursor_after is not None:
            lines.append(f"  cursor {feed.table}: {_ts(feed.cursor_before)} -> {_ts(feed.cursor_after)}")
        elif feed.window_start is not None:
            lines.append(f"  cursor {feed.table}: unchanged (backfill)")
    lines.append(
        f"  staging: {staging_path} ({result.staged_rows:,} responses, {result.quarantine_rows:,} quarantined records)"
    )
    lines.append(f"  exit code {int(exit_code)}")
    return "\n".join(lines)


def one_line_summary(result: "StageResult", duration: float, exit_code: ExitCode) -> str:
    """The log line that ends every run: greppable, with the counts that matter."""
    report = result.report
    fetched = sum(feed.fetched for feed in report.feeds.values())
    return (
        f"run {report.run_id} finished: exit {int(exit_code)} in {duration:.1f} s; fetched {fetched}, "
        f"new {result.changes.new}, updated {result.changes.updated}, quarantined {report.quarantined}, "
        f"API calls {report.api_calls} (full summary on stdout)"
    )


def _verdict(exit_code: ExitCode, quarantined: int) -> str:
    if exit_code == ExitCode.QUARANTINED:
        return f"completed with {quarantined} quarantined record(s) (see quarantine_report)"
    return "completed" if exit_code == ExitCode.OK else f"failed ({exit_code.name})"


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else "none"
