"""dlt source for CustomerGauge NPS responses (v7 sync API).

`customergauge()` is configured from `[sources.customergauge]` in `.dlt/config.toml` and
`.dlt/secrets.toml`, or the matching `SOURCES__CUSTOMERGAUGE__*` environment variables.

Incremental loading follows the response date, not the sync cursor: each run asks for
`period[field]=date_survey_response` from the last seen response date minus `lookback_days` up to
today. The lookback re-reads recent days on every run, which catches late-arriving responses
(partial completes that convert later) and edits to responses whose response date falls inside
the window. It cannot catch an edit to a response older than the window, because the API has no
updated-at filter; run a backfill over that range (`--start/--end`) when that matters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import dlt
from dlt.common.schema.typing import TDeleteInsertStrategyDict
from dlt.sources import DltResource

from connector_common.first_contact import credential_problem, url_problem

from .auth import ClientCredentials
from .client import CustomerGaugeClient, RetryPolicy
from .errors import InvalidSetting
from .feed import Feed, feed_tables
from .options import FeedOptions
from .report import ExtractReport
from .settings import (
    API_BASE_URL,
    CREDENTIALS,
    NON_RESPONSES_PATH,
    RESPONSES_PATH,
    TOKEN_URL,
    default_api_base_url,
    default_token_url,
)

__all__ = ["customergauge", "ExtractReport"]

RESPONSES_TABLE = "nps_responses"
NON_RESPONSES_TABLE = "nps_non_responses"


@dlt.source(name="customergauge", section="customergauge")
def customergauge(
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    initial_response_date: str = dlt.config.value,
    region: str = "eu",
    api_base_url: str | None = None,
    token_url: str | None = None,
    lookback_days: int = 3,
    tenant_timezone: str = "UTC",
    property_map: dict[str, str] | None = None,
    expansions: list[str] | None = None,
    include_non_responses: bool = False,
    max_attempts: int = 6,
    retry_backoff_seconds: float = 1.0,
    max_retry_wait_seconds: float = 120.0,
    decode_workers: int | None = None,
    rows_per_load: int = 100_000,
    backfill_start: str | None = None,
    backfill_end: str | None = None,
    report: ExtractReport | None = None,
    load_in_parts: bool = False,
) -> Sequence[DltResource]:
    """CustomerGauge responses (and optionally non-responses) as canonical staging tables.

    Args:
        client_id, client_secret: the Connected App's OAuth2 client credentials (secrets).
        initial_response_date: YYYY-MM-DD the very first run starts from.
        region: eu, us or au; picks the default API and token hosts.
        api_base_url, token_url: full overrides of those hosts (proxies, the sandbox).
        lookback_days: days re-read before the last seen response date on every run.
        tenant_timezone: IANA zone CustomerGauge's naive datetimes are in (tenant setting).
        property_map: canonical column -> CustomerGauge property label, merged over the defaults.
        expansions: `with[]` values requested on every page.
        include_non_responses: also stage invitations without an answer.
        max_attempts, retry_backoff_seconds, max_retry_wait_seconds: the retry policy.
        decode_workers: threads that parse and map pages in parallel (None: by core count,
            0: all inline).
        rows_per_load: with `load_in_parts`, a window larger than this is extracted and loaded
            in parts of about this many rows, which bounds the memory a merge needs; an
            interrupted run resumes at the part it had reached.
        backfill_start, backfill_end: YYYY-MM-DD range to re-load without moving the cursor.
        report: filled with counts for the run summary (passed by the command, not config).
        load_in_parts: end each extract after one part (`rows_per_load`) and leave the rest of
            the window to the next extract; for a caller that loads each part before it extracts
            the next (the command). Off, `pipeline.run(customergauge())` loads the whole window.
    """
    options = FeedOptions.build(
        initial_response_date=initial_response_date,
        lookback_days=lookback_days,
        tenant_timezone=tenant_timezone,
        property_map=property_map,
        expansions=expansions,
        backfill_start=backfill_start,
        backfill_end=backfill_end,
        decode_workers=decode_workers,
        rows_per_load=rows_per_load,
    )
    client = build_client(
        client_id, client_secret, region, api_base_url, token_url, max_attempts, retry_backoff_seconds, max_retry_wait_seconds
    )
    report = report or ExtractReport(run_id=datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    report.clients.append(client)
    resources = [responses(client, options, report, load_in_parts, responded_at=_cursor("responded_at", options))]
    if include_non_responses:
        resources.append(non_responses(client, options, report, load_in_parts, sent_at=_cursor("sent_at", options)))
    if not load_in_parts:
        for resource in resources:
            resource.apply_hints(write_disposition=MERGE_LATEST_COPY, columns=LATEST_COPY_WINS)
    return resources


def build_client(
    client_id: str,
    client_secret: str,
    region: str,
    api_base_url: str | None,
    token_url: str | None,
    max_attempts: int,
    retry_backoff_seconds: float,
    max_retry_wait_seconds: float,
) -> CustomerGaugeClient:
    """The API client from the source's settings, checked before any call."""
    api_base_url, token_url = api_base_url or default_api_base_url(region), token_url or default_token_url(region)
    check_first_contact_settings(client_id, client_secret, api_base_url, token_url)
    return CustomerGaugeClient(
        api_base_url,
        token_url,
        ClientCredentials(client_id, client_secret),
        RetryPolicy(max_attempts=max_attempts, backoff=retry_backoff_seconds, max_wait=max_retry_wait_seconds),
    )


def check_first_contact_settings(client_id: str, client_secret: str, api_base_url: str, token_url: str) -> None:
    """Refuse credentials copied unfilled from the example, and plain http off loopback, before any call."""
    problems = [credential_problem(value, key) for value, key in zip((client_id, client_secret), CREDENTIALS, strict=True)]
    problems += [url_problem(url, key) for url, key in ((api_base_url, API_BASE_URL), (token_url, TOKEN_URL))]
    found = [problem for problem in problems if problem]
    if found:
        raise InvalidSetting("; ".join(found))


def _cursor(column: str, options: FeedOptions) -> dlt.sources.incremental[datetime]:
    """The incremental cursor of a feed.

    The API's period filter chooses the rows; the cursor keeps the highest response date seen,
    from which the next window starts. `lag` keeps dlt from filtering on its own (see
    `FeedOptions.lag_seconds`); quarantined rows may carry no date
    (`on_cursor_value_missing="include"`); deduplication at the boundary is off (`primary_key=()`)
    because merging on the primary key already handles it.
    """
    return dlt.sources.incremental(
        column,
        initial_value=options.initial,
        end_value=options.backfill_end_exclusive,
        lag=options.lag_seconds,
        on_cursor_value_missing="include",
        primary_key=(),
    )


# Loaded in parts, each load package holds every response at most once (`feed.one_part`), which
# lets the merge skip deduplicating the staged rows: a window function over full rows that made
# DuckDB's memory grow with the size of the load.
MERGE_UNIQUE_ROWS: TDeleteInsertStrategyDict = {"disposition": "merge", "strategy": "delete-insert", "deduplicated": True}
# A whole window in one load may hold a response twice (edited while the window was paged, so
# re-emitted later in the feed): the merge deduplicates and keeps the copy fetched last.
MERGE_LATEST_COPY: TDeleteInsertStrategyDict = {"disposition": "merge", "strategy": "delete-insert"}
LATEST_COPY_WINS: dict[str, Any] = {"fetched_at": {"dedup_sort": "desc"}}


@dlt.resource(name=RESPONSES_TABLE, primary_key="response_id", write_disposition=MERGE_UNIQUE_ROWS)
def responses(
    client: CustomerGaugeClient,
    options: FeedOptions,
    report: ExtractReport,
    load_in_parts: bool,
    responded_at: dlt.sources.incremental[datetime] = dlt.sources.incremental("responded_at"),  # noqa: B008 (dlt reads the cursor from the default)
) -> Iterator[Any]:
    """Completed surveys, merged on `response_id` (latest version wins)."""
    yield from feed_tables(client, options, report, responded_at, RESPONSES_FEED, load_in_parts)


@dlt.resource(name=NON_RESPONSES_TABLE, primary_key="response_id", write_disposition=MERGE_UNIQUE_ROWS)
def non_responses(
    client: CustomerGaugeClient,
    options: FeedOptions,
    report: ExtractReport,
    load_in_parts: bool,
    sent_at: dlt.sources.incremental[datetime] = dlt.sources.incremental("sent_at"),  # noqa: B008 (dlt reads the cursor from the default)
) -> Iterator[Any]:
    """Invitations without an answer, filtered on the send date (`period[field]=date_sent`)."""
    yield from feed_tables(client, options, report, sent_at, NON_RESPONSES_FEED, load_in_parts)


RESPONSES_FEED = Feed(
    RESPONSES_TABLE, RESPONSES_PATH, "date_survey_response", "response", "date_survey_response", "responded_at"
)
NON_RESPONSES_FEED = Feed(
    NON_RESPONSES_TABLE, NON_RESPONSES_PATH, "date_sent", "non_response", "date_email_sent", "sent_at"
)
