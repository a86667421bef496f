"""The gunicorn worker `strongroom serve` runs: gthread, minus what gunicorn says of itself.

gunicorn answers some requests before the app ever sees them (a malformed request
line, an oversized header, a bad chunk size) with its own HTML page: no HSTS, no
`nosniff`, no CSP, a `Server: gunicorn` banner, and a message that quotes what the
client sent. A scanner reads the banner as a version to look up; the quoted text is
client input reflected in an HTML page. This worker answers those in the API's own
error shape with the same security headers as every app response (web/headers.py,
web/errors.py), and drops the `Server` header from every response.

gunicorn offers no setting for either: its error writer (`gunicorn.util.write_error`)
and its response class (`gunicorn.http.wsgi.Response`) are module attributes that
its workers look up at each use, so this worker replaces the two in its own process,
after the fork, and nowhere else.

It also spreads keep-alive connections over the workers (issue 15 item 6). Every
worker listens on the one socket, and whichever wakes first accepts: measured, the
api bench's eight keep-alive clients split 7/1 and 1/7 over two workers in two runs
of three, and the worker with seven served them on one core while the other core
idled (a third less throughput than at 4/4). A load balancer's pooled upstream
connections meet the same. So a worker already holding a connection
per thread stops listening for `ACCEPT_YIELD_SECONDS` when a new one arrives, and a
worker with a free thread takes it meanwhile. If none does, the connection is still
waiting when the pause ends, and the worker takes it then: no connection is refused
or left waiting longer than the pause.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.http import wsgi as gunicorn_wsgi
from gunicorn.workers.gthread import ThreadWorker

from web.errors import HTTP_MESSAGES
from web.headers import SECURITY_HEADERS


def error_bytes(status: int, reason: str) -> bytes:
    """A complete HTTP/1.1 error answer in the API's shape, with the security headers.

    The reason gunicorn chose is kept only as a fallback code; its message, which
    quotes the request, is never sent.
    """
    code, message = HTTP_MESSAGES.get(status, (re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_") or "error",
                                               "the request could not be handled"))
    body = json.dumps({"code": code, "status": status, "message": message}).encode()
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Connection": "close",
        "X-Request-Id": str(uuid.uuid4()),
        **SECURITY_HEADERS,
        "Cache-Control": "no-store",
    }
    # `reason` is one of gunicorn's fixed phrases; keep the status line plain ASCII anyway.
    phrase = re.sub(r"[^A-Za-z -]", "", reason) or "Error"
    head = f"HTTP/1.1 {status} {phrase}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("ascii") + body


def write_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error`, in the API's error shape (`mesg` is dropped)."""
    gunicorn_util.write_nonblock(sock, error_bytes(int(status_int), str(reason)))


class BannerlessResponse(gunicorn_wsgi.Response):  # type: ignore[misc]
    """gunicorn's response, without the `Server: gunicorn/<version>` line."""

    def default_headers(self) -> list[str]:
        headers: list[str] = super().default_headers()
        return [line for line in headers if not line.lower().startswith("server:")]


class StrongroomWorker(ThreadWorker):  # type: ignore[misc]
    """gthread (a slow client holds a thread, not a whole worker), with the two above,
    yielding new connections to a worker with a free thread."""

    ACCEPT_YIELD_SECONDS = 0.05

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._yield_until = 0.0  # not listening before this (monotonic seconds)
        self._yielded = False  # paused, and not listening again yet
        self._recheck = False  # listening again: a connection waiting now is taken

    def init_process(self) -> Any:
        gunicorn_util.write_error = write_error
        gunicorn_wsgi.Response = BannerlessResponse
        return super().init_process()

    def run(self) -> None:
        # Said once the app is built: only from now on does this worker take connections.
        self.log.info("worker %s is serving", self.pid)
        super().run()

    def accept(self, listener: Any) -> None:
        full = self.cfg.workers > 1 and self.nr_conns >= self.cfg.threads
        if full and not self._recheck:
            self._yielded = True
            self._yield_until = time.monotonic() + self.ACCEPT_YIELD_SECONDS
            self.set_accept_enabled(False)
            return
        super().accept(listener)

    def set_accept_enabled(self, enabled: bool) -> None:
        if enabled and time.monotonic() < self._yield_until:
            enabled = False  # still pausing; the run loop asks again each turn
        if enabled and self._yielded:
            self._yielded, self._recheck = False, True
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if self._recheck:
            # The pause is over: a connection still waiting found no worker with room,
            # and is taken now; then the run loop takes its turn as after any wait.
            try:
                super().wait_for_and_dispatch_events(0)
            finally:
                self._recheck = False
            return
        left = self._yield_until - time.monotonic()
        super().wait_for_and_dispatch_events(min(timeout, left) if left > 0 else timeout)
