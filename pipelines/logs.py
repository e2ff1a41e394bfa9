"""Operator-facing logging: one line per step, UTC timestamps, secrets masked.

Log lines go to stderr, ending with one summary line per run; the full multi-line summary goes to
stdout, so `... > last_run.txt 2>> runs.log` keeps the outcome and the history apart.

Two formats: `text` for people, `json` (one object per line) for log collectors. dlt's own lines
(logger `dlt`) go through the same handler, so they share the format and the secret masking.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timezone

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
FORMATS = ("text", "json")
DLT_LOGGER = "dlt"

_run_id: str | None = None
_redactor: RedactingFilter | None = None


def bind_run_id(run_id: str | None) -> None:
    """Stamp every following log line (of any thread, dlt's included) with this run's id."""
    global _run_id
    _run_id = run_id


def redact(text: str) -> str:
    """Mask the known secrets in text bound for somewhere other than the log (run_history.error)."""
    return _redactor.redact(text) if _redactor else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line with stable keys: ts, level, logger, run_id, event, counts (a dict on
    the lines that carry counts, else null), and exc (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "run_id": _run_id,
            "event": record.getMessage(),
            "counts": getattr(record, "counts", None),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # ASCII escapes: a lone surrogate from a vendor's payload stays valid, writable JSON.
        return json.dumps(entry, ensure_ascii=True, default=str)


class OperatorHandler(logging.StreamHandler):
    """The stderr handler of the connector's loggers and of dlt's.

    dlt (re)configures its `dlt` logger whenever a pipeline starts: it reuses that logger's first
    handler and sets its own formatter on it. This handler ignores that, so dlt's lines come out in
    the connector's format (JSON too); and it masks secrets in the finished line, tracebacks included.
    """

    def __init__(self, formatter: logging.Formatter, redactor: RedactingFilter) -> None:
        super().__init__(sys.stderr)
        self.formatter = formatter
        self.redactor = redactor
        self.addFilter(redactor)

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        """Keep the connector's format (dlt calls this on the handler it finds)."""

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.redact(super().format(record))


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


def setup_logging(level: str = "INFO", log_format: str = "text") -> RedactingFilter:
    """Configure the root logger and dlt's once; return the redaction filter to feed secrets into."""
    if log_format == "json":
        formatter: logging.Formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
        formatter.converter = time.gmtime
    global _redactor
    redactor = _redactor = RedactingFilter()
    handler = OperatorHandler(formatter, redactor)
    for name in ("", DLT_LOGGER):
        logger = logging.getLogger(name)
        for old in logger.handlers[:]:
            logger.removeHandler(old)
        logger.addHandler(handler)
    logging.getLogger(DLT_LOGGER).propagate = False  # dlt sets this too; its lines must not print twice
    logging.getLogger().setLevel(level.upper())
    return redactor
