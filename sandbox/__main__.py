"""Run a sandbox by hand: ``python -m sandbox customergauge --port 8801 --client-id ID --client-secret S``.

Prints one line with the URL once it is serving (flushed, so scripts can wait for it) and serves
until SIGINT or SIGTERM. Drive it with curl through the emulator-only ``/_sandbox/`` endpoints.
"""

from __future__ import annotations

import argparse
import signal
import threading
from datetime import date
from typing import Optional, Sequence

from sandbox.customergauge import CustomerGaugeSandbox, SeedSpec


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    spec = SeedSpec(
        responses=args.responses,
        days=args.days,
        accounts=args.accounts,
        invalid=args.invalid,
        non_responses=args.non_responses,
        seed=args.seed,
        end=args.end,
    )
    with CustomerGaugeSandbox(args.client_id, args.client_secret, spec, args.token_lifetime, args.port) as cg:
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
    cg.add_argument("--invalid", type=int, default=0, help="invalid responses spread through the feed")
    cg.add_argument("--non-responses", type=int, default=0, help="unanswered invitations to seed")
    cg.add_argument("--seed", type=int, default=7, help="random seed; same seed and --end, same data")
    cg.add_argument("--end", type=date.fromisoformat, default=None, help="last day of data, YYYY-MM-DD (default today UTC)")
    cg.add_argument("--token-lifetime", type=float, default=3600.0, help="token lifetime in seconds (default 3600)")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
