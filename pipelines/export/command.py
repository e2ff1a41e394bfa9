"""`export-csv`: the survey-import CSV of the staged responses, for a Gainsight "Load to Survey" rule.

Reads staging and the ledger's Company ids; calls neither vendor. It takes the same lock as the
run (it opens the DuckDB file read-write, because it books what it exported): while a run holds the
file it exits 4 at once and changes nothing, and the next scheduled export catches up, since what
is due is computed from the export state, not from the clock. Run it after the run (README
"Survey CSV export").

One export = select the due responses, write them to a temp file, rename it to its final name,
then book them. A stop (SIGINT/SIGTERM) before the rename abandons the file; a kill -9 anywhere
before the booking leaves the state as it was, so the next export writes the same rows again (and
removes the abandoned temp file). Delivery is therefore at least once: a kill after the rename and
before the booking repeats rows in the next file, under the same `response_id`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path

import duckdb

from connector_common.stop import STOP, StopRequested, stop_on_signals
from pipelines.errors import ConfigError, ExitCode, StagingFailed, exit_code_for
from pipelines.settings import RunSettings
from pipelines.staging import StagingStore, require_staging_file

from .columns import HEADER
from .csv_file import remove_leftovers, write_atomically
from .state import ExportFile, Selection, book, ensure_state, has_responses, selected_rows

log = logging.getLogger("nps.export")

FILE_STEM = "nps_responses"


@dataclass(frozen=True)
class ExportResult:
    path: Path | None  # None: nothing was due, no file written
    rows: int


def run_export(settings: RunSettings, out: Path, selection: Selection) -> ExitCode:
    """The verb: export, print one line for the scheduler, return the exit code (raises CommandError
    for configuration problems and a held lock)."""
    folder = _out_folder(out)
    require_staging_file(settings.duckdb_path)
    with stop_on_signals():
        store = StagingStore.open(settings.duckdb_path, settings.dataset_name, settings.duckdb_memory_limit, "export-csv")
        try:
            result = export(store, folder, selection, settings.export.formula_guard)
        except StopRequested as stop:
            log.warning("export stopped by %s before its file was published; nothing was booked", stop.signal_name)
            print(f"export-csv: stopped by {stop.signal_name}; no file published, the next export writes these rows")
            return exit_code_for(stop)
        except (OSError, duckdb.IOException, duckdb.TransactionException) as exc:
            raise StagingFailed(f"the CSV export failed writing locally (nothing was booked): {exc}") from None
        finally:
            store.close()
    if result.path is None:
        print(f"export-csv: no {selection.mode} rows to export; no file written")
    else:
        print(f"export-csv: wrote {result.rows:,} response(s) to {result.path}")
    return ExitCode.OK


def export(store: StagingStore, folder: Path, selection: Selection, formula_guard: bool) -> ExportResult:
    """Write the selected responses to a new file in `folder` and book them; see the module docstring."""
    db = store.connection
    ensure_state(db)
    leftovers = remove_leftovers(folder, FILE_STEM)
    if leftovers:
        log.info("removed %d temp file(s) an interrupted export left in %s", leftovers, folder)
    if not has_responses(db, store.dataset):
        log.info("export-csv: nothing staged yet; no file written")
        return ExportResult(None, 0)
    batches = selected_rows(db, store.dataset, selection, formula_guard)
    first = next(batches, [])
    if not first:
        log.info("export-csv (%s): no responses due; no file written", selection.mode)
        return ExportResult(None, 0)
    written_at = datetime.now(timezone.utc)
    path = _free_name(folder, written_at)
    STOP.enter("the CSV export")
    rows = write_atomically(path, HEADER, _batches(first, batches), before_publish=STOP.check)
    export_file = ExportFile(written_at.strftime("%Y%m%dT%H%M%S.%fZ"), path.resolve(), formula_guard)
    book(db, store.dataset, selection, export_file, rows, written_at)
    log.info(
        "export-csv (%s%s): wrote %d response(s) to %s (formula guard %s)",
        selection.mode,
        _range(selection),
        rows,
        path,
        "on" if formula_guard else "off",
    )
    return ExportResult(path, rows)


def _batches(first: list[tuple[str, ...]], rest: Iterator[list[tuple[str, ...]]]) -> Iterator[list[tuple[str, ...]]]:
    """The file's rows in batches; a stop asked for is honoured between them."""
    for batch in chain([first], rest):
        STOP.check()
        yield batch


def _out_folder(out: Path) -> Path:
    """`--out` must be an existing folder: creating one from a mistyped path would hide the files."""
    folder = out.expanduser()
    if not folder.is_dir():
        raise ConfigError(f"--out {out}: no such folder (create it first; the export never creates it)")
    return folder.resolve()


def _free_name(folder: Path, written_at: datetime) -> Path:
    """`nps_responses_YYYYMMDDTHHMMSSZ.csv`, or `..._2.csv` ... if an export in the same second took it:
    names sort in the order the files were written, and none is ever overwritten."""
    stamp = written_at.strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{FILE_STEM}_{stamp}.csv"
    number = 1
    while path.exists():
        number += 1
        path = folder / f"{FILE_STEM}_{stamp}_{number}.csv"
    return path


def _range(selection: Selection) -> str:
    if not (selection.since or selection.until):
        return ""
    return f", responses of {selection.since or 'the first day'} to {selection.until or 'today'}"
