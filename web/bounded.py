"""A call to a dependency that answers within a deadline or is reported as not answering.

Probes and scrapes must be quick even when a store hangs: with PostgreSQL gone, the
event store's own pool waits minutes before giving up, and a readiness probe or a
metrics scrape that hangs that long is as bad as none. Each `BoundedCall` owns one
daemon thread (so a hung call never blocks process exit, and the thread's database
connection is reused rather than a new one opened per probe), and at most one call
is in flight: a caller that arrives while the last call still hangs waits on that
same call, so a hung store cannot pile up threads. With a `deadline`, the call
itself runs under a database deadline of that many seconds (infrastructure/faults.py),
so a store that is down ends the call soon after the caller stops waiting, rather
than after the library's ten retries: the next probe then asks afresh.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from infrastructure.faults import end_deadline, start_deadline


class BoundedCall:
    def __init__(self, name: str, function: Callable[[], Any], deadline: float | None = None) -> None:
        self.name = name
        self.function = function
        self.deadline = deadline
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Future[Any] | None] = queue.SimpleQueue()
        self._current: Future[Any] | None = None
        self._thread: threading.Thread | None = None

    def submit(self) -> Future[Any]:
        """The call in flight, or a new one if none is."""
        with self._lock:
            if self._current is None or self._current.done():
                if self._thread is None:
                    self._thread = threading.Thread(target=self._serve, name=f"bounded-{self.name}", daemon=True)
                    self._thread.start()
                self._current = Future()
                self._queue.put(self._current)
            return self._current

    def __call__(self, timeout: float) -> Any:
        """The function's result; TimeoutError if it takes longer than `timeout` seconds."""
        return self.submit().result(timeout=timeout)

    def stop(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread = None

    def _serve(self) -> None:
        while True:
            future = self._queue.get()
            if future is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            token = start_deadline(self.deadline) if self.deadline is not None else None
            try:
                future.set_result(self.function())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who decides
                future.set_exception(exc)
            finally:
                if token is not None:
                    end_deadline(token)
