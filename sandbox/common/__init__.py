"""Building blocks shared by the local API sandboxes: a loopback HTTP server and a fault plan."""

from sandbox.common.faults import Fault, FaultPlan
from sandbox.common.server import LoggedRequest, Request, Response, SandboxServer, json_response

__all__ = ["Fault", "FaultPlan", "LoggedRequest", "Request", "Response", "SandboxServer", "json_response"]
