"""Erase a person from the CSV exports: the export state and every export file still on disk.

Called by `forget --email` (the PII controls) with the run lock held. The order makes a repeat
finish what a killed call began: first the person's responses are found (ids given, staged ones
with the e-mail, and rows of the files whose id or e-mail cell matches), then their export-state
rows are deleted and committed, then each file holding them is rewritten atomically without them
(csv_file.write_atomically: same name, every other row byte for byte as it was). Files a pick-up
job already moved away are out of reach and counted, so the operator can be told where to look.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.errors import StagingFailed

from .columns import EMAIL_COLUMN, RESPONSE_ID_COLUMN
from .csv_file import read_rows, unguarded, write_atomically
from .state import ExportFile, export_files, exported_count, forget_exported, has_state, recount, staged_response_ids

log = logging.getLogger("nps.export")


@dataclass(frozen=True)
class ErasedFromExports:
    state_rows: int  # export-state rows dropped (responses recorded as exported)
    files_rewritten: tuple[Path, ...]  # files rewritten without the person's rows (dry run: would be)
    rows_removed: int  # CSV rows removed from those files
    files_missing: int  # files the export wrote that no longer exist: out of reach


def erase_person(
    db: duckdb.DuckDBPyConnection,
    dataset: str,
    email: str,
    response_ids: Iterable[str] = (),
    dry_run: bool = False,
) -> ErasedFromExports:
    """Remove the person with `email` (trimmed, case-insensitive) from the export state and from
    every export file still present; `dry_run` counts without changing anything. `db` is the
    staging file's read-write connection (the caller holds the run lock); `response_ids` are ids
    the caller knows are the person's. Erase the person's staged rows in the same session, or the
    next export writes them again as new. Raises StagingFailed when a file cannot be read or
    rewritten, ValueError for a blank address."""
    address = email.strip().lower()
    if not address:
        raise ValueError("erase_person needs an e-mail address; a blank one would match every row without one")
    if not has_state(db):  # nothing was ever exported from this file
        return ErasedFromExports(0, (), 0, 0)
    ids = set(response_ids) | staged_response_ids(db, dataset, address)
    present: list[tuple[ExportFile, list[str], list[list[str]]]] = []
    missing = 0
    for export in export_files(db):
        if not export.path.is_file():
            missing += 1
            continue
        header, rows = _read(export.path)
        ids |= {row[RESPONSE_ID_COLUMN] for row in rows if _is_person(row, address, export.formula_guard)}
        present.append((export, header, rows))
    state_rows = exported_count(db, sorted(ids))
    if not dry_run and state_rows:
        forget_exported(db, sorted(ids))
    rewritten: list[Path] = []
    removed = 0
    for export, header, rows in present:
        kept = [row for row in rows if row[RESPONSE_ID_COLUMN] not in ids]
        if len(kept) == len(rows):
            continue
        removed += len(rows) - len(kept)
        rewritten.append(export.path)
        if not dry_run:
            _rewrite(export, header, kept)
            recount(db, export, len(kept))
    log.info(
        "%serased a person from the CSV exports: %d export-state row(s), %d row(s) in %d file(s); "
        "%d file(s) the export wrote are no longer there",
        "dry run: would have " if dry_run else "",
        state_rows,
        removed,
        len(rewritten),
        missing,
    )
    return ErasedFromExports(state_rows, tuple(rewritten), removed, missing)


def _is_person(row: list[str], address: str, formula_guard: bool) -> bool:
    cell = row[EMAIL_COLUMN] if len(row) > EMAIL_COLUMN else ""
    return (unguarded(cell) if formula_guard else cell).strip().lower() == address


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        return read_rows(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise StagingFailed(f"cannot read the export file {path} to erase a person from it: {exc}") from None


def _rewrite(export: ExportFile, header: list[str], rows: list[list[str]]) -> None:
    try:
        write_atomically(export.path, header, [rows])
    except OSError as exc:
        raise StagingFailed(f"cannot rewrite the export file {export.path} without the person's rows: {exc}") from None
