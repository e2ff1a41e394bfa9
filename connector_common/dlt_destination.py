"""dlt destinations whose configuration is resolved once per destination object, not ~25 times.

dlt asks a destination for its capabilities about 25 times per pipeline run (the pipeline, the
normalizer, the loader). Each call without a config resolves the destination's whole configuration
from the providers again (env vars, `.dlt/*.toml`, every section path); for DuckDB that also opens a
cursor on the handed-over connection to query its file path. It was about a quarter of the CPU of a
small stage-and-push run (bench/run_cost.py). `resolved_once` keeps the configuration that first
call resolved and hands it in explicitly afterwards, which is the path dlt itself takes once it has
a config, so every caller still gets fresh capabilities built by dlt. A destination object lives
for one pipeline of one run, in which the environment and the `.dlt` files do not change.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from dlt.common.destination import Destination

D = TypeVar("D", bound=Destination[Any, Any])
_PARTIAL = "_partially_resolved_configuration"


class _ResolvedOnce(Destination[Any, Any]):
    """Mixin over a dlt destination factory class (see `resolved_once`)."""

    def configuration(self, initial_config: Any, accept_partial: bool = False) -> Any:
        config = super().configuration(initial_config, accept_partial=accept_partial)
        if accept_partial:  # dlt resolves partially only for capabilities() without a config
            self.__dict__.setdefault(_PARTIAL, config)
        return config

    def capabilities(self, config: Any = None, naming: Any = None) -> Any:
        return super().capabilities(config if config is not None else self.__dict__.get(_PARTIAL), naming)


@functools.cache
def _subclass(factory: type) -> type:
    """The factory class with `_ResolvedOnce` in front, under the factory's own module and name:
    dlt derives the destination type from them (configuration sections, the pipeline's stored
    state, `dlt pipeline ... info`), so it sees its own destination."""
    names = {"__module__": factory.__module__, "__qualname__": factory.__qualname__}
    return type(factory.__name__, (_ResolvedOnce, factory), names)


def resolved_once(destination: D) -> D:
    """`destination`, resolving its configuration for capabilities once rather than per call."""
    destination.__class__ = _subclass(type(destination))
    return destination
