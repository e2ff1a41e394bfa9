"""Emulator-only fault injection: a thread-safe plan of faults the sandbox server applies before routing.

Faults exist so tests can prove the client survives what real networks and real vendors do (rate
limits, 5xx, dropped connections, slow responses, tokens that expire mid-run) deterministically,
on exactly the Nth matching request, instead of hoping a flaky condition occurs.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from email.utils import formatdate
from typing import Literal

FaultKind = Literal["status", "result_false", "drop", "delay", "revoke_tokens"]
FAULT_KINDS: frozenset[str] = frozenset({"status", "result_false", "drop", "delay", "revoke_tokens"})


@dataclass(frozen=True)
class Fault:
    """One planned fault.

    - ``path``: prefix the request path must start with; ``None`` matches every API path.
    - ``kind``: ``"status"`` answers with ``status`` instead of routing; ``"drop"`` closes the TCP
      connection without a single response byte (the client sees a connection error); ``"delay"``
      handles the request on arrival and sends the normal response ``delay`` seconds later (a slow
      server: auth is checked at arrival); ``"revoke_tokens"`` invalidates every issued
      token just before the request is authenticated (token expiry mid-run, deterministically);
      ``"result_false"`` answers HTTP 200 with a body that reports failure (Gainsight's envelope with
      ``result: false``), for vendors that do that; servers list the kinds they support.
    - ``error_code``: the vendor error code a ``status`` or ``result_false`` fault reports; ``None``
      lets the server pick its usual code for that status.
    - ``retry_after``: seconds for the ``Retry-After`` header of a status fault; ``None`` sends none.
    - ``retry_after_date``: send that ``Retry-After`` as an HTTP-date (IMF-fixdate, RFC 9110
      §5.6.7) instead of delta-seconds, with the ``Date`` header it is relative to.
    - ``skip``: let this many matching requests pass untouched first.
    - ``times``: how many matching requests the fault hits before it is used up.
    """

    path: str | None = None
    kind: FaultKind = "status"
    status: int = 503
    retry_after: float | None = None
    delay: float = 0.0
    skip: int = 0
    times: int = 1
    error_code: str | None = None
    retry_after_date: bool = False

    def __post_init__(self) -> None:
        # Reject nonsense when the fault is planned, not when a request happens to hit it.
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {sorted(FAULT_KINDS)}, got {self.kind!r}")
        if self.kind == "status" and not 400 <= self.status <= 599:
            raise ValueError(f"a status fault needs a 4xx or 5xx status, got {self.status!r}")
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError(f"fault path must start with '/', got {self.path!r}")
        if self.error_code is not None and not (isinstance(self.error_code, str) and self.error_code):
            raise ValueError(f"error_code must be a non-empty string or None, got {self.error_code!r}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0 or None")
        if self.retry_after_date and self.retry_after is None:
            raise ValueError("retry_after_date needs retry_after (the seconds the date is ahead)")
        if self.delay < 0 or self.skip < 0 or self.times < 1:
            raise ValueError("delay and skip must be >= 0 and times >= 1")

    def retry_after_headers(self, now: float) -> dict[str, str]:
        """The ``Retry-After`` header of a status fault answered at epoch ``now``, in whole seconds
        rounded up so a client never retries early: delta-seconds, or an IMF-fixdate plus the
        ``Date`` it counts from (both of the same second, so the difference is exact)."""
        if self.retry_after is None:
            return {}
        seconds = math.ceil(self.retry_after)
        if not self.retry_after_date:
            return {"Retry-After": str(seconds)}
        sent = math.floor(now)
        return {"Date": formatdate(sent, usegmt=True), "Retry-After": formatdate(sent + seconds, usegmt=True)}

    def matches(self, path: str) -> bool:
        """Whether a request for ``path`` is one this fault counts."""
        return self.path is None or path.startswith(self.path)


class _Armed:
    """A planned fault plus how many matching requests it has let pass and hit so far."""

    __slots__ = ("fault", "passed", "hits")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.passed = 0
        self.hits = 0


class FaultPlan:
    """Faults in the order they were added. Every matching fault counts every matching request
    towards its own ``skip`` (so ``skip=2`` always means "the 3rd matching request", whatever other
    faults do); of the faults that are due, the first added fires, the others wait for the next request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._armed.append(_Armed(fault))

    def take(self, path: str) -> Fault | None:
        """The fault to apply to this request, if any; used-up faults leave the plan."""
        with self._lock:
            firing: _Armed | None = None
            for armed in self._armed:
                if not armed.fault.matches(path):
                    continue
                if armed.passed < armed.fault.skip:
                    armed.passed += 1
                elif firing is None:
                    firing = armed
            if firing is None:
                return None
            firing.hits += 1
            if firing.hits >= firing.fault.times:
                self._armed.remove(firing)
            return firing.fault

    def pending(self) -> list[Fault]:
        """Faults not yet used up, so a test can assert its plan was fully consumed."""
        with self._lock:
            return [armed.fault for armed in self._armed]

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()
