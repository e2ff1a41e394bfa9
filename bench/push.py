"""Push benchmark: time to value under Gainsight's quotas, calls and memory, against a naive flow.

    python bench/push.py                                 # 100k responses, 2k accounts, 20k people
    python bench/push.py --size 1m                       # 1M responses, 10k accounts, 100k people
    python bench/push.py --responses 2000 --accounts 50 --people 400 --naive-responses 500   # smoke
    python bench/push.py --whole-command --size 200k     # peak RSS of the whole command (bench/memory.py)

Setup (not measured): the CustomerGauge sandbox seeds the responses and the real command stages
them into a DuckDB file. Each contender then runs in its own child process against its own fresh
Gainsight sandbox process (quotas off, a Bulk Upsert job seeded), and reports wall time, peak RSS
and API calls per endpoint family; the sandbox's own request log is checked against those counts.

Contenders:
  connector  `execute(push_only=True)` on an empty tenant, single People API upserts; then the same
             push again with nothing new (its write calls must be 0)
  connector, bulk people        the same with `people.writer = "bulk"` (async, 50 persons a call)
  80% exist, single / bulk      a CRM-synced tenant: every Company keyed, 80% of the respondents
             already Persons (7 in 8 of them with their Company_Person); the people split is printed
  naive      the integration guide's flow, per response, through the same GainsightClient:
             company upsert (update by key, insert on GSOBJ_1011) -> person upsert -> response
             insert -> Timeline create. 400k calls take a while, so by default it runs on
             --naive-responses staged responses spread evenly over the year and its calls, time and
             call sequence are extrapolated to the full count; --naive-responses 100000 measures it whole.

Time to value: each contender's calls, as the sandbox logged them in order, are replayed against
Gainsight's documented windows (sync 100 a minute and 50,000 a day, Bulk 10 an hour and 100 a day,
Timeline 200 a minute) by bench/replay.py, whose docstring states the model; the table gives the
minutes until (a) every response, (b) every Timeline entry, (c) every person may be in Gainsight,
for the bulk people calls counted as sync calls and as async/bulk calls (10 an hour).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import memory, replay  # noqa: E402  (after the path: `python bench/push.py` from a checkout)

ACCESS_KEY = "bench-access-key"
CG_CLIENT = ("bench-client", "bench-secret")
JOB_ID = "bench-nps-upsert"
OBJECT = "CG_NPS_Response__gc"
KEY_FIELD = "ResponseId__gc"
COMPANY_KEY = "CG_Account_Id__gc"
AUTHOR = "nps.connector@example.com"
TIMELINE_DAYS = 30
NO_QUOTAS = {"sync_per_minute": 10**9, "sync_per_day": 10**9, "bulk_per_hour": 10**6, "bulk_per_day": 10**6, "timeline_per_minute": 10**9}
# Endpoint family as the client counts it -> Gainsight quota family, and -> the sandbox's request-log family.
SANDBOX_FAMILY = {"query": "data", "company": "data", "response": "data", "people": "people", "timeline": "timeline",
                  "bulk": "bulk", "bulk_status": "bulk_status", "people_bulk": "people_async",
                  "people_bulk_status": "people_async_status"}  # fmt: skip
WRITE_FAMILIES = ("company", "response", "people", "timeline", "bulk", "people_bulk")
# Table columns: (client endpoint family, heading). "sync:" columns are the sync data writes.
COLUMNS = [("query", "queries"), ("company", "sync:company"), ("response", "sync:response"), ("people", "people"),
           ("people_bulk", "people bulk"), ("people_bulk_status", "(its status)"), ("timeline", "timeline"),
           ("bulk", "bulk uploads"), ("bulk_status", "bulk status")]  # fmt: skip
SIZES = {"100k": (100_000, 2_000, 20_000), "200k": (200_000, 4_000, 40_000), "1m": (1_000_000, 10_000, 100_000)}
EXISTING = 0.8  # the "tenant already holds most people" setup (a CRM-synced tenant)
LANDED = {"responses": OBJECT, "companies": "Company", "people": "Person", "activities": "activity_timeline"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, help="a preset of --responses/--accounts/--people: " + ", ".join(
        f"{name} = {r:,}/{a:,}/{p:,}" for name, (r, a, p) in SIZES.items()))  # fmt: skip
    parser.add_argument("--responses", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--whole-command", action="store_true",
                        help="peak RSS of the whole command (stage + push) and of each side (bench/memory.py)")
    parser.add_argument("--people-setups", default="bulk,existing-single,existing-bulk",
                        help="contenders besides connector and naive (comma list; empty: none)")
    parser.add_argument("--runs", default="whole,stage-only,push-only", help="with --whole-command: which runs")
    parser.add_argument("--people-writer", choices=("single", "bulk"), help="with --whole-command: people.writer")
    parser.add_argument("--measure-command", help=argparse.SUPPRESS)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--naive-responses", type=int, default=10_000, help="responses the naive flow runs on (then extrapolated)")
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args, command_argv = parser.parse_known_args()
    if args.measure_command:
        memory.run_command_here(Path(args.measure_command), [a for a in command_argv if a != "--"])
        return
    if args.size:
        args.responses, args.accounts, args.people = SIZES[args.size]
    if args.whole_command:
        runs = args.runs.split(",")
        results = memory.measure_whole_command(args.responses, args.accounts, args.people, args.days, runs, args.people_writer)
        memory.print_whole_command(results, args.responses, args.accounts, args.people, _commit())
        return
    if args.contender:
        _child(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        workdir = Path(tmp)
        staged = _stage(workdir, args)
        expected = _expected(workdir / "staged" / "bench.duckdb")  # just before the push: same Timeline cut-off
        with _GainsightProcess() as gainsight:
            connector = _run_child("connector", gainsight, _copy_staged(workdir, "connector"), args)
            landed = gainsight.landed()
            rerun = _run_child("connector re-run", gainsight, workdir / "connector", args)
        others = []
        for label, options, existing in _people_setups(args.people_setups):
            with _GainsightProcess() as gainsight:
                seeded = gainsight.seed_existing_people(workdir / "staged" / "bench.duckdb", existing) if existing else {}
                result = _run_child(label, gainsight, _copy_staged(workdir, label), args, options)
                others.append({**result, "seeded": seeded})
        with _GainsightProcess() as gainsight:
            naive = _extrapolated(_run_child("naive", gainsight, workdir / "staged", args), staged)
    _print([connector, rerun, *others, naive], staged, args)
    _print_time_to_value([connector, *others, naive])
    _print_checks(connector, rerun, naive, landed, expected, others)


def _copy_staged(workdir: Path, label: str) -> Path:
    """A fresh copy of the staged file for one contender (each starts with an empty ledger)."""
    target = workdir / label.replace(" ", "_").replace(",", "").replace("%", "pct")
    shutil.copytree(workdir / "staged", target)
    return target


def _people_setups(chosen: str) -> list[tuple[str, dict[str, Any], float]]:
    """(contender, its extra Gainsight settings, share of the people the tenant already holds) of
    the `--people-setups` chosen: the bulk people writer on an empty tenant, then both writers on a
    tenant holding most people."""
    bulk = {"people": {"writer": "bulk"}}
    setups = {"bulk": ("connector, bulk people", bulk, 0.0), "existing-single": (f"{EXISTING:.0%} exist, single", {}, EXISTING),
              "existing-bulk": (f"{EXISTING:.0%} exist, bulk people", bulk, EXISTING)}  # fmt: skip
    return [setups[name] for name in chosen.split(",") if name]


def _stage(workdir: Path, args: argparse.Namespace) -> int:
    """Seed CustomerGauge and stage it with the real command path (setup, not measured)."""
    from pipelines.runner import execute
    from pipelines.settings import RunSettings
    from sandbox.customergauge import CustomerGaugeSandbox, SeedSpec

    seed = SeedSpec(responses=args.responses, days=args.days, accounts=args.accounts, people=args.people, seed=42)
    target = workdir / "staged"
    settings = RunSettings(target / "bench.duckdb", "bench_push", "nps", str(target / "pipelines"), stage_only=True)
    started = time.perf_counter()
    # The run's summary goes to stderr with the progress lines: stdout is the benchmark's table.
    with CustomerGaugeSandbox(*CG_CLIENT, seed=seed) as cg, contextlib.redirect_stdout(sys.stderr):
        code, result = execute(settings, {
            "api_base_url": cg.base_url, "token_url": cg.token_url, "client_id": CG_CLIENT[0], "client_secret": CG_CLIENT[1],
            "initial_response_date": (date.today() - timedelta(days=args.days + 1)).isoformat(),
        })  # fmt: skip
    if result is None:
        raise SystemExit(f"staging failed with exit code {int(code)}")
    print(f"staged {result.staged_rows:,} responses in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return result.staged_rows


class _GainsightProcess:
    """`python -m sandbox gainsight` in its own process (bench/memory.py: quotas off, the Bulk job
    seeded, its clock fast), with the emulator-only reads and seeding the benchmark needs."""

    def __enter__(self) -> _GainsightProcess:
        import requests

        self._stack = contextlib.ExitStack()
        self.base_url = self._stack.enter_context(memory.gainsight_process())
        self.session = self._stack.enter_context(requests.Session())
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def requests_seen(self) -> dict[str, int]:
        """The sandbox's own count of API requests per family so far (its request log)."""
        return self.session.get(f"{self.base_url}/_sandbox/families", timeout=60).json()

    def log(self, since: int = 0) -> list[str]:
        """Paths of the API requests the sandbox logged from the `since`-th on, in arrival order."""
        answer = self.session.get(f"{self.base_url}/_sandbox/log", params={"since": since}, timeout=300).json()
        return [entry["path"] for entry in answer["requests"]]

    def log_length(self) -> int:
        return int(self.session.get(f"{self.base_url}/_sandbox/requests", timeout=60).json()["total"])

    def seed_existing_people(self, staged: Path, share: float) -> dict[str, int]:
        """Make the tenant a CRM-synced one before the push: every account's Company (by key), and
        `share` of the staged people as Persons, most of them with their Company_Person (every 8th
        without it, so the connector has associations to add)."""
        import duckdb

        with duckdb.connect(str(staged), read_only=True) as conn:
            accounts = conn.sql("SELECT account_id, any_value(account_name) FROM nps.nps_responses "
                                "WHERE account_id IS NOT NULL GROUP BY 1 ORDER BY 1").fetchall()  # fmt: skip
            people = conn.sql(
                """SELECT lower(email), any_value(first_name), any_value(last_name), any_value(account_id)
                   FROM nps.nps_responses WHERE email IS NOT NULL AND email <> '' GROUP BY 1 ORDER BY 1"""
            ).fetchall()
        gsids = self._add("Company", [{"Name": name or account, COMPANY_KEY: account} for account, name in accounts])
        companies = dict(zip((account for account, _ in accounts), gsids, strict=True))
        held = [p for position, p in enumerate(people) if position % 10 < share * 10]
        persons = self._add("Person", [{"Email": email, "FirstName": first, "LastName": last,
                                        "Name": " ".join(n for n in (first, last) if n) or None}
                                       for email, first, last, _ in held])  # fmt: skip
        pairs = enumerate(zip(persons, (account for *_, account in held), strict=True))
        links = [{"Person_ID": gsid, "Company_ID": companies[account]} for n, (gsid, account) in pairs if n % 8 and account in companies]
        self._add("Company_Person", links)
        return {"companies": len(companies), "persons": len(persons), "company_persons": len(links), "people": len(people)}

    def _add(self, obj: str, records: list[dict[str, Any]]) -> list[str]:
        gsids: list[str] = []
        for start in range(0, len(records), 5_000):
            answer = self.session.post(f"{self.base_url}/_sandbox/records/{obj}", json=records[start:start + 5_000], timeout=600)
            answer.raise_for_status()
            gsids += answer.json()["gsids"]
        return gsids

    def landed(self) -> dict[str, int]:
        """Records per object in the sandbox, responses as distinct keys (each must land exactly once)."""
        counts = {}
        for name, obj in LANDED.items():
            records = self.session.get(f"{self.base_url}/_sandbox/records/{obj}", timeout=300).json()["records"]
            counts[name] = len(records)
            if name == "responses":
                counts["distinct response keys"] = len({r.get(KEY_FIELD) for r in records})
        return counts


def _run_child(
    contender: str, gainsight: _GainsightProcess, workdir: Path, args: argparse.Namespace, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One contender in its own process; the sandbox's request log is read before and after it,
    and the calls it logged meanwhile are replayed against Gainsight's windows."""
    before, logged = gainsight.requests_seen(), gainsight.log_length()
    out = subprocess.run(
        [sys.executable, __file__, "--contender", contender, "--base-url", gainsight.base_url, "--workdir", str(workdir),
         "--naive-responses", str(args.naive_responses), "--options", json.dumps(options or {})],
        check=False, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"},
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"{contender} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    after = gainsight.requests_seen()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["contender"] = contender
    result["sandbox_calls"] = {family: n - before.get(family, 0) for family, n in after.items() if n != before.get(family, 0)}
    result["log"] = gainsight.log(logged)
    result["replay"] = {reading: replay.replay_log(result["log"], OBJECT, reading) for reading in replay.READINGS}
    print(f"  {contender:16} {result['responses']:>8,} responses in {result['seconds']:.1f} s, "
          f"{sum(result['calls'].values()):,} calls, peak RSS {result['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)  # fmt: skip
    return result


def _child(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    started = time.perf_counter()
    naive = args.contender == "naive"
    options = json.loads(args.options)
    result = _naive(args.base_url, workdir, args.naive_responses) if naive else _connector(args.base_url, workdir, options)
    result.update(seconds=time.perf_counter() - started, peak_rss_mb=_peak_rss_mb())
    print(json.dumps(result))


def _commit() -> str:
    """The checked-out commit, so every printed figure says which code it comes from."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True, check=False).stdout.strip()  # fmt: skip
    return out.stdout.strip() + ("+changes" if dirty else "")


def _peak_rss_mb() -> float:
    """This process's own high-water mark. Not `ru_maxrss`: Linux carries that over `exec` from the
    forked parent, and the parent here has held the 100k-response CustomerGauge sandbox."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _connector(base_url: str, workdir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """The real command path: `execute` with push_only, client quotas out of the way."""
    from pipelines.runner import execute
    from pipelines.settings import RunSettings

    settings = RunSettings(workdir / "bench.duckdb", "bench_push", "nps", str(workdir / "pipelines"), push_only=True)
    with contextlib.redirect_stdout(sys.stderr):  # the run's summary; stdout carries the result line
        code, result = execute(settings, gainsight_options={
            "base_url": base_url, "access_key": ACCESS_KEY, "response_bulk_job_id": JOB_ID,
            "timeline_author_email": AUTHOR, "timeline_max_age_days": TIMELINE_DAYS, "bulk_poll_interval_seconds": 0.5,
            "quotas": NO_QUOTAS, "create_missing_companies": True, **options,
        })  # fmt: skip
    if result is None or result.push is None:
        raise SystemExit(f"connector push failed with exit code {int(code)}")
    push = result.push
    responses = push["responses"]
    return {"responses": responses.created + responses.updated + responses.unchanged, "calls": dict(push.calls),
            "failed": push.failed, "deferred": push.deferred, "people_split": asdict(push.people)}  # fmt: skip


def _naive(base_url: str, workdir: Path, limit: int) -> dict[str, Any]:
    """The guide's flow, one response at a time, through the connector's own client.

    Returns its calls, plus what does not grow per response (the one metadata call, one company
    insert per account seen) so the caller can extrapolate a sample honestly.
    """
    import duckdb
    import pyarrow as pa

    from destinations.gainsight.client import GainsightClient
    from destinations.gainsight.errors import GainsightRejected
    from destinations.gainsight.quota import QuotaLimiter
    from destinations.gainsight.records import (
        AUTHOR_LOOKUP,
        activity_record,
        company_record,
        person_record,
        response_table,
    )
    from destinations.gainsight.settings import GainsightSettings, QuotaLimits

    settings = GainsightSettings(base_url=base_url, access_key=ACCESS_KEY, timeline_author_email=AUTHOR)
    client = GainsightClient(settings, QuotaLimiter(QuotaLimits(**NO_QUOTAS), None))
    rows, accounts = _naive_sample(duckdb, workdir / "bench.duckdb", limit)
    lengths = client.field_lengths(OBJECT)
    setup = dict(client.stats.calls)
    since = datetime.now(timezone.utc) - timedelta(days=TIMELINE_DAYS)
    company_inserts = rejected = 0
    for position, row in enumerate(rows.to_pylist()):
        company = None
        if row["account_id"]:
            record = company_record(row["account_id"], row["account_name"], COMPANY_KEY)
            try:
                company = client.update("company", "Company", [record], [COMPANY_KEY])[0]["Gsid"]
            except GainsightRejected as exc:
                if exc.code != "GSOBJ_1011":
                    raise
                company = client.insert("company", "Company", [record])[0]["Gsid"]
                company_inserts += 1
        if row["email"]:
            try:
                client.upsert_person(person_record(row["email"], row["first_name"], row["last_name"], company))
            except GainsightRejected:
                rejected += 1  # the naive flow moves on
        table = response_table(rows.slice(position, 1), pa.array([company], pa.string()), settings.response_fields, lengths)
        try:
            client.insert("response", OBJECT, table.to_pylist())
        except GainsightRejected:
            rejected += 1
        if company and row["responded_at"] >= since:
            client.insert_activities([activity_record(row, company, AUTHOR, settings.timeline_activity_type)], AUTHOR_LOOKUP)
    return {"responses": rows.num_rows, "calls": dict(client.stats.calls), "setup_calls": setup,
            "company_inserts": company_inserts, "accounts_in_data": accounts, "failed": rejected}  # fmt: skip


def _naive_sample(duckdb: Any, path: Path, limit: int) -> tuple[Any, int]:
    """Every k-th staged response by date, so a sample spans the year like the whole (Timeline
    share included); plus how many accounts the whole data has (one company insert each)."""
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.sql(
            """SELECT * EXCLUDE (properties, drivers, n) FROM (
                   SELECT *, row_number() OVER (ORDER BY responded_at, response_id) AS n FROM nps.nps_responses)
               WHERE n % greatest(1, (SELECT count(*) FROM nps.nps_responses) // ?) = 0
               ORDER BY n LIMIT ?""",
            params=[limit, limit],
        ).to_arrow_table()
        accounts = conn.sql("SELECT count(DISTINCT account_id) FROM nps.nps_responses").fetchall()[0][0]
    return rows, accounts


def _extrapolated(result: dict[str, Any], staged: int) -> dict[str, Any]:
    """A naive run on a sample, taken to the full count: per-response calls and the time grow
    linearly; the metadata call stays one; company inserts become one per account of the data."""
    factor = staged / result["responses"]
    if factor <= 1.0:
        return result
    setup, inserts = result["setup_calls"], result["company_inserts"]
    calls = {}
    for family, n in result["calls"].items():
        once = setup.get(family, 0) + (inserts if family == "company" else 0)
        calls[family] = round((n - once) * factor) + setup.get(family, 0) + (result["accounts_in_data"] if family == "company" else 0)
    # Its call sequence likewise: what comes before the first Company call once, the rest k times.
    log = result["log"]
    first = next((i for i, path in enumerate(log) if "/Company" in path), len(log))
    log = log[:first] + log[first:] * round(factor)
    replayed = {reading: replay.replay_log(log, OBJECT, reading) for reading in replay.READINGS}
    return {**result, "contender": "naive, extrapolated", "measured": result, "responses": staged, "calls": calls,
            "seconds": result["seconds"] * factor, "replay": replayed}  # fmt: skip


def _expected(path: Path) -> dict[str, int]:
    """What the staged data should become in Gainsight (for the landed-records check)."""
    import duckdb

    with duckdb.connect(str(path), read_only=True) as conn:
        responses, companies, people, activities = conn.sql(
            """SELECT count(*), count(DISTINCT account_id), count(DISTINCT email),
                      count(*) FILTER (WHERE account_id IS NOT NULL AND responded_at >= now() - to_days(?))
               FROM nps.nps_responses""",
            params=[TIMELINE_DAYS],
        ).fetchall()[0]
    return {"responses": responses, "distinct response keys": responses, "companies": companies, "people": people, "activities": activities}


def _print(results: list[dict[str, Any]], staged: int, args: argparse.Namespace) -> None:
    print(f"\npush benchmark: {staged:,} responses, {args.accounts:,} accounts, {args.people:,} people "
          f"({os.cpu_count()} cores, Python {sys.version.split()[0]}; quotas off in the sandboxes)")  # fmt: skip
    header = "".join(f"{heading:>14}" for _, heading in COLUMNS)
    print(f"{'contender':<24}{header}{'total':>10}{'seconds':>10}{'RSS MB':>8}")
    for r in results:
        cells = "".join(f"{r['calls'].get(family, 0):>14,}" for family, _ in COLUMNS)
        print(f"{r['contender']:<24}{cells}{sum(r['calls'].values()):>10,}{r['seconds']:>10.1f}{r['peak_rss_mb']:>8.0f}")
    for r in results:
        if "measured" in r:
            m = r["measured"]
            print(f"{r['contender']}: MEASURED on {m['responses']:,} responses spread over the data: "
                  f"{sum(m['calls'].values()):,} calls, {m['seconds']:.1f} s, peak RSS {m['peak_rss_mb']:.0f} MB "
                  "(the RSS column is this).\n"
                  f"  EXTRAPOLATED to {r['responses']:,}: calls and seconds x{r['responses'] / m['responses']:.1f} "
                  "per response, except the metadata call (once) and company inserts "
                  f"(one per account of the data: {m['accounts_in_data']:,})")  # fmt: skip


def _print_time_to_value(results: list[dict[str, Any]]) -> None:
    """Per contender, the replay of its logged calls (bench/replay.py): minutes until (a) every
    response, (b) every Timeline entry, (c) every person may be in Gainsight; one row per reading of
    the bulk people quota where the two differ."""
    print("\ntime to value under Gainsight's documented quotas (the contender's logged calls replayed, bench/replay.py)")
    print(f"{'contender':<24}{'bulk people count as':>22}{'(a) responses':>15}{'(b) Timeline':>14}{'(c) people':>12}{'all calls':>11}")
    for r in results:
        readings = r["replay"]
        shown = readings.items() if readings["sync"] != readings["async"] else [("either", readings["async"])]
        for reading, figures in shown:
            label = {"sync": "sync 100/min", "async": "bulk 10/hour", "either": "either way"}[reading]
            widths = (("response", 15), ("activity", 14), ("person", 12), ("all", 11))
            cells = "".join(f"{replay.minutes(figures[kind]):>{width}}" for kind, width in widths)
            print(f"{r['contender']:<24}{label:>22}{cells}")
        if r.get("seeded"):
            seeded = r["seeded"]
            print(f"  {'':22}tenant held {seeded['persons']:,} of {seeded['people']:,} people "
                  f"({seeded['company_persons']:,} with their Company_Person) and all {seeded['companies']:,} companies")  # fmt: skip
        if r.get("people_split"):
            print(f"  {'':22}people split: " + ", ".join(f"{n:,} {what}" for what, n in r["people_split"].items()))


def _print_checks(
    connector: dict, rerun: dict, naive: dict, landed: dict[str, int], expected: dict[str, int], others: list[dict]
) -> None:
    """The issue's targets, then the cross-checks that make the figures trustworthy."""
    measured = naive.get("measured", naive)
    ours, theirs = sum(connector["calls"].values()), sum(naive["calls"].values())
    rerun_writes = sum(rerun["calls"].get(f, 0) for f in WRITE_FAMILIES)
    bulk = connector["calls"].get("bulk", 0)
    checks = [
        (f"naive / connector API calls: {theirs:,} / {ours:,} = {theirs / ours:.1f}x", theirs / ours >= 3, "target >= 3x"),
        (f"Bulk uploads carrying the responses: {bulk}", bulk <= 2, "target <= 2"),
        (f"connector peak RSS: {connector['peak_rss_mb']:.0f} MB", connector["peak_rss_mb"] <= 400, "target <= 400 MB"),
        (f"re-run with nothing new: {rerun_writes} write calls, {sum(rerun['calls'].values())} calls in all",
         rerun_writes == 0, "target 0 writes"),
    ]  # fmt: skip
    print()
    for text, met, target in checks:
        print(f"  {text:<72} {target:<18} {'met' if met else 'MISSED'}")
    print(f"  connector: {connector['failed']} records dead-lettered, {connector['deferred']} deferred; "
          f"naive: {measured['failed']} calls rejected (measured)")  # fmt: skip
    print("  in Gainsight after the connector: " + ", ".join(f"{landed[k]:,} {k}" for k in landed)
          + ("  (as staged)" if landed == expected else f"  EXPECTED {expected}"))  # fmt: skip
    for r in (connector, rerun, *others, measured):
        mismatch = _log_mismatch(r["calls"], r["sandbox_calls"])
        verdict = f"DIFFER from the sandbox log: {mismatch}" if mismatch else "match the sandbox request log"
        print(f"  {r['contender']}: client call counts {verdict}")


def _log_mismatch(calls: dict[str, int], seen: dict[str, int]) -> str:
    """The client's counts regrouped as the sandbox logs them (metadata is a query to the client)."""
    grouped: dict[str, int] = {}
    for family, n in calls.items():
        grouped[SANDBOX_FAMILY.get(family, family)] = grouped.get(SANDBOX_FAMILY.get(family, family), 0) + n
    seen = {**seen, "data": seen.get("data", 0) + seen.get("metadata", 0)}
    seen.pop("metadata", None)
    differ = {f: (grouped.get(f, 0), seen.get(f, 0)) for f in set(grouped) | set(seen) if grouped.get(f, 0) != seen.get(f, 0)}
    return ", ".join(f"{f}: client {a:,} vs sandbox {b:,}" for f, (a, b) in sorted(differ.items()))


if __name__ == "__main__":
    main()
