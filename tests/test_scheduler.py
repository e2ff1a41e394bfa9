"""The push's scheduler: value order, every quota family kept busy, the run's time budget.

Counts and order only, never times: the clock is a fake one the scheduler's sleeps advance.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from destinations.gainsight.errors import QuotaExhausted, RunBudgetReached
from destinations.gainsight.quota import QuotaLimiter, RunBudget
from destinations.gainsight.scheduler import Scheduler, Step
from destinations.gainsight.settings import QuotaLimits
from pipelines.errors import ExitCode
from pipelines.runner import execute

from .conftest import NO_CLIENT_QUOTAS
from .staged import push_only
from .test_gainsight_units import FakeClock

MINUTE = 1_800_000_000.0  # a minute boundary


def calling(limiter: QuotaLimiter, log: list[tuple[str, int]], name: str, family: str, calls: int) -> Step:
    """A step making `calls` calls of `family`, logging each as it is made."""

    def run() -> None:
        for number in range(calls):
            limiter.acquire(family)
            log.append((name, number))

    return Step(name, run)


def test_a_full_window_hands_the_turn_to_the_next_step_that_can_call():
    clock = FakeClock(MINUTE)
    scheduler = Scheduler(clock, clock.sleep)
    limits = QuotaLimits(sync_per_minute=2, timeline_per_minute=3)
    limiter = QuotaLimiter(limits, None, 65.0, scheduler.clock, scheduler.pause)
    log: list[tuple[str, int]] = []

    scheduler.run(
        [
            calling(limiter, log, "responses", "sync", 5),
            calling(limiter, log, "activities", "timeline", 4),
            calling(limiter, log, "people", "sync", 3),
        ]
    )

    assert log == [
        ("responses", 0), ("responses", 1),  # minute 0: sync full ...
        ("activities", 0), ("activities", 1), ("activities", 2),  # ... Timeline goes on; then both full
        ("responses", 2), ("responses", 3),  # minute 1: the first step in value order first
        ("activities", 3),
        ("responses", 4), ("people", 0),  # minute 2: people only get what responses leave
        ("people", 1), ("people", 2),  # minute 3
    ]  # fmt: skip
    assert clock.slept == [60.0, 60.0, 60.0]  # slept only when every pending step was parked


def test_without_a_full_window_the_steps_run_strictly_in_order_after_their_dependencies():
    clock = FakeClock(MINUTE)
    scheduler = Scheduler(clock, clock.sleep)
    limiter = QuotaLimiter(QuotaLimits(), None, 65.0, scheduler.clock, scheduler.pause)
    log: list[tuple[str, int]] = []
    companies = calling(limiter, log, "companies", "sync", 2)
    responses = replace(calling(limiter, log, "responses", "sync", 2), after=("companies",))

    scheduler.run([responses, calling(limiter, log, "activities", "timeline", 2), companies])

    # activities depend on nothing here, so they go first; responses wait for companies
    assert log == [("activities", 0), ("activities", 1), ("companies", 0), ("companies", 1), ("responses", 0), ("responses", 1)]
    assert clock.slept == []


def test_an_earlier_step_whose_wait_is_over_takes_the_turn_back_before_the_next_call():
    clock = FakeClock(MINUTE)
    scheduler = Scheduler(clock, clock.sleep)
    limiter = QuotaLimiter(QuotaLimits(), None, 65.0, scheduler.clock, scheduler.pause, checkpoint=scheduler.checkpoint)
    log: list[tuple[str, int]] = []

    def responses() -> None:  # one call, a 3 s Bulk poll interval, two more calls
        for number in range(3):
            limiter.acquire("sync")
            log.append(("responses", number))
            if number == 0:
                scheduler.pause(3.0)

    def people() -> None:  # six calls of a second each
        for number in range(6):
            limiter.acquire("sync")
            log.append(("people", number))
            clock.now += 1.0

    scheduler.run([Step("responses", responses), Step("people", people)])

    assert log == [("responses", 0), ("people", 0), ("people", 1), ("people", 2),
                   ("responses", 1), ("responses", 2), ("people", 3), ("people", 4), ("people", 5)]  # fmt: skip


def test_a_failing_step_fails_the_run_and_unwinds_the_parked_ones():
    clock = FakeClock(MINUTE)
    scheduler = Scheduler(clock, clock.sleep)
    limiter = QuotaLimiter(QuotaLimits(sync_per_minute=1), None, 65.0, scheduler.clock, scheduler.pause)
    unwound: list[str] = []

    def parked() -> None:
        try:
            for _ in range(3):
                limiter.acquire("sync")
        finally:
            unwound.append("responses")  # what landed is booked on the way out

    def failing() -> None:
        limiter.acquire("timeline")
        raise ValueError("a setting Gainsight does not know")

    with pytest.raises(ValueError, match="does not know"):
        scheduler.run([Step("responses", parked), Step("activities", failing)])
    assert unwound == ["responses"]


def test_the_run_budget_stops_every_family_between_two_calls():
    clock = FakeClock(MINUTE)
    scheduler = Scheduler(clock, clock.sleep)
    budget = RunBudget(MINUTE + 150, 2.5)
    limiter = QuotaLimiter(QuotaLimits(sync_per_minute=2), None, 65.0, scheduler.clock, scheduler.pause, budget)
    made: Counter[str] = Counter()
    stopped: list[QuotaExhausted] = []

    def step(family: str) -> Step:
        def run() -> None:
            try:
                while True:
                    limiter.acquire(family)
                    made[family] += 1
            except QuotaExhausted as exhausted:
                stopped.append(exhausted)

        return Step(family, run)

    scheduler.run([step("sync"), step("timeline")])

    assert made["sync"] == 6  # minutes 0, 1 and 2 (2 calls each); the budget ends at 2.5 minutes
    assert made["timeline"] > 0
    assert len(stopped) == 2 and all(isinstance(e, RunBudgetReached) for e in stopped)
    assert stopped[0].reason == "run budget reached"


# --- the command, end to end ------------------------------------------------------------------------

WRITE_FAMILIES = ("people", "timeline", "bulk")


def write_families(gs) -> list[str]:
    """The sandbox's request log as the sequence of write families (data writes as `data`)."""
    from sandbox.gainsight.server import family_of

    families = []
    for entry in gs.requests():
        family = family_of(entry.path)
        is_data_write = family == "data" and "/query/" not in entry.path and entry.method in ("POST", "PUT")
        if family in WRITE_FAMILIES or is_data_write:
            families.append("response" if is_data_write and "CG_NPS" in entry.path else family)
    return families


def test_responses_and_activities_are_all_written_before_any_person(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    _, connector = staged_connector(gs)  # 40 responses staged, nothing pushed

    code, result = push_only(connector).run()

    assert code == ExitCode.OK
    order = write_families(gs)
    first_person = order.index("people")
    assert {"response", "timeline"} <= set(order[:first_person])
    assert not {"response", "timeline"} & set(order[first_person:])
    assert result.push["people"].created == gs.count_records("Person") > 0


def test_while_the_sync_window_is_full_timeline_calls_go_on(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    _, connector = staged_connector(gs)  # 40 responses staged, nothing pushed
    connector = push_only(connector)
    clock = FakeClock(MINUTE)
    quotas = {**NO_CLIENT_QUOTAS, "sync_per_minute": 3}

    options = connector.gs_options(quotas=quotas, max_rate_limit_wait_seconds=65)

    code, result = execute(connector.staging.settings, connector.staging.options(), options, scheduler=Scheduler(clock, clock.sleep))

    assert code == ExitCode.OK
    order = write_families(gs)
    # The sync window filled up with the Companies; the Timeline entries were written before the
    # response records, in the same run, instead of after them.
    assert order.index("timeline") < order.index("response")
    assert clock.slept  # the sync window was waited out (by the fake clock)
    staged = connector.scalar("SELECT count(*) FROM nps.nps_responses")
    assert Counter(r["ResponseId__gc"] for r in connector.records()).total() == staged == result.push["responses"].created
    assert set(Counter(r["ResponseId__gc"] for r in connector.records()).values()) == {1}


def test_a_run_budget_stop_defers_and_the_next_run_finishes_exactly_once(gs_sandbox, staged_connector):
    gs = gs_sandbox()
    _, connector = staged_connector(gs)  # 40 responses staged, nothing pushed
    connector = push_only(connector)
    clock = FakeClock(MINUTE)
    quotas = {**NO_CLIENT_QUOTAS, "sync_per_minute": 4}
    settings = replace(connector.staging.settings, max_run_minutes=3)

    options = connector.gs_options(quotas=quotas, max_rate_limit_wait_seconds=65)

    code, result = execute(settings, connector.staging.options(), options, scheduler=Scheduler(clock, clock.sleep))

    assert code == ExitCode.DEFERRED
    push = result.push
    assert [d.reason for d in push.deferrals] == ["run budget reached"]
    assert push.deferred > 0
    staged = connector.scalar("SELECT count(*) FROM nps.nps_responses")
    people = connector.scalar("SELECT count(DISTINCT email) FROM nps.nps_responses WHERE email IS NOT NULL")
    assert gs.count_records("Person") < people  # the budget ended the run before every person

    code, result = connector.run()  # the next run, with the default budget

    assert code == ExitCode.OK
    assert set(Counter(r["ResponseId__gc"] for r in connector.records()).values()) == {1}
    assert len(connector.records()) == staged
    assert set(Counter(p["Email"] for p in gs.records("Person")).values()) == {1}
    assert gs.count_records("Person") == people
    activities = Counter(a["ExternalId"] for a in gs.records("activity_timeline"))
    assert set(activities.values()) == {1}
    assert connector.scalar("SELECT count(*) FROM gainsight.responses WHERE status = 'deferred'") == 0


def test_small_pages_push_every_object_exactly_once_and_the_responses_in_one_bulk_upload(
    gs_sandbox, staged_connector, monkeypatch
):
    from destinations.gainsight import engine

    monkeypatch.setattr(engine, "PAGE_ROWS", 7)  # 60 responses, a dozen accounts and people: many pages each
    gs = gs_sandbox()
    _, connector = staged_connector(gs, responses=60, days=10, accounts=12)  # staged, nothing pushed
    connector = push_only(connector)

    code, result = connector.run(bulk_min_rows=20)

    assert code == ExitCode.OK
    push = result.push
    assert push.bulk_uploads == 1 and push["responses"].created == 60  # every page appended to one file
    assert set(Counter(r["ResponseId__gc"] for r in connector.records()).values()) == {1}
    assert len(connector.records()) == 60
    emails = connector.scalar("SELECT count(DISTINCT email) FROM nps.nps_responses WHERE email IS NOT NULL")
    assert push["people"].created == gs.count_records("Person") == emails
    accounts = connector.scalar("SELECT count(DISTINCT account_id) FROM nps.nps_responses")
    assert push["companies"].created == gs.count_records("Company") == accounts
    recent = connector.scalar(
        "SELECT count(*) FROM nps.nps_responses WHERE responded_at >= now() - INTERVAL 14 DAY AND account_id IS NOT NULL"
    )
    assert push["activities"].created == gs.count_records("activity_timeline") == recent

    code, result = connector.run(bulk_min_rows=20)  # nothing new: nothing written

    assert code == ExitCode.OK and result.push.write_calls == 0
