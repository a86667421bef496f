"""Where a masked read's time goes inside the server (issue 15 item 6).

One client sends `requests` masked reads (`GET /api/v1/customers/{id}`) in turn to
the very WSGI app `strongroom serve` runs, in this process (Flask's test client:
no socket, no TLS), under cProfile. Each part's time is the cumulative time of the
function that does it, per request:

* authentication (`web.auth.authenticate_request`), of which: the session looked up
  by its token digest with its account's lockout row and live break-glass grants
  (one statement), and the account checked against its stream version
  (`PrincipalCache.get`: one row; a replay only when the account changed);
* the use case (`CustomerService.read`: the customer loaded and decrypted, masked,
  and the access record committed), of which the access record;
* the rest of the request inside Flask: routing, the schema dump, headers.

What TLS, HTTP parsing and the server's worker model add is the API's latency over
TLS minus this in-app time (the api suite prints both). cProfile slows Python code
more than waiting on the database, so the shares are indicative; the in-app median
is timed without the profiler.
"""

from __future__ import annotations

import contextlib
import cProfile
import logging
import os
import pstats
import time
from collections.abc import Callable
from typing import Any

from benchmarks.figures import median

# part -> (file ending, function name), a part's time being that function's cumulative time
PARTS: dict[str, tuple[str, str]] = {
    "whole request in Flask": ("flask/app.py", "wsgi_app"),
    "authentication": ("web/auth.py", "authenticate_request"),
    "  session, lockout, break-glass (one look)": ("", "session_standing"),
    "  account at its stream version": ("application/principals.py", "get"),
    "use case (load, decrypt, mask, record)": ("application/customer_service.py", "read"),
    "  access record": ("application/audit.py", "record"),
}


def _cumulative(stats: pstats.Stats, ending: str, name: str) -> float:
    total = 0.0
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (file, _line, function), (_cc, _nc, _tt, cumulative, _callers) in entries.items():
        if function == name and file.replace("\\", "/").endswith(ending):
            total += cumulative
    return total


def profile_requests(send: Callable[[], int], requests: int, *, warm_up: int = 5) -> dict[str, float]:
    """Milliseconds per request for each part of PARTS, plus "in-app median (unprofiled)".

    `send` makes one request and returns its HTTP status; any status but 200 stops
    the measurement (a refused read would profile the refusal)."""
    for _ in range(warm_up):
        if send() != 200:
            raise RuntimeError("a warm-up request was not answered 200")
    plain = []
    for _ in range(requests):
        started = time.perf_counter()
        status = send()
        plain.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"a masked read answered {status}")
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        for _ in range(requests):
            if send() != 200:
                raise RuntimeError("a profiled request was not answered 200")
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler)
    parts = {part: _cumulative(stats, ending, name) * 1000 / requests for part, (ending, name) in PARTS.items()}
    parts["in-app median (unprofiled)"] = median(plain) * 1000
    return parts


def masked_read_profile(config: dict[str, Any], token: str, customer_id: str, requests: int) -> dict[str, float]:
    """Profile `requests` masked reads of `customer_id` with `token` through the app
    built from `config` (as `web.create_app` takes it)."""
    from web import create_app
    from web.app import close_app

    app = create_app(config)
    # The request log is written as the server writes it (its cost counts), into nothing:
    # the bench's own output stays the figures.
    sink = open(os.devnull, "w", encoding="utf-8")
    streams = [(handler, handler.stream) for handler in _stream_handlers()]
    for handler, _stream in streams:
        handler.setStream(sink)
    try:
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}

        def send() -> int:
            return int(client.get(f"/api/v1/customers/{customer_id}", headers=headers).status_code)

        # Strongroom's own handler writes to whatever sys.stderr is at the time
        # (infrastructure/logs.py), so it is redirected with it.
        with contextlib.redirect_stderr(sink):
            return profile_requests(send, requests)
    finally:
        for handler, stream in streams:
            handler.setStream(stream)
        sink.close()
        close_app(app)


def _stream_handlers() -> list[logging.StreamHandler[Any]]:
    loggers = [logging.getLogger(), *(logger for logger in logging.root.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    # Only handlers writing to the process's own stdout or stderr (not a test's capture).
    return [handler for logger in loggers for handler in logger.handlers
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            and getattr(handler.stream, "name", None) in ("<stdout>", "<stderr>")]


def breakdown_lines(parts: dict[str, float]) -> list[str]:
    whole = parts.get("whole request in Flask") or 1.0
    return [f"{part:<42} {ms:8.2f} ms  {100 * ms / whole:5.1f}%" for part, ms in parts.items()
            if part != "in-app median (unprofiled)"] + [
        f"{'in-app median (unprofiled)':<42} {parts['in-app median (unprofiled)']:8.2f} ms"]
