"""Operator-facing logging: one line per step, UTC timestamps, secrets masked.

Log lines go to stderr, ending with one summary line per run; the full multi-line summary goes to
stdout, so `... > last_run.txt 2>> runs.log` keeps the outcome and the history apart.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Iterable

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class RedactingFilter(logging.Filter):
    """Masks known secret values wherever they would appear in a log line.

    The clients never put secrets in messages; this is the second line of defence for text that
    comes from elsewhere (a library's exception, a vendor's error body echoing a request).
    """

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        # Very short values would mask innocent text and are not real secrets anyway.
        self._secrets.update(value for value in secrets if value and len(value) >= 6)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            record.msg = self.redact(record.getMessage())
            record.args = None
        return True


def setup_logging(level: str = "INFO") -> RedactingFilter:
    """Configure the root logger once and return the redaction filter to feed secrets into."""
    formatter = logging.Formatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    redactor = RedactingFilter()
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return redactor
