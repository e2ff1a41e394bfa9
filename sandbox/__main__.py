"""Run a sandbox by hand: ``python -m sandbox customergauge --port 8801 --client-id ID --client-secret S``
or ``python -m sandbox gainsight --port 8802 --access-key KEY [--bulk-job ID:OBJECT:OPERATION:KEYFIELD]``.

Prints one line with the URL once it is serving (flushed, so scripts can wait for it) and serves
until SIGINT or SIGTERM. Drive it with curl through the emulator-only ``/_sandbox/`` endpoints.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from datetime import date

from sandbox.customergauge import CustomerGaugeSandbox, SeedSpec
from sandbox.customergauge.webhooks import WebhookTarget
from sandbox.gainsight import BulkJob, GainsightSandbox


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if args.service == "gainsight":
        return _serve_gainsight(args, stop)
    try:
        spec = SeedSpec(
            responses=args.responses,
            days=args.days,
            accounts=args.accounts,
            invalid=args.invalid,
            non_responses=args.non_responses,
            seed=args.seed,
            end=args.end,
            people=args.people,
        )
    except ValueError as error:
        raise SystemExit(f"python -m sandbox customergauge: {error}") from None
    webhook = None
    if args.webhook_url:
        if not args.webhook_secret:
            raise SystemExit("python -m sandbox customergauge: --webhook-url needs --webhook-secret")
        webhook = WebhookTarget(args.webhook_url, args.webhook_secret, args.webhook_auth, args.webhook_payload)
    with CustomerGaugeSandbox(
        args.client_id, args.client_secret, spec, args.token_lifetime, args.port, webhook=webhook
    ) as cg:
        print(f"CustomerGauge sandbox serving at {cg.base_url} (token URL {cg.token_url})", flush=True)
        stop.wait()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Local stand-ins for the connector's SaaS APIs.")
    services = parser.add_subparsers(dest="service", required=True, metavar="SERVICE")
    cg = services.add_parser("customergauge", help="CustomerGauge v7 sync API and OAuth2 token endpoint")
    cg.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    cg.add_argument("--client-id", required=True)
    cg.add_argument("--client-secret", required=True)
    cg.add_argument("--responses", type=int, default=1000, help="valid responses to seed (default 1000)")
    cg.add_argument("--days", type=int, default=30, help="days the responses are spread over (default 30)")
    cg.add_argument("--accounts", type=int, default=20, help="accounts the responses belong to (default 20)")
    cg.add_argument("--people", type=int, default=None, help="respondents drawn from this many persons (default: nearly all distinct)")
    cg.add_argument("--invalid", type=int, default=0, help="invalid responses spread through the feed")
    cg.add_argument("--non-responses", type=int, default=0, help="unanswered invitations to seed")
    cg.add_argument("--seed", type=int, default=7, help="random seed; same seed and --end, same data")
    cg.add_argument("--end", type=date.fromisoformat, default=None, help="last day of data, YYYY-MM-DD (default today UTC)")
    cg.add_argument("--token-lifetime", type=float, default=3600.0, help="token lifetime in seconds (default 3600)")
    cg.add_argument(
        "--webhook-url", help="emulator-only outgoing webhooks (CustomerGauge's contract is unknown): POST every "
        "response added or edited (POST /_sandbox/responses) to this URL, e.g. http://127.0.0.1:8787/webhooks/customergauge",
    )  # fmt: skip
    cg.add_argument("--webhook-auth", choices=["hmac", "basic", "header"], default="hmac")
    cg.add_argument("--webhook-secret", help="the shared secret (basic: user:password)")
    cg.add_argument("--webhook-payload", choices=["record", "id"], default="record", help="whole record or id only")
    gs = services.add_parser("gainsight", help="Gainsight CS data, People, Timeline, Bulk and metadata APIs")
    gs.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    gs.add_argument("--access-key", required=True, help="the accesskey header value the sandbox accepts")
    gs.add_argument("--client-id", help="M2M OAuth client id (with --client-secret enables Bearer tokens)")
    gs.add_argument("--client-secret")
    gs.add_argument(
        "--bulk-job", action="append", default=[], type=_bulk_job, metavar="ID:OBJECT:OPERATION[:KEYFIELD]",
        help="seed a Bulk job whose CSV headers are field names (repeatable)",
    )  # fmt: skip
    gs.add_argument("--time-scale", type=float, default=1.0, help="sandbox seconds per real second (default 1)")
    gs.add_argument("--no-quotas", action="store_true", help="serve without rate limits (benchmarks)")
    return parser


def _bulk_job(text: str) -> BulkJob:
    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(parts):
        raise argparse.ArgumentTypeError(f"expected ID:OBJECT:OPERATION[:KEYFIELD], got {text!r}")
    # add_job refuses an operation outside the Literal (ValueError) when the sandbox registers the job
    return BulkJob(parts[0], parts[1], parts[2].upper(), tuple(parts[3:]))  # type: ignore[arg-type]


def _serve_gainsight(args: argparse.Namespace, stop: threading.Event) -> int:
    if (args.client_id is None) != (args.client_secret is None):
        raise SystemExit("give both --client-id and --client-secret, or neither")
    try:
        sandbox = GainsightSandbox(
            args.access_key, args.client_id, args.client_secret, port=args.port, bulk_jobs=args.bulk_job,
            quotas=not args.no_quotas, time_scale=args.time_scale,
        )  # fmt: skip
    except ValueError as error:
        raise SystemExit(f"python -m sandbox gainsight: {error}") from None
    with sandbox as gs:
        print(f"Gainsight sandbox serving at {gs.base_url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
