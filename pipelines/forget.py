"""`forget --email ADDRESS [--yes]`: erase one person from Gainsight and from everything the connector keeps.

A dry run by default: it counts what would go, changes nothing and calls nobody. With `--yes`, in an
order that a kill at any point leaves for the next `forget` to finish:

1. **Gainsight**: the response records and Timeline entries of the person's responses are deleted
   and each deletion confirmed by a read (`destinations/gainsight/erase.py`). Nothing local is
   touched before Gainsight holds none of them, so the response ids stay known until then.
2. **Survey CSV exports** (`pipelines/export`: its state rows and the export files still in their
   folder, rewritten without the person's rows; files a pick-up job moved away are counted).
   **Then locally, in one transaction**: every staged row of the person in the dataset and in dlt's merge
   staging schema (responses, non-responses, quarantined raw payloads naming the address, child
   tables of those rows, webhook events `serve` spooled), their ledger rows (responses,
   activities, Bulk upload rows, the person's People ledger row), dead letters and problems
   already reported.
3. Pending dlt load packages (a killed run's extract or outbox, which may hold the person) are
   dropped: the ledger recomputes the outbox and the source re-reads its window.
4. The DuckDB file is rewritten (a fresh copy replaces it): DuckDB leaves deleted rows' bytes in
   its file until it reuses the space, and the write-ahead log is folded in first. Needs free disk
   for one more copy of the file while it runs.

The address is matched trimmed and lower-cased, in clear and in its hashed form (`stage_email =
hash`, needs `hash_salt`); a masked form is not unique and is not matched. Logs and output name the
person by a salted hash (or the masked address without a salt), never the address.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

import dlt

from connector_common import pii
from connector_common.stop import stop_on_signals
from destinations.gainsight import GainsightSettingError, load_settings
from destinations.gainsight.client import GainsightClient
from destinations.gainsight.erase import Erased, erase_responses
from destinations.gainsight.quota import QuotaLimiter
from destinations.gainsight.store import Ledger, erase_person_from_ledger, person_in_ledger

from .errors import CommandError, ConfigError, ExitCode, exit_code_for
from .logs import redact
from .runner import new_run_id
from .settings import RunSettings
from .staging import QUARANTINE, RESPONSES, StagingStore, require_staging_file

log = logging.getLogger("nps.forget")

WEBHOOK_SPOOL_SCHEMA = "webhooks"  # pipelines/serve/spool.py: events received, not yet staged


@dataclass
class Person:
    """One person's footprint in the staging file."""

    label: str  # how output names them
    forms: list[str]  # the address and its hashed form, as staged
    response_ids: list[str] = field(default_factory=list)
    staging: dict[str, int] = field(default_factory=dict)  # schema.table -> rows
    ledger: dict[str, int] = field(default_factory=dict)  # gainsight table -> rows


def run_forget(settings: RunSettings, address: str, act: bool) -> ExitCode:
    """The `forget` verb; returns its exit code (pipelines/errors.py), never raises for expected failures."""
    address = address.strip().lower()
    if "@" not in address or any(character.isspace() for character in address):
        print("error: forget --email needs one e-mail address", file=sys.stderr, flush=True)
        return ExitCode.CONFIG_ERROR
    salt = settings.pii.hash_salt
    person = Person(pii.person_label(address, salt), [address, *([pii.hashed_email(address, salt)] if salt else [])])
    try:
        require_staging_file(settings.duckdb_path)
        store = StagingStore.open(settings.duckdb_path, settings.dataset_name, settings.duckdb_memory_limit, "forget")
    except CommandError as exc:
        log.error("%s", exc)
        return exc.exit_code
    try:
        with stop_on_signals():
            return _forget(settings, store, person, address, act)
    except Exception as exc:  # every failure becomes a documented exit code
        code = exit_code_for(exc)
        log.error("forget %s failed (exit %d): %s; run it again to finish", person.label, int(code), redact(str(exc)))
        print(f"forget {person.label}: failed, exit {int(code)}; nothing local was erased unless said above", flush=True)
        return code
    finally:
        store.close()


# Said by the dry run too: an operator reading only its plan would otherwise take it for the whole erasure.
LEFT_ALONE = "  left alone: a Person in Gainsight (no documented delete API: remove it there) and CustomerGauge's copy"


def _forget(settings: RunSettings, store: StagingStore, person: Person, address: str, act: bool) -> ExitCode:
    tables = _tables(store, settings.dataset_name)
    person.response_ids = _response_ids(store, tables, person.forms, address)
    params: dict[str, object] = {"forms": person.forms, "ids": person.response_ids, "address": address}
    conditions = [(name, where) for name, columns in _children_first(tables) if (where := _condition(name, columns, tables))]
    person.staging = {name: _rows(store, "SELECT count(*) FROM", name, where, params) for name, where in conditions}
    person.ledger = person_in_ledger(store.connection, person.response_ids, person.forms)
    if not act:
        exports = _erase_from_exports(store, person, address, dry_run=True)
        lines = [_report(person, "dry run: nothing changed; add --yes to erase", exports)]
        pushed = _in_gainsight(person.ledger.get("responses", 0), person.ledger.get("activities", 0))
        lines.append(f"  gainsight: --yes would delete {pushed} (as the ledger knows them; each deletion confirmed by a read)")
        lines.append(LEFT_ALONE)
        print("\n".join(lines), flush=True)
        return ExitCode.OK
    erased = _erase_in_gainsight(store, person)
    exports = _erase_from_exports(store, person, address, dry_run=False)
    db = store.connection
    db.execute("BEGIN")
    try:
        person.staging = {name: _rows(store, "DELETE FROM", name, where, params) for name, where in conditions}
        person.ledger = erase_person_from_ledger(db, person.response_ids, person.forms)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    dropped = _drop_pending_packages(settings)
    store.rewrite()  # step 4: no deleted bytes left in the file
    lines = [_report(person, "erased", exports)]
    lines.append(f"  gainsight: {_in_gainsight(erased.responses, erased.activities)} deleted, confirmed gone")
    if dropped:
        lines.append(f"  dropped {dropped} pending dlt load package(s) (re-derived by the next run)")
    lines.append(LEFT_ALONE)
    print("\n".join(lines), flush=True)
    log.info("forget %s: erased %d response(s) locally and in Gainsight", person.label, len(person.response_ids))
    return ExitCode.OK


def _erase_from_exports(store: StagingStore, person: Person, address: str, dry_run: bool) -> str:
    """The survey CSV exports (`pipelines/export`): their state rows and the files still in place;
    committed on its own, before the staged rows go (it finds the person's rows through them too)."""
    from pipelines.export import erase_person  # duckdb and the export's modules: only when forgetting

    erased = erase_person(store.connection, store.dataset, address, person.response_ids, dry_run=dry_run)
    moved = ""
    if erased.files_missing:
        moved = f"; {erased.files_missing} export file(s) moved away, out of reach: erase those copies where they went"
    return (
        f"{erased.state_rows} export state row(s), {erased.rows_removed} CSV row(s) in "
        f"{len(erased.files_rewritten)} file(s){moved}"
    )


def _erase_in_gainsight(store: StagingStore, person: Person) -> Erased:
    """Step 1; without Gainsight settings only when the ledger says nothing of theirs was pushed."""
    if not person.response_ids:
        return Erased()
    try:
        settings = load_settings()
    except GainsightSettingError as exc:
        if person.ledger.get("responses") or person.ledger.get("activities"):
            raise ConfigError(f"forget deletes in Gainsight first, which needs its settings: {exc}") from None
        log.info("forget %s: no Gainsight settings and nothing of theirs in the ledger: local erase only", person.label)
        return Erased()
    ledger = Ledger(store.connection, new_run_id(), settings.max_attempts)  # the quota log, shared with runs
    limiter = QuotaLimiter(settings.quotas, ledger, settings.max_rate_limit_wait_seconds)
    client = GainsightClient(settings, limiter)
    try:
        erased = erase_responses(client, settings, person.response_ids)
    finally:
        limiter.flush()
        client.close()
        ledger.close()
    log.info("forget %s: Gainsight: %s deleted", person.label, _in_gainsight(erased.responses, erased.activities))
    return erased


def _in_gainsight(responses: int, activities: int) -> str:
    entries = "Timeline entry" if activities == 1 else "Timeline entries"
    return f"{responses} response record{'' if responses == 1 else 's'}, {activities} {entries}"


def _tables(store: StagingStore, dataset: str) -> dict[str, set[str]]:
    """`schema.table` -> columns, of every table of the dataset, of dlt's merge staging copy and of
    `serve`'s webhook spool."""
    rows = store.connection.execute(
        """SELECT c.table_schema, c.table_name, list(c.column_name) FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
           WHERE t.table_type = 'BASE TABLE' AND c.table_schema IN (?, ?, ?) AND c.table_name NOT LIKE '\\_dlt\\_%' ESCAPE '\\'
           GROUP BY ALL""",
        [dataset, f"{dataset}_staging", WEBHOOK_SPOOL_SCHEMA],
    ).fetchall()
    return {f'"{schema}"."{table}"': set(columns) for schema, table, columns in rows}


def _children_first(tables: dict[str, set[str]]) -> list[tuple[str, set[str]]]:
    """dlt child tables (`parent__child`) go before their parents, whose `_dlt_id` they name."""
    return sorted(tables.items(), key=lambda item: -item[0].count("__"))


def _condition(name: str, columns: set[str], tables: dict[str, set[str]]) -> str | None:
    """SQL: a row of `name` belongs to the person ($forms, $ids, $address), or None if it cannot."""
    parts = []
    if "email" in columns:
        parts.append("list_contains($forms, lower(email))")
    if "response_id" in columns and (name.endswith(f'."{RESPONSES}"') or name.endswith(f'."{QUARANTINE}"')):
        parts.append("list_contains($ids, response_id)")
    for raw in ("raw", "record"):  # a quarantined payload; a webhook event still spooled by `serve`
        if raw in columns:
            parts.append(f"contains(lower({raw}), $address)")
    if "_dlt_parent_id" in columns:
        parent = name.rsplit("__", 1)[0] + '"'
        parent_condition = _condition(parent, tables.get(parent, set()), tables) if parent in tables else None
        if parent_condition:
            parts.append(f"_dlt_parent_id IN (SELECT _dlt_id FROM {parent} WHERE {parent_condition})")
    return " OR ".join(f"({part})" for part in parts) or None


def _response_ids(store: StagingStore, tables: dict[str, set[str]], forms: list[str], address: str) -> list[str]:
    """The person's responses: staged under their address, or quarantined with it in the raw payload."""
    ids: set[str] = set()
    params: dict[str, object]
    for name in tables:
        if name.endswith(f'."{RESPONSES}"'):
            where, params = "list_contains($forms, lower(email))", {"forms": forms}
        elif name.endswith(f'."{QUARANTINE}"'):
            where, params = "contains(lower(raw), $address)", {"address": address}
        else:
            continue
        rows = store.connection.execute(f"SELECT DISTINCT response_id FROM {name} WHERE {where}", params).fetchall()
        ids.update(str(row[0]) for row in rows if row[0] is not None)
    return sorted(ids)


def _rows(store: StagingStore, verb: str, name: str, where: str, params: dict[str, object]) -> int:
    """Count or delete the rows of `name` matching `where` (which names some of `params`)."""
    used = {key: value for key, value in params.items() if f"${key}" in where}
    (count,) = store.connection.execute(f"{verb} {name} WHERE {where}", used).fetchone() or (0,)
    return int(count)


def _drop_pending_packages(settings: RunSettings) -> int:
    """Step 3: load packages a killed run left in dlt's working folder (stage and push pipelines)."""
    dropped = 0
    for name in (settings.pipeline_name, f"{settings.pipeline_name}_push"):
        pipeline = dlt.pipeline(pipeline_name=name, pipelines_dir=settings.pipelines_dir)
        pending = len(pipeline.list_extracted_load_packages()) + len(pipeline.list_normalized_load_packages())
        if pending:
            pipeline.drop_pending_packages()
            dropped += pending
    return dropped


def _report(person: Person, verdict: str, exports: str) -> str:
    staged = ", ".join(f"{name.replace(chr(34), '')} {count}" for name, count in person.staging.items() if count) or "nothing"
    ledger = ", ".join(f"{name} {count}" for name, count in person.ledger.items() if count) or "nothing"
    return "\n".join(
        [
            f"forget {person.label}: {verdict}",
            f"  responses: {len(person.response_ids)}",
            f"  staging: {staged}",
            f"  ledger: {ledger}",
            f"  exports: {exports}",
        ]
    )
