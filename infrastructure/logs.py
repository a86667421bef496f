"""Structured JSON logs, one object a line, for every long-running process: the
API server and the projection worker (R7.3).

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
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

REQUEST_LOGGER = "strongroom.request"
ERROR_LOGGER = "strongroom.error"
SERVE_LOGGER = "strongroom.serve"
WORKER_LOGGER = "strongroom.worker"

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
    for name in (REQUEST_LOGGER, ERROR_LOGGER, SERVE_LOGGER, WORKER_LOGGER):
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


def _json_handler() -> logging.Handler:
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter())
    handler._strongroom = True  # type: ignore[attr-defined]
    return handler


def configure_process_logging() -> None:
    """Make every line a server or worker process writes a JSON line (R7.3), not only Strongroom's own.

    A library's logger (psycopg's pool, the eventsourcing recorders, Flask's own), a
    Python warning and an exception that escapes a thread would otherwise each print
    in their own format, or as a raw traceback with its values, into the same stream.
    So the root logger gets the one JSON handler, warnings go through logging, and an
    uncaught exception is logged by its type alone.
    """
    configure_logging()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_json_handler())
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    uncaught = logging.getLogger(ERROR_LOGGER)

    def log_uncaught(kind: type[BaseException], value: BaseException, trace: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, trace)
            return
        uncaught.error("uncaught exception", exc_info=(kind, value, trace))

    def log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        uncaught.error("uncaught exception in a thread", exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
                       extra={"fields": {"thread": getattr(args.thread, "name", None)}})

    sys.excepthook = log_uncaught
    threading.excepthook = log_uncaught_in_thread
