"""Keep Gainsight CS current with CustomerGauge NPS responses, staged in DuckDB.

Run from the repository root (it reads .dlt/config.toml and .dlt/secrets.toml from there):

    python pipelines/nps_to_gainsight.py                 # the scheduled run: stage, then push
    python pipelines/nps_to_gainsight.py --dry-run       # stage, then show what the push would do
    python pipelines/nps_to_gainsight.py --start 2025-01-01 --end 2025-03-31   # backfill a range
    python pipelines/nps_to_gainsight.py --demo          # against bundled sandboxes, no setup

Exit codes are listed in README.md ("Exit codes") and in `pipelines/errors.py`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

# Allow `python pipelines/nps_to_gainsight.py` from a checkout even without an editable install.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.errors import CommandError  # noqa: E402
from pipelines.logs import setup_logging  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nps_to_gainsight.py",
        description="CustomerGauge NPS responses -> DuckDB staging -> Gainsight CS.",
    )
    parser.add_argument("--demo", action="store_true", help="run twice against in-process sandboxes with seeded data")
    parser.add_argument("--start", type=_day, help="backfill from this day (YYYY-MM-DD); leaves the cursor untouched")
    parser.add_argument("--end", type=_day, help="backfill up to and including this day (YYYY-MM-DD)")
    parser.add_argument("--stage-only", action="store_true", help="stage into DuckDB without pushing to Gainsight")
    parser.add_argument(
        "--push-only", action="store_true", help="push what is already staged, without calling CustomerGauge"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="stage as usual, then plan the push (create/update/unchanged per object) without writing to Gainsight",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    if (args.start is None) != (args.end is None):
        parser.error("--start and --end go together")
    if args.start and args.start > args.end:
        parser.error(f"--start {args.start} is after --end {args.end}")
    if args.demo and (args.start or args.stage_only or args.push_only or args.dry_run):
        parser.error("--demo takes no other options")
    if args.stage_only and (args.dry_run or args.push_only):
        parser.error("--stage-only skips the push; it does not combine with --dry-run or --push-only")
    if args.push_only and args.start:
        parser.error("--push-only does not call CustomerGauge, so it takes no backfill range")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    redactor = setup_logging(args.log_level)
    if args.demo:
        from pipelines.demo import run_demo

        return int(run_demo())

    from pipelines.runner import execute
    from pipelines.settings import (
        load_run_settings,
        require_project_config,
        secret_values,
    )

    try:
        require_project_config()
        settings = load_run_settings()
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    redactor.add(
        secret_values(
            [
                "sources.customergauge.client_secret",
                "sources.customergauge.client_id",
                "destination.gainsight.access_key",
                "destination.gainsight.client_id",
                "destination.gainsight.client_secret",
                "destination.gainsight.bulk_access_key",
            ]
        )
    )
    settings = replace(settings, stage_only=args.stage_only, push_only=args.push_only)
    options = {}
    if args.start:
        options = {"backfill_start": args.start.isoformat(), "backfill_end": args.end.isoformat()}
    code, _ = execute(settings, options, dry_run=args.dry_run)
    return int(code)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


if __name__ == "__main__":
    sys.exit(main())
