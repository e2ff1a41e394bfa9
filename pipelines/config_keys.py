"""Unknown keys in the connector's config sections are errors, with the closest known key suggested.

dlt reads a key only when code asks for it, so `lookback_day = 7` or
`SOURCES__CUSTOMERGAUGE__LOOKBAK_DAYS=7` is silently ignored and the default is used: the run looks
healthy and does something else than the operator asked. The scheduled run and `check` therefore
refuse unknown keys under the sections the connector owns. dlt's own sections (runtime, load,
normalize, data_writer, ...) are left to dlt.

Where known keys come from (the one place to add a key is its settings definition):
- `sources.customergauge`: the parameters of the `customergauge()` source, and
  `property_map.*` from `DEFAULT_PROPERTY_MAP` (derived from `connector_common/schema.py`);
- `destination.gainsight`: the fields of the `GainsightSettings` configspec (nested specs such as
  `quotas` and `response_fields`, one key per canonical column of `connector_common/schema.py`,
  become subsections), plus the fields dlt's own custom destination configuration reads from that
  section;
- `destination.duckdb`: the fields of dlt's DuckDB client configuration;
- `nps_to_gainsight`: the fields of `RunSettings` (nested dataclasses become subsections), and
  `OTHER_KEYS` in `pipelines/settings.py` for keys read before `RunSettings` exists;
  `nps_to_gainsight.serve`: the fields of `ServeSettings` (pipelines/serve/settings.py).
"""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Union

from dlt.destinations.impl.destination.configuration import CustomDestinationClientConfiguration
from dlt.destinations.impl.duckdb.configuration import DuckDbClientConfiguration

from destinations.gainsight.settings import GainsightSettings
from sources.customergauge import customergauge
from sources.customergauge.settings import DEFAULT_PROPERTY_MAP

if sys.version_info >= (3, 11):
    import tomllib
else:  # tomllib is standard library from 3.11; tomli is the same parser for 3.10
    import tomli as tomllib

from .errors import ConfigError
from .serve.settings import ServeSettings
from .settings import OTHER_KEYS, RunSettings

ANY = "any"  # a key whose value may be a table of its own, read by dlt (e.g. DuckDB credentials)
Tree = dict[str, Union[None, str, "Tree"]]  # key -> None (a value) | ANY | subsection

# Source parameters the command passes itself; they are not configuration.
_SOURCE_RUNTIME_ONLY = frozenset({"report", "backfill_start", "backfill_end", "load_in_parts"})
CONFIG_FILES = ("config.toml", "secrets.toml")
# dlt injects a source's dict parameter (property_map) whole: from its TOML table or from one env
# var holding JSON. An env var per entry is never read, so it is refused like a typo.
WHOLE_TABLES_IN_ENV = frozenset({"sources.customergauge"})
# Every secret the connector reads: from .dlt/secrets.toml or the environment only (dlt reads no
# secret from config.toml, so one left there would be ignored or fail later with a vaguer message),
# and redacted from every log line.
SECRET_KEYS = (
    "sources.customergauge.client_secret",
    "sources.customergauge.client_id",
    "destination.gainsight.access_key",
    "destination.gainsight.client_id",
    "destination.gainsight.client_secret",
    "destination.gainsight.bulk_access_key",
    "nps_to_gainsight.serve.webhook_secret",
    "nps_to_gainsight.pii.hash_salt",
)


def known_keys() -> dict[str, Tree]:
    """Owned section (dotted) -> the keys it may hold, derived from the settings definitions."""
    source: Tree = {
        name: None for name in inspect.signature(customergauge).parameters if name not in _SOURCE_RUNTIME_ONLY
    }
    source["property_map"] = {column: None for column in DEFAULT_PROPERTY_MAP}
    gainsight: Tree = {name: None for name in CustomDestinationClientConfiguration.get_resolvable_fields()}
    gainsight.update(dataclass_keys(GainsightSettings))
    duckdb: Tree = {name: None for name in DuckDbClientConfiguration.get_resolvable_fields()}
    duckdb["credentials"] = ANY
    return {
        "sources.customergauge": source,
        "destination.gainsight": gainsight,
        "destination.duckdb": duckdb,
        "nps_to_gainsight": {
            **dataclass_keys(RunSettings),
            **{key: None for key in OTHER_KEYS},
            "serve": dataclass_keys(ServeSettings),
        },
    }


def dataclass_keys(spec: type) -> Tree:
    """A settings dataclass or dlt configspec as keys: nested ones and mappings (by their default)
    are subsections. A configspec's bookkeeping fields (`__is_resolved__`, ...) are not keys."""
    tree: Tree = {}
    for spec_field in fields(spec):
        if spec_field.name.startswith("__"):
            continue
        default: Any = spec_field.default
        if spec_field.default_factory is not MISSING:
            default = spec_field.default_factory()
        if is_dataclass(default):
            tree[spec_field.name] = dataclass_keys(type(default))
        elif isinstance(default, Mapping) and default:
            tree[spec_field.name] = {str(key): None for key in default}
        else:
            tree[spec_field.name] = None
    return tree


@dataclass(frozen=True)
class UnknownKey:
    """One key nobody reads, where it was found, and the known key it most likely meant."""

    where: str  # ".dlt/config.toml", ".dlt/secrets.toml" or "environment"
    name: str  # as the operator wrote it: a dotted key or an env var name
    suggestion: str | None

    def __str__(self) -> str:
        hint = f": did you mean {self.suggestion}?" if self.suggestion else ": no such setting (see README, Configuration)"
        return f"unknown {'variable' if self.where == 'environment' else 'key'} {self.name} in {self.where}{hint}"


def unknown_keys(settings_dir: Path, environ: Mapping[str, str]) -> list[UnknownKey]:
    """Every unknown key in the project's .dlt files and in the connector's env var namespace."""
    known = known_keys()
    found: list[UnknownKey] = []
    for file_name in CONFIG_FILES:
        path = settings_dir / file_name
        if not path.is_file():
            continue
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        for section, tree in known.items():
            table = _table(document, section.split("."))
            if isinstance(table, dict):
                for key in _unknown(table, tree):
                    found.append(UnknownKey(f".dlt/{file_name}", f"{section}.{key}", _suggest_key(section, key, known)))
    prefixes = {_env(section) + "__": section for section in known}
    for name in sorted(environ):
        matched = next((s for prefix, s in prefixes.items() if name.upper().startswith(prefix)), None)
        if matched is None:
            continue
        section = matched
        key = name[len(_env(section)) + 2 :].lower().replace("__", ".")
        if section in WHOLE_TABLES_IN_ENV and "." in key and key.split(".")[0] in known[section]:
            table = _env(f"{section}.{key.split('.')[0]}")
            found.append(UnknownKey("environment", name, f"{table} set to a JSON object such as {{\"account_id\": \"Customer No\"}}"))
        elif key and _unknown(_nest(key), known[section]):
            suggestion = _suggest_key(section, key, known)
            found.append(UnknownKey("environment", name, _env(suggestion) if suggestion else None))
    return found


def misplaced_secrets(settings_dir: Path) -> list[str]:
    """A problem line for each secret set in .dlt/config.toml (its value never shown)."""
    path = settings_dir / "config.toml"
    if not path.is_file():
        return []
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return [
        f"secret found in .dlt/config.toml: {key}: move it to .dlt/secrets.toml or env {_env(key)}"
        for key in SECRET_KEYS
        if _table(document, key.split(".")) is not None
    ]


def require_known_keys(settings_dir: Path, environ: Mapping[str, str]) -> None:
    """Raise a ConfigError listing every unknown key and misplaced secret (every verb's gate)."""
    found = [str(problem) for problem in unknown_keys(settings_dir, environ)] + misplaced_secrets(settings_dir)
    if found:
        raise ConfigError("configuration to fix:\n" + "\n".join(f"  {problem}" for problem in found))


def _table(document: Mapping[str, Any], parts: list[str]) -> Any:
    node: Any = document
    for part in parts:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _nest(dotted: str) -> dict[str, Any]:
    """"a.b.c" -> {"a": {"b": {"c": None}}}, the shape TOML gives the same key."""
    tree: Any = None
    for part in reversed(dotted.split(".")):
        tree = {part: tree}
    return tree


def _unknown(table: Mapping[str, Any], tree: Tree, prefix: str = "") -> list[str]:
    """Dotted keys of `table` that `tree` does not know."""
    unknown = []
    for key, value in table.items():
        if key not in tree:
            unknown.append(prefix + key)
        elif isinstance(subtree := tree[key], dict) and isinstance(value, Mapping):
            unknown += _unknown(value, subtree, f"{prefix}{key}.")
    return unknown


def _paths(tree: Tree, prefix: str = "") -> list[str]:
    paths = []
    for key, sub in tree.items():
        paths.append(prefix + key)
        if isinstance(sub, dict):
            paths += _paths(sub, f"{prefix}{key}.")
    return paths


def _suggest_key(section: str, key: str, known: Mapping[str, Tree]) -> str | None:
    """The closest known full key: in the same section first, then the same name elsewhere."""
    close = difflib.get_close_matches(key, _paths(known[section]), n=1, cutoff=0.6)
    if close:
        return f"{section}.{close[0]}"
    name = key.split(".")[-1]
    for other, tree in known.items():
        for path in _paths(tree):
            if path.split(".")[-1] == name:
                return f"{other}.{path}"
    return None


def _env(dotted: str) -> str:
    return "__".join(part.upper() for part in dotted.split("."))
