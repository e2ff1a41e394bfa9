"""The end-of-run summary: what an operator reads first at 3 a.m."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import ExitCode

# A push with nothing to send makes no call (a re-run costs no quota), so it cannot tell whether the
# Gainsight key still works; every place that reports such a run says so, lest exit 0 read as "key fine".
UNTRIED = "the Gainsight credentials were not tried (`check` proves them)"

if TYPE_CHECKING:
    from destinations.gainsight import PushReport

    from .stage import StageResult


def format_summary(
    result: StageResult, duration: float, staging_path: str, exit_code: ExitCode, outcome: ExitCode
) -> str:
    """`outcome` is what happened; `exit_code` differs from it only under warnings_as_success."""
    report = result.report
    # A webhook batch (serve) reads no pages: its records came in the calls, its feeds have no window.
    webhook = bool(report.feeds) and all(feed.window_start is None for feed in report.feeds.values())
    read = (
        f"webhook events {sum(f.fetched for f in report.feeds.values()):,}"
        if webhook
        else f"{sum(f.pages for f in report.feeds.values())} pages"
    )
    lines = [
        f"run {report.run_id}: {_verdict(outcome, result)} in {duration:.1f} s",
        f"  customergauge: {read}, {report.api_calls} API calls ({report.retries} retries, {report.token_grants} token grants)",
    ]
    if result.finished_pending:
        lines.append(f"  recovered: {result.finished_pending} load package(s) from an interrupted run")
    # A stopped run's extract report holds pages not staged and a cursor not committed.
    stopped = exit_code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED)
    would = "would be " if result.dry_run else ""  # a dry run staged and quarantined nothing
    for feed in report.feeds.values():
        where = f"window {feed.window_start}..{feed.window_end}" if feed.window_start else "webhook events"
        line = (
            f"  {feed.table}: {where}; fetched {feed.fetched:,}, "
            f"valid {feed.valid:,}, {would}quarantined {feed.quarantined:,}"
        )
        if feed.table == "nps_responses" and not stopped:
            unchanged = max(0, feed.valid - result.changes.new - result.changes.updated)
            line += f" -> {would}new {result.changes.new:,}, updated {result.changes.updated:,}, unchanged {unchanged:,}"
        lines.append(line)
        if stopped:
            lines.append(f"  cursor {feed.table}: as committed with the last part loaded into DuckDB")
        elif feed.cursor_before is not None or feed.cursor_after is not None:
            moved = f"{_ts(feed.cursor_before)} -> {_ts(feed.cursor_after)}"
            lines.append(f"  cursor {feed.table}: {moved}" + (" (dry run: not moved)" if result.dry_run else ""))
        elif feed.window_start is not None:
            lines.append(f"  cursor {feed.table}: unchanged (backfill)")
    if result.dry_run and result.quarantine.new:
        lines.append(
            f"  newly quarantined (dry run): {result.quarantine.new:,} record(s) a real run would quarantine and "
            "report for the first time (exit 10)"
        )
    if result.quarantine.seen_before:
        lines.append(
            f"  still quarantined (seen before): {result.quarantine.seen_before:,} record(s) already reported by an "
            "earlier run; they do not raise the exit code again"
        )
    if result.staging_on_disk:
        lines.append(
            f"  staging: {staging_path} ({result.staged_rows:,} responses, {result.quarantine_rows:,} quarantined records)"
        )
    else:
        lines.append(f"  staging: {staging_path} does not exist yet; the dry run did not create it (the first real run does)")
    if result.push is not None:
        lines += _push_lines(result.push) + _dead_letter_lines(result)
    if result.privacy:
        lines.append(f"  privacy: {result.privacy.line()}")
    lines.append(f"  exit code {int(exit_code)}")
    if exit_code != outcome:
        lines[-1] += f" ({outcome.name.lower()} reported as success: warnings_as_success is on)"
    return "\n".join(lines)


def _push_lines(push: PushReport) -> list[str]:
    """Per object what happened in Gainsight, then calls and quota left per family."""
    title = "gainsight (dry run: planned, nothing sent)" if push.dry_run else "gainsight"
    lines = [f"  {title}:{'':<{max(1, 14 - len(title))}}{'created':>9}{'updated':>9}{'unchanged':>11}{'failed':>8}{'deferred':>10}"]
    for name, counts in push.objects.items():
        row = f"    {name:<12}{counts.created:>9,}{counts.updated:>9,}{counts.unchanged:>11,}{counts.failed:>8,}{counts.deferred:>10,}"
        if counts.given_up:
            row += f"  ({counts.given_up:,} given up after max_attempts)"
        lines.append(row)
    split = push.people
    if split.total:
        lines.append(
            f"  people read before writing: {split.exists:,} already in Gainsight (no call), "
            f"{split.association_added:,} association added, {split.names_updated:,} names updated, {split.created:,} created"
        )
    if push.bulk_uploads or push.recovered_uploads:
        lines.append(
            f"  bulk: {push.bulk_uploads} upload(s) carrying {push.bulk_rows:,} responses"
            + (f"; finished {push.recovered_uploads} left open by an earlier run" if push.recovered_uploads else "")
        )
    if not push.dry_run:
        calls = ", ".join(f"{family} {n:,}" for family, n in sorted(push.calls.items()))
        lines.append(f"  gainsight API calls: {calls} ({push.retries} retries)" if calls else f"  gainsight API calls: none, so {UNTRIED}")
        quota = "; ".join(
            f"{family} " + ", ".join(f"{left:,}/{window}" for window, left in windows.items())
            for family, windows in push.quota_left.items()
        )
        lines.append(f"  quota left: {quota}")
    for deferral in push.deferrals:
        if deferral.reason:  # a Bulk upload without an outcome, or the run's time budget
            then = "reconciles or re-sends its rows" if deferral.family == "bulk" else "continues"
            lines.append(f"  deferred: {deferral.reason}; the next run {then}")
            continue
        lines.append(
            f"  deferred: the {deferral.family} quota ({deferral.window} window) is used up; the next run after "
            f"{_ts(deferral.resume_at)} continues"
        )
    if push.waiting.accounts:
        lines.append(_waiting_line(push))
    if push.failed:
        lines.append(f"  dead-lettered: {push.failed} record(s) this run; see gainsight.dead_letter_report")
    return lines


def _waiting_line(push: PushReport) -> str:
    waiting = push.waiting
    details = [f"{waiting.started:,} new this run"]
    if waiting.ambiguous:
        details.append(f"{waiting.ambiguous:,} with a name several Companies share")
    return (
        f"  waiting for a Company: {waiting.accounts:,} account(s) ({', '.join(details)}), {waiting.responses:,} responses; "
        "see gainsight.accounts_waiting and README \"Companies and people your CRM already made\""
    )


def _dead_letter_lines(result: StageResult) -> list[str]:
    new = sum(n.new for n in result.dead_letters.values())
    seen = sum(n.seen_before for n in result.dead_letters.values())
    if not seen:
        return []
    return [f"  still dead-lettered (seen before): {seen:,} record(s) rejected again for the same reason; {new:,} new"]


def one_line_summary(result: StageResult, duration: float, exit_code: ExitCode, outcome: ExitCode) -> str:
    """The log line that ends every run: greppable, with the counts that matter."""
    report = result.report
    fetched = sum(feed.fetched for feed in report.feeds.values())
    staged = (
        f"new {result.changes.new}, updated {result.changes.updated}, "
        f"quarantined {report.quarantined} (new {result.quarantine.new})"
    )
    line = (
        f"run {report.run_id} finished: exit {int(exit_code)}"
        + (f" (outcome {outcome.name.lower()})" if outcome != exit_code else "")
        + f" in {duration:.1f} s; fetched {fetched}, "
        + (f"dry run, a real run would stage: {staged}" if result.dry_run else staged)
        + f", API calls {report.api_calls}"
    )
    push = result.push
    if push is not None and not push.dry_run:
        line += (
            f"; gainsight: responses created {push['responses'].created}, updated {push['responses'].updated}, "
            f"dead-lettered {push.failed} (new {sum(n.new for n in result.dead_letters.values())}), "
            f"deferred {push.deferred}, API calls {sum(push.calls.values())}"
        )
        if push.waiting.accounts:
            line += f", waiting for a Company {push.waiting.accounts} accounts / {push.waiting.responses} responses"
    return line + " (full summary on stdout)"


def run_counts(result: StageResult) -> dict[str, Any]:
    """The run's counts as one dict: the summary log line's `counts` and run_history.counts."""
    report = result.report
    counts: dict[str, Any] = {
        "fetched": sum(feed.fetched for feed in report.feeds.values()),
        "staged": {
            "new": result.changes.new,
            "updated": result.changes.updated,
            "quarantined": report.quarantined,
            "quarantined_new": result.quarantine.new,
            "quarantined_seen_before": result.quarantine.seen_before,
        },
        "customergauge_api_calls": report.api_calls,
    }
    push = result.push
    if push is not None:
        counts["pushed"] = {name: asdict(object_counts) for name, object_counts in push.objects.items()}
        counts["dead_lettered"] = {name: asdict(n) for name, n in result.dead_letters.items()}
        counts["waiting_for_company"] = {
            "accounts": push.waiting.accounts,
            "started": push.waiting.started,
            "ambiguous": push.waiting.ambiguous,
            "responses": push.waiting.responses,
        }
        counts["people_split"] = asdict(push.people)
        counts["gainsight_api_calls"] = dict(push.calls)
        counts["quota_left"] = push.quota_left
        counts["dry_run"] = push.dry_run
    if result.privacy:
        counts["privacy"] = asdict(result.privacy)
    return counts


def _verdict(outcome: ExitCode, result: StageResult) -> str:
    push = result.push
    if outcome == ExitCode.QUARANTINED:
        return f"completed with {result.quarantine.new} newly quarantined record(s) (see quarantine_report)"
    if outcome == ExitCode.DEAD_LETTERED:
        return "completed; Gainsight rejected new records (see gainsight.dead_letter_report)"
    if outcome == ExitCode.DEFERRED and push is not None and not push.deferrals:
        return f"completed; {push.waiting.started} account(s) started waiting for a Company (see gainsight.accounts_waiting)"
    if outcome == ExitCode.DEFERRED:
        return "completed what Gainsight allowed (quota, or a Bulk upload without an outcome); the rest is deferred to the next run"
    if outcome in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        return "stopped by a signal at a safe point (the next run resumes from there); ran"
    if outcome == ExitCode.OK and result.dry_run:
        return "dry run completed (nothing staged, sent to Gainsight or booked)"
    return "completed" if outcome == ExitCode.OK else f"failed ({outcome.name})"


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else "none"
