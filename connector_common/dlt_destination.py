"""dlt destinations whose configuration is resolved once per destination object, not ~40 times.

dlt asks a destination for its capabilities about 25 times per pipeline run (the pipeline, the
normalizer, the loader) and for a job client about 15 times (state sync, schema sync, the loader's
jobs). Each capability lookup without a config, and each client, resolves the destination's whole
configuration from the providers again (env vars, `.dlt/*.toml`, every section path; for DuckDB
also a query on the handed-over connection for its file path): together more than a quarter of
the CPU of a small stage-and-push run (bench/run_cost.py).

`resolved_once` keeps what the first resolution of each kind gave:
- capabilities: the first partial resolution is handed in explicitly afterwards, which is the path
  dlt itself takes once it has a config, so every caller still gets fresh capabilities from dlt;
- clients: a client's initial config holds plain values only (dataset and schema names, flags).
  For the same values, a resolved config is filled in place from a copy of the first one, as
  dlt's resolver fills it (dlt's `copy()` gives DuckDB credentials their own connection pool over
  the same connection, as a fresh resolution does). Any other initial config goes to dlt.

A destination object lives for one pipeline of one run, in which the environment and the `.dlt`
files do not change. dlt's load threads may ask at the same time: the first resolution is locked.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Any, TypeVar

from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.destination import Destination

D = TypeVar("D", bound=Destination[Any, Any])
_PARTIAL = "_partially_resolved_configuration"
_RESOLVED = "_resolved_client_configurations"  # [(type and plain values of the initial config, resolved config)]
PLAIN = (str, int, float, bool, type(None))
_FIRST = threading.Lock()


class _ResolvedOnce(Destination[Any, Any]):
    """Mixin over a dlt destination factory class (see `resolved_once`)."""

    def configuration(self, initial_config: Any, accept_partial: bool = False) -> Any:
        if accept_partial:  # dlt resolves partially only for capabilities() without a config
            config = super().configuration(initial_config, accept_partial=True)
            self.__dict__.setdefault(_PARTIAL, config)
            return config
        key = _plain_values(initial_config)
        if key is None:
            return super().configuration(initial_config)
        with _FIRST:
            kept = self.__dict__.setdefault(_RESOLVED, [])
            resolved = next((config for values, config in kept if values == key), None)
            if resolved is None:
                config = super().configuration(initial_config)
                kept.append((key, config.copy()))
                return config
        return _fill(initial_config, resolved)

    def capabilities(self, config: Any = None, naming: Any = None) -> Any:
        return super().capabilities(config if config is not None else self.__dict__.get(_PARTIAL), naming)


def _plain_values(config: Any) -> tuple[type, tuple[tuple[str, Any], ...]] | None:
    """The type and field values of an unresolved initial config made of plain values only; None otherwise."""
    if not isinstance(config, BaseConfiguration) or config.is_resolved():
        return None
    values = tuple(dict(config).items())
    return (type(config), values) if all(type(value) in PLAIN for _, value in values) else None


def _fill(initial_config: Any, resolved: Any) -> Any:
    """`initial_config` resolved in place with a copy of `resolved`'s values, as dlt's resolver leaves it."""
    copied = resolved.copy()
    for field in dataclasses.fields(copied):
        if hasattr(copied, field.name):
            object.__setattr__(initial_config, field.name, getattr(copied, field.name))
    return initial_config


@functools.cache
def _subclass(factory: type) -> type:
    """The factory class with `_ResolvedOnce` in front, under the factory's own module and name:
    dlt derives the destination type from them (configuration sections, the pipeline's stored
    state, `dlt pipeline ... info`), so it sees its own destination."""
    names = {"__module__": factory.__module__, "__qualname__": factory.__qualname__}
    return type(factory.__name__, (_ResolvedOnce, factory), names)


def resolved_once(destination: D) -> D:
    """`destination`, resolving its configuration for capabilities and for each kind of client
    once rather than per call."""
    destination.__class__ = _subclass(type(destination))
    return destination
