"""Keep Gainsight CS current with CustomerGauge NPS responses, staged in DuckDB.

Run from the repository root (it reads .dlt/config.toml and .dlt/secrets.toml from there):

    python pipelines/nps_to_gainsight.py                 # the scheduled run: stage, then push
    python pipelines/nps_to_gainsight.py --dry-run       # what a run would stage and push; changes nothing
    python pipelines/nps_to_gainsight.py --start 2025-01-01 --end 2025-03-31   # backfill a range
    python pipelines/nps_to_gainsight.py --demo          # against bundled sandboxes, no setup
    python pipelines/nps_to_gainsight.py status          # cursor, last runs, outbox, dead letters (read-only)
    python pipelines/nps_to_gainsight.py check           # prove config and both tenants; changes nothing
    python pipelines/nps_to_gainsight.py export-csv --out DIR   # survey-import CSV of new/changed responses
    python pipelines/nps_to_gainsight.py serve           # receive webhooks, deliver in seconds, reconcile hourly
    python pipelines/nps_to_gainsight.py forget --email jane@acme.com [--yes]   # erase one person (GDPR)

Exit codes are listed in README.md ("Exit codes") and in `pipelines/errors.py`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

# Allow `python pipelines/nps_to_gainsight.py` from a checkout even without an editable install.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.logs import FORMATS, setup_logging  # stdlib only: --version stays fast


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The scheduled run is the default verb (no subcommand); other verbs are subcommands."""
    parser = argparse.ArgumentParser(
        prog="nps_to_gainsight.py",
        description="CustomerGauge NPS responses -> DuckDB staging -> Gainsight CS.",
    )
    parser.add_argument("--version", action=_PrintVersion)
    _add_logging_options(parser, verb=False)
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
        help="read CustomerGauge and Gainsight and print what a run would stage and push (create/update/unchanged "
        "per object); stages nothing, moves no cursor, writes nothing to Gainsight",
    )
    parser.add_argument(
        "--warnings-as-success",
        action="store_true",
        help="exit 0 instead of 10/11/12 (completed with warnings); run_history keeps the real outcome "
        "(config nps_to_gainsight.warnings_as_success)",
    )
    parser.add_argument(
        "--max-run-minutes",
        type=_minutes,
        metavar="N",
        help="stop calling Gainsight N minutes after the run started and defer the rest to the next run, "
        "exit 12 (config nps_to_gainsight.max_run_minutes, default 50); give a backfill more",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="{status,check,export-csv,serve,forget}", help="default: the scheduled run")
    check = verbs.add_parser("check", help="validate the configuration and read both tenants; changes nothing")
    _add_logging_options(check, verb=True)
    status = verbs.add_parser("status", help="cursor, last runs, outbox, dead letters, quarantine, quota (read-only)")
    _add_logging_options(status, verb=True)
    status.add_argument("--runs", type=int, default=10, help="how many recent runs to list (default 10)")
    status.add_argument("--json", action="store_true", help="one JSON document instead of text")
    _add_export_verb(verbs)
    serve = verbs.add_parser(
        "serve",
        help="receive CustomerGauge webhooks and deliver them within seconds; also runs the reconciliation "
        "(README \"Real-time webhooks (serve)\")",
    )
    _add_logging_options(serve, verb=True)
    serve.add_argument("--host", help="address to listen on (config nps_to_gainsight.serve.host, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (config nps_to_gainsight.serve.port, default 8787)")
    forget = verbs.add_parser(
        "forget", help="erase one person from Gainsight (responses, Timeline) and the staging file; dry run unless --yes"
    )
    _add_logging_options(forget, verb=True)
    forget.add_argument("--email", required=True, help="the person's e-mail address (never logged)")
    forget.add_argument("--yes", action="store_true", help="erase (default: count what would be erased, change nothing)")
    args = parser.parse_args(argv)
    if (args.start is None) != (args.end is None):
        parser.error("--start and --end go together")
    if args.start and args.start > args.end:
        parser.error(f"--start {args.start} is after --end {args.end}")
    if args.verb in ("check", "forget") and (args.demo or args.start or args.stage_only or args.push_only or args.dry_run):
        parser.error(f"{args.verb} takes no other options")
    if args.verb == "export-csv" and (args.demo or args.start or args.stage_only or args.push_only or args.dry_run):
        parser.error("export-csv takes no run options (it reads staging only)")
    if args.verb == "export-csv" and args.since and args.until and args.since > args.until:
        parser.error(f"--since {args.since} is after --until {args.until}")
    if args.verb == "serve" and (args.demo or args.start or args.stage_only or args.push_only or args.dry_run):
        parser.error("serve takes only --host and --port (and the logging options)")
    if args.demo and (args.start or args.stage_only or args.push_only or args.dry_run):
        parser.error("--demo takes no other options")
    if args.stage_only and (args.dry_run or args.push_only):
        parser.error("--stage-only skips the push; it does not combine with --dry-run or --push-only")
    if args.push_only and args.start:
        parser.error("--push-only does not call CustomerGauge, so it takes no backfill range")
    return args


def _add_export_verb(verbs: argparse._SubParsersAction) -> None:
    export = verbs.add_parser(
        "export-csv",
        help="write the survey-import CSV (new or changed responses) for a Gainsight Load to Survey rule",
    )
    _add_logging_options(export, verb=True)
    export.add_argument("--out", type=Path, required=True, help="existing folder the CSV file is written to")
    export.add_argument("--since", type=_day, help="only responses answered on or after this day (YYYY-MM-DD, UTC)")
    export.add_argument("--until", type=_day, help="only responses answered on or before this day (YYYY-MM-DD, UTC)")
    export.add_argument(
        "--all", action="store_true", dest="everything", help="every staged response (in range), not only new or changed ones"
    )


def _add_logging_options(parser: argparse.ArgumentParser, verb: bool) -> None:
    """On the main parser and on each verb's, so they may come before or after the verb (a verb's
    copies default to SUPPRESS, or they would overwrite what was given before the verb)."""
    parser.add_argument(
        "--log-level", default=argparse.SUPPRESS if verb else "INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--log-format",
        default=argparse.SUPPRESS if verb else None,
        choices=FORMATS,
        help="text (default) or json: one JSON object per line on stderr "
        "(config nps_to_gainsight.log_format, env NPS_TO_GAINSIGHT__LOG_FORMAT)",
    )


class _PrintVersion(argparse.Action):
    """`--version`, looked up only when asked for: reading package metadata costs a fifth of a
    second, which `--help` and every argument error would otherwise pay."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"{parser.prog} {package_version()}")
        parser.exit()


def package_version() -> str:
    """The installed package's version, or pyproject's in a plain checkout."""
    from importlib import metadata

    try:
        return metadata.version("cg-gainsight-nps")
    except metadata.PackageNotFoundError:
        pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, re.MULTILINE)
        return found.group(1) if found else "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from dlt.common.configuration.providers.toml import TomlProviderReadException

    try:
        return _run_verb(args)
    except TomlProviderReadException as exc:
        # dlt reads .dlt/*.toml at the first lookup; a file that is not valid TOML is a config error.
        print(f"error: a configuration file in .dlt/ is not valid TOML: {exc}", file=sys.stderr)
        return 2


def _run_verb(args: argparse.Namespace) -> int:
    from pipelines.errors import CommandError
    from pipelines.settings import log_format_setting

    try:
        log_format = args.log_format or log_format_setting()
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    redactor = setup_logging(args.log_level, log_format)
    if args.demo:
        from pipelines.demo import run_demo

        return int(run_demo())

    from pipelines.config_keys import SECRET_KEYS, require_known_keys
    from pipelines.runner import execute
    from pipelines.settings import (
        load_run_settings,
        require_project_config,
        secret_values,
    )

    redactor.add(secret_values(list(SECRET_KEYS)))
    try:
        settings_dir = require_project_config()
        if args.verb == "check":
            from pipelines.check import run_check

            return int(run_check(settings_dir, os.environ))
        require_known_keys(settings_dir, os.environ)
        settings = load_run_settings()
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    if args.verb == "export-csv":
        from pipelines.export import Selection, run_export

        try:
            return int(run_export(settings, args.out, Selection(args.everything, args.since, args.until)))
        except CommandError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return int(exc.exit_code)
    if args.verb == "forget":
        from pipelines.forget import run_forget

        redactor.add([args.email.strip(), args.email.strip().lower()])  # never in a log line, whatever fails
        return int(run_forget(settings, args.email, args.yes))
    if args.verb == "status":
        from pipelines.status import show_status

        try:
            return int(show_status(settings, args.runs, args.json))
        except CommandError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return int(exc.exit_code)
    if args.verb == "serve":
        from pipelines.serve.command import run_serve

        return int(run_serve(settings, args.host, args.port))
    settings = replace(
        settings,
        stage_only=args.stage_only,
        push_only=args.push_only,
        warnings_as_success=args.warnings_as_success or settings.warnings_as_success,
        max_run_minutes=args.max_run_minutes or settings.max_run_minutes,
    )
    options = {}
    if args.start:
        options = {"backfill_start": args.start.isoformat(), "backfill_end": args.end.isoformat()}
    code, _ = execute(settings, options, dry_run=args.dry_run)
    return int(code)


def _minutes(text: str) -> float:
    try:
        minutes = float(text)
    except ValueError:
        minutes = 0.0
    if not 0 < minutes < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of minutes, got {text!r}")
    return minutes


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C while starting up, before the run handles signals: nothing began
        print("stopped by SIGINT before the run began", file=sys.stderr)
        sys.exit(130)
