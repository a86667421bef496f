"""Structured JSON logs, one object a line (R7.3).

A log line is the easiest place for personal data to leak: a query string carries
an email, an exception message carries a value, a traceback carries locals. So the
formatter writes only named fields, an exception's *type* (never its message or
trace), and it blanks anything that looks like a query string in the message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

REQUEST_LOGGER = "strongroom.request"
ERROR_LOGGER = "strongroom.error"

# "/path?email=a@b.c" in a server's own message (a bad request line, say) becomes
# "/path?<redacted>": the query string is where personal data rides in a URL.
_QUERY = re.compile(r"\?[^\s'\"]*")


def redact_query_strings(text: str) -> str:
    return _QUERY.sub("?<redacted>", text)


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...fields}`; fields come from `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_query_strings(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            # The type says what went wrong; the message and the trace may hold values.
            entry["exc_type"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (so a redirected stream is followed)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Give Strongroom's loggers one JSON handler on stderr (idempotent)."""
    for name in (REQUEST_LOGGER, ERROR_LOGGER):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        # Our lines are complete on their own; a root handler added by a host
        # (or a test runner) must not print them a second time in another format.
        logger.propagate = False
        if not any(getattr(h, "_strongroom", False) for h in logger.handlers):
            handler = StderrHandler()
            handler.setFormatter(JsonFormatter())
            handler._strongroom = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
