"""The survey-import CSV export (`export-csv`) and erasing a person from what it wrote.

Modules: `columns` (the header and where each value comes from), `csv_file` (dialect, formula
guard, atomic write), `state` (every SQL statement on the export state), `command` (the verb),
`erase` (`erase_person`, for `forget --email`). README "Survey CSV export" documents the file.
"""

from .command import ExportResult, export, run_export
from .erase import ErasedFromExports, erase_person
from .state import Selection

__all__ = ["ErasedFromExports", "ExportResult", "Selection", "erase_person", "export", "run_export"]
