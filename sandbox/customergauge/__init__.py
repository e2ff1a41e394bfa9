"""A strict local stand-in for the CustomerGauge v7 API (reference §5), for tests, demo and benchmarks."""

from sandbox.common.faults import Fault
from sandbox.customergauge.data import SeedSpec
from sandbox.customergauge.server import CustomerGaugeSandbox

__all__ = ["CustomerGaugeSandbox", "Fault", "SeedSpec"]
