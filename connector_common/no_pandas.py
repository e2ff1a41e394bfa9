"""Answer "not installed" for pandas at once, instead of after a walk of every `sys.path` entry.

The connector does not install pandas, but DuckDB looks for it on every statement with parameters
and dlt's DuckDB connection pool on every connection it configures (to convert DataFrames): about
150 failed imports per small run, each a full `sys.path` search (~0.1 ms), and a parameterised
DuckDB statement costs ~0.7 ms instead of ~0.55 ms. `sys.modules["pandas"] = None` would be
cheaper still but breaks pyarrow, which tells "not installed" from "blocked" apart. A finder at
the front of `sys.meta_path` raises the same `ModuleNotFoundError` the import system would.

Only when pandas really is not installed (checked once, with the ordinary finders): an environment
that has it imports it as usual.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

NAME = "pandas"


class PandasNotInstalled:
    """A meta path finder that fails the import of pandas (and its submodules) immediately."""

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name == NAME or name.startswith(NAME + "."):
            raise ModuleNotFoundError(f"No module named {NAME!r}", name=NAME)
        return None


def install() -> None:
    """Put the finder in front when pandas is not installed; idempotent."""
    if PandasNotInstalled in sys.meta_path or NAME in sys.modules or importlib.util.find_spec(NAME) is not None:
        return
    sys.meta_path.insert(0, PandasNotInstalled)
