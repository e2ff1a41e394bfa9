"""Cut dlt's configuration cost per in-process run, without changing one result dlt computes.

About half the CPU of every stage or push run made in the test process went to dlt resolving its
configuration again and again rather than to the connector. Three things are kept instead of
recomputed, each only where the inputs are the same by construction:

- **Destination capabilities.** dlt asks a destination for its capabilities ~25 times per pipeline
  run (the pipeline, the loader, the normalizer). Each time without a config it resolves the
  destination's whole configuration from the providers again; for DuckDB that also queries the
  handed-over connection for its file path. Here a destination object resolves it on the first
  call, and later calls hand that configuration in explicitly: the path dlt itself takes after
  resolving, so every caller still gets fresh capabilities built by dlt. A destination object lives
  for one pipeline of one run, in which the environment and the `.dlt` files do not change.
- **Type-hint predicates.** Every config field lookup (per provider, per section path, twice when a
  pipeline is active) asks `is_secret_hint`, `extract_inner_hint` and friends about the same
  handful of type hints. They are pure functions of their arguments, so they are memoised.
- **JSON paths and dict validations.** dlt parses the same JSON paths (an incremental's cursor
  path: jsonpath_ng builds its parser tables on every parse, ~10 ms) and validates the same small
  dicts against the same TypedDicts (a stored schema each time it is loaded, the default hints and normalizer
  config each time a Schema is built) many times per run. A path's parse is kept per path string; a validation that
  passed is kept per spec, path, validators and exact content (plain dicts, lists, tuples, str,
  int, float, bool and None, compared with their types); anything else, and every failing
  validation, goes to dlt each time.
- **TOML files.** `run_main` gives each command a fresh dlt run context, which parses
  `.dlt/config.toml` again (~30 ms with tomlkit). A file's parse is kept per path and exact content
  and handed out as a new document each time (unpickled, ~1 ms), so an edited file is parsed anew.

Only the test process is changed: commands started by `run_cli`/`start_cli` (kill -9, signals, the
README-exact runs of test_defaults.py) run dlt untouched. `install()` is idempotent.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from dlt.common import jsonpath as dlt_jsonpath
from dlt.common import typing as dlt_typing
from dlt.common import validation as dlt_validation
from dlt.common.configuration.providers.toml import SettingsTomlProvider
from dlt.common.configuration.specs import base_configuration
from dlt.common.destination.reference import Destination

# (module, name) of each pure predicate memoised; the functions take type hints and flags only.
PURE_HINT_FUNCTIONS: tuple[tuple[ModuleType, str], ...] = (
    (base_configuration, "is_secret_hint"),
    (base_configuration, "extract_inner_hint"),
    (base_configuration, "is_credentials_inner_hint"),
    (base_configuration, "is_hint_not_resolvable"),
    (dlt_typing, "extract_inner_type"),
    (dlt_typing, "is_literal_type"),
    (dlt_typing, "is_union_type"),
    (dlt_typing, "is_optional_type"),
)
PLAIN = (str, int, float, bool, type(None))
VALIDATIONS_KEPT = 4096  # digests of passed validations (oldest dropped first)
_RESOLVED_CONFIG = "_tests_resolved_configuration"
_FIRST_RESOLUTION = threading.Lock()  # dlt's load threads may ask a destination at the same time


def memoised(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` with its results kept per arguments; unhashable arguments are passed through."""
    results: dict[Any, Any] = {}

    @functools.wraps(function)
    def cached(*args: Any, **kwargs: Any) -> Any:
        key = (args, tuple(sorted(kwargs.items())))
        try:
            return results[key]
        except KeyError:
            result = results[key] = function(*args, **kwargs)
            return result
        except TypeError:  # an unhashable hint (Annotated metadata may be): ask dlt every time
            return function(*args, **kwargs)

    cached.__wrapped_by_tests__ = True  # type: ignore[attr-defined]
    return cached


class Unkeyable(Exception):
    """A value whose content cannot be compared exactly by a hashable key."""


def content_key(value: Any) -> Any:
    """A hashable key equal only for values of the same types and contents (a tuple is not a list)."""
    kind = type(value)
    if kind in PLAIN:
        return (kind, value)
    if kind is dict:
        return (dict, tuple((content_key(k), content_key(v)) for k, v in value.items()))
    if kind is list or kind is tuple:
        return (kind, tuple(content_key(v) for v in value))
    raise Unkeyable(kind)


def validated_once(validate: Callable[..., None]) -> Callable[..., None]:
    """A dlt dict validation remembering what passed; it only reads `doc`, and raises or not.

    What passed is kept as a digest of the exact content (`content_key`), so a whole stored schema
    costs 32 bytes rather than its size; an invalid doc is never kept and raises every time."""
    passed: dict[tuple[Any, ...], None] = {}

    @functools.wraps(validate)
    def validated(spec: Any, doc: Any, path: str, *more: Any, **options: Any) -> None:
        if any(getattr(given, "__closure__", None) for given in (*more, *options.values())):
            validate(spec, doc, path, *more, **options)  # a validator made per call never repeats
            return
        try:
            content = hashlib.blake2b(repr(content_key(doc)).encode(), digest_size=32).digest()
        except Unkeyable:
            validate(spec, doc, path, *more, **options)
            return
        key = (spec, path, more, tuple(sorted(options.items())), content)
        if key not in passed:
            validate(spec, doc, path, *more, **options)
            passed[key] = None
            if len(passed) > VALIDATIONS_KEPT:
                del passed[next(iter(passed))]

    return validated


def rebind(module: ModuleType, name: str, replacement: Callable[..., Any]) -> None:
    """Replace `module.name` and every dlt module's imported copy of it."""
    original = getattr(module, name)
    for loaded in list(sys.modules.values()):
        if loaded is not None and getattr(loaded, "__name__", "").startswith("dlt") and loaded.__dict__.get(name) is original:
            setattr(loaded, name, replacement)


def capabilities_resolved_once(original: Callable[..., Any]) -> Callable[..., Any]:
    """`Destination.capabilities` resolving the destination's configuration once per destination object.

    Without a config, dlt builds a mock-credentials config, resolves it from the providers
    (`Destination.configuration(..., accept_partial=True)`) and adjusts fresh capabilities to it. The
    first such call records the configuration it resolved; later calls hand that configuration in
    explicitly, which is the very path dlt takes after resolving, so each caller still gets fresh
    capabilities built by dlt.
    """

    @functools.wraps(original)
    def capabilities(self: Destination[Any, Any], config: Any = None, naming: Any = None) -> Any:
        if config is not None:
            return original(self, config, naming)
        if (resolved := self.__dict__.get(_RESOLVED_CONFIG)) is not None:
            return original(self, resolved, naming)
        with _FIRST_RESOLUTION:
            return first_resolution(self, naming)

    def first_resolution(self: Destination[Any, Any], naming: Any) -> Any:
        seen: list[Any] = []
        resolve, caller = self.configuration, threading.get_ident()

        def recording(initial_config: Any, accept_partial: bool = False) -> Any:
            resolved = resolve(initial_config, accept_partial=accept_partial)
            if accept_partial and threading.get_ident() == caller:
                seen.append(resolved)
            return resolved

        self.__dict__["configuration"] = recording
        try:
            answer = original(self, None, naming)
        finally:
            del self.__dict__["configuration"]
        # Kept only if this call resolved exactly once (dlt falls back to the unresolved config when
        # resolving fails); another thread's `configuration` calls meanwhile are passed through.
        if len(seen) == 1:
            self.__dict__[_RESOLVED_CONFIG] = seen[0]
        return answer

    capabilities.__wrapped_by_tests__ = True  # type: ignore[attr-defined]
    return capabilities


def toml_parsed_once(original: Callable[..., Any]) -> Callable[..., Any]:
    """`SettingsTomlProvider._read_toml_file` parsing each (path, content) once."""
    parsed: dict[tuple[str, bytes], bytes] = {}

    @functools.wraps(original)
    def read_toml_file(self: SettingsTomlProvider, toml_path: str) -> Any:
        if not os.path.isfile(toml_path):
            return original(self, toml_path)
        with open(toml_path, "rb") as file:
            key = (toml_path, file.read())
        if key not in parsed:
            document = original(self, toml_path)  # a file that is not valid TOML raises here, every time
            parsed[key] = pickle.dumps(document)
            return document
        return pickle.loads(parsed[key])

    return read_toml_file


def install() -> None:
    if getattr(Destination.capabilities, "__wrapped_by_tests__", False):
        return
    Destination.capabilities = capabilities_resolved_once(Destination.capabilities)  # type: ignore[method-assign]
    SettingsTomlProvider._read_toml_file = toml_parsed_once(SettingsTomlProvider._read_toml_file)  # type: ignore[method-assign]
    for module, name in PURE_HINT_FUNCTIONS:
        rebind(module, name, memoised(getattr(module, name)))
    rebind(dlt_jsonpath, "compile_path", memoised(dlt_jsonpath.compile_path))
    rebind(dlt_validation, "validate_dict", validated_once(dlt_validation.validate_dict))
    # a partial of the original validate_dict: every stored schema dlt loads goes through it
    rebind(dlt_validation, "validate_dict_ignoring_xkeys", validated_once(dlt_validation.validate_dict_ignoring_xkeys))
