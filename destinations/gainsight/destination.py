"""The dlt custom destination that hands outbox load files to the pusher.

Configured for Bulk-sized work (DESIGN §8): `batch_size=0` gives the sink one whole load file
instead of dlt's default 10 rows (its path: DuckDB reads it, never the
Python heap), and `sequential` loading keeps one writer against Gainsight's
quotas. The sink reads the file as Arrow (dlt writes parquet for Arrow input); it also accepts
record batches, should someone configure a batch size.

A failed push is raised into dlt as a `DestinationTerminalException` (its cause: the Gainsight,
settings, disk or stop error): dlt then neither retries the job (the client already retried what
can be retried) nor records the package as loaded. It stays pending, and the next run delivers it
again before a fresh outbox; the ledger, exact after every batch, drops what is confirmed or
given up since (`still_pending`), so nothing is sent twice. The command unwraps the cause for its
exit code (`pipelines/push.py`).
"""

from __future__ import annotations

from typing import Any

import dlt
import pyarrow as pa
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import DestinationTerminalException
from dlt.common.schema import TTableSchema

from connector_common.dlt_destination import resolved_once

from .push import Pusher

# The push this process is running. The sink is a module-level function so that dlt can re-create
# the destination by reference (`dlt pipeline nps_to_gainsight_push info`, `dlt.attach`) in a
# process that runs no push; the pusher, an object with a live client and ledger, reaches it here.
_active: dict[str, Pusher] = {}


def gainsight(pusher: Pusher) -> Destination:
    """A dlt destination delivering into Gainsight through `pusher` (the run's one push); its
    configuration resolved once, not for each of dlt's capability lookups (connector_common.dlt_destination)."""
    _active["pusher"] = pusher
    return resolved_once(gainsight_outbox())


@dlt.destination(
    name="gainsight",
    batch_size=0,
    loader_file_format="parquet",
    loader_parallelism_strategy="sequential",
    naming_convention="direct",
    skip_dlt_columns_and_tables=True,
)
def gainsight_outbox(items: Any, table: TTableSchema) -> None:
    pusher = _active.get("pusher")
    if pusher is None:
        raise DestinationTerminalException(
            "the Gainsight push runs only inside `python pipelines/nps_to_gainsight.py`, which computes "
            "the outbox from the ledger; dlt's own `load` cannot deliver it"
        )
    try:
        pusher.deliver(items if isinstance(items, str) else _as_table(items))
    except Exception as exc:  # a full disk under the ledger arrives as LocalWriteFailed (store.py)
        raise DestinationTerminalException(f"the Gainsight push stopped: {exc}") from exc


def _as_table(items: Any) -> pa.Table:
    if isinstance(items, pa.RecordBatch):
        return pa.Table.from_batches([items])
    if isinstance(items, pa.Table):
        return items
    return pa.Table.from_pylist(list(items))
