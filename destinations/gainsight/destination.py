"""The dlt custom destination that hands outbox load files to the pusher.

Configured for Bulk-sized work (DESIGN §8): `batch_size=0` gives the sink one whole load file
instead of dlt's default 10 rows, and `sequential` loading keeps one writer against Gainsight's
quotas. The sink reads the file as Arrow (dlt writes parquet for Arrow input); it also accepts
record batches, should someone configure a batch size.

Failures of the push are not raised into dlt: dlt would retry the job 5 times a second apart and
then park the package. The pusher keeps the ledger exact after every batch, so the sink records
the error and the command reports it; the next run recomputes the outbox from the ledger. A stop
asked for by a signal travels the same way, so dlt's worker thread is done before the run ends.
"""

from __future__ import annotations

from typing import Any

import dlt
import pyarrow as pa
import pyarrow.parquet as pq
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import DestinationTerminalException

from connector_common.stop import StopRequested

from .errors import GainsightError, GainsightSettingError, LocalWriteFailed
from .push import Pusher

# The push this process is running. The sink is a module-level function so that dlt can re-create
# the destination by reference (`dlt pipeline nps_to_gainsight_push info`, `dlt.attach`) in a
# process that runs no push; the pusher, an object with a live client and ledger, reaches it here.
_active: dict[str, Pusher] = {}


def gainsight(pusher: Pusher) -> Destination:
    """A dlt destination delivering into Gainsight through `pusher` (the run's one push)."""
    _active["pusher"] = pusher
    return gainsight_outbox()


@dlt.destination(
    name="gainsight",
    batch_size=0,
    loader_file_format="parquet",
    loader_parallelism_strategy="sequential",
    naming_convention="direct",
    skip_dlt_columns_and_tables=True,
)
def gainsight_outbox(items: Any, table: dict[str, Any]) -> None:
    pusher = _active.get("pusher")
    if pusher is None:
        raise DestinationTerminalException(
            "the Gainsight push runs only inside `python pipelines/nps_to_gainsight.py`, which computes "
            "the outbox from the ledger; dlt's own `load` cannot deliver it"
        )
    if pusher.failure is not None:
        return  # a fatal error earlier in this load: the command reports it
    try:
        pusher.deliver(_as_table(items))
    except (GainsightError, GainsightSettingError, LocalWriteFailed, StopRequested) as exc:
        pusher.failure = exc  # a full disk under the ledger arrives as LocalWriteFailed (store.py)


def _as_table(items: Any) -> pa.Table:
    if isinstance(items, str):
        return pq.read_table(items, use_threads=False, pre_buffer=False)
    if isinstance(items, pa.RecordBatch):
        return pa.Table.from_batches([items])
    if isinstance(items, pa.Table):
        return items
    return pa.Table.from_pylist(list(items))
