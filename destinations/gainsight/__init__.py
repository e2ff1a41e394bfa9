"""Gainsight CS destination: Companies, People, the NPS response object and Timeline activities.

`Pusher` runs the push of one outbox; `gainsight(pusher)` is the dlt destination feeding it;
`read_outbox` computes what to push from staging and the ledger; `load_settings` resolves
`[destination.gainsight]` (env `DESTINATION__GAINSIGHT__*`).
"""

from .destination import gainsight
from .errors import (
    GainsightCredentialsRejected,
    GainsightError,
    GainsightRejected,
    GainsightSettingError,
    GainsightUnavailable,
)
from .push import Pusher
from .report import PushReport
from .settings import GainsightSettings, load_settings
from .store import read_outbox

__all__ = [
    "GainsightCredentialsRejected",
    "GainsightError",
    "GainsightRejected",
    "GainsightSettingError",
    "GainsightSettings",
    "GainsightUnavailable",
    "PushReport",
    "Pusher",
    "gainsight",
    "load_settings",
    "read_outbox",
]
