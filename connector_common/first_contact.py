"""What a wrong setting looks like on the wire, decided once for both vendors' clients.

A mistyped host, a proxy without TLS, or a path that does not exist fails the same way on every
attempt: retrying it for half a minute as if the network were flaky only delays the message and
hides the cause. So, until a host has answered successfully in this run, a failed TLS handshake,
an unresolvable name, a refused connection or a 404 is a configuration error naming the host and
the setting to fix. After the host has answered once, the same failures are transient and the
client's retry policy applies.

Also here: the rules every vendor URL and credential follow before any network call (https
except on loopback; no empty or placeholder secrets). Each client raises its own setting error
class with the message, so exit codes stay mapped in one place (`pipelines/errors.py`).
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3

# Values an operator leaves behind from an example file: "", "<client secret>", "your-access-key".
_PLACEHOLDER = re.compile(r"^\s*(<.*>|your[-_ ].*|changeme|change-me|xxx+|\.\.\.)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Setting:
    """A config key and the environment variable that sets it, as the operator types them."""

    key: str  # e.g. sources.customergauge.api_base_url
    env: str  # e.g. SOURCES__CUSTOMERGAUGE__API_BASE_URL

    def __str__(self) -> str:
        return f"{self.key} (env {self.env})"


def credential_problem(value: object, setting: Setting) -> str | None:
    """Why a credential value cannot be the real one (empty, or a placeholder), else None."""
    if value is None:
        return None  # missing entirely: dlt's or the settings' own "not set" message applies
    text = str(value)
    if not text.strip():
        return f"{setting} is empty: put the real value in .dlt/secrets.toml or the environment"
    if _PLACEHOLDER.match(text):
        return f"{setting} still holds a placeholder from the example file: replace it with the real value"
    return None


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 and ::1: the only hosts plain http is allowed to."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str, setting: Setting) -> str | None:
    """Why `url` may not carry credentials (not http(s), or plain http to another host), else None."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{setting} must be an https:// URL, got {url!r}"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return (
            f"{setting} is plain http:// to {parts.hostname}: credentials would cross the network "
            "unencrypted; use https:// (plain http is allowed only to localhost / 127.0.0.1 / ::1)"
        )
    return None


class FirstContact:
    """Remembers which configured URLs answered in this run, and words first-contact failures.

    Kept per setting, not per host: a token granted by the right host does not prove that the API
    base URL on the same host has the right path.
    """

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor
        self._reached: set[str] = set()
        self._lock = threading.Lock()

    def succeeded(self, setting: Setting) -> None:
        """A call under `setting` succeeded: from now on its failures are transient."""
        with self._lock:
            self._reached.add(setting.key)

    def reached(self, setting: Setting) -> bool:
        with self._lock:
            return setting.key in self._reached

    def connection_problem(self, url: str, exc: BaseException, setting: Setting) -> str | None:
        """A configuration message if `exc` before any success is DNS, TLS or refusal; else None."""
        if self.reached(setting):
            return None
        cause = _connection_cause(exc)
        if cause is None:
            return None
        return f"{self.vendor} host {urlsplit(url).netloc} {cause}: check {setting}"

    def status_problem(self, url: str, status: int, setting: Setting) -> str | None:
        """A configuration message for a 404 before any success (a wrong base path); else None."""
        if status != 404 or self.reached(setting):
            return None
        parts = urlsplit(url)
        return (
            f"{self.vendor} host {parts.netloc} answered 404 Not Found for {parts.path}: the URL or its "
            f"path is wrong; check {setting}"
        )


def _connection_cause(exc: BaseException) -> str | None:
    """Name a connection failure that retrying cannot fix, from requests'/urllib3's exception chain."""
    if isinstance(exc, requests.exceptions.SSLError) or _in_chain(exc, ssl.SSLError):
        return "failed the TLS handshake (is it plain http, or is its certificate not trusted?)"
    if isinstance(exc, requests.ConnectTimeout):
        return None  # a firewall drop or an overloaded host: may pass
    if _in_chain(exc, urllib3.exceptions.NameResolutionError) or _mentions(
        exc, "Name or service not known", "nodename nor servname", "getaddrinfo failed", "Failed to resolve"
    ):
        return "does not resolve (DNS lookup failed)"
    if _in_chain(exc, ConnectionRefusedError) or _mentions(exc, "Connection refused"):
        return "refused the connection (nothing listens on that port)"
    return None


def _in_chain(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        stack += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        stack += [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
    return False


def _mentions(exc: BaseException, *phrases: str) -> bool:
    text = str(exc)
    return any(phrase in text for phrase in phrases)
