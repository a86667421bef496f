"""Keep-alive connections are spread over `strongroom serve`'s workers (issue 15 item 6).

Every worker listens on the one socket and whichever wakes first accepts. Measured
before this change: the api bench's eight keep-alive clients all landed on one of
two workers, which served them on one core while the other core idled. A worker
that already holds a connection per thread now pauses its listening when a new one
arrives, so a worker with a free thread takes it; if none does, the pausing worker
takes it when the pause ends.

The first tests drive the worker's own accept logic on a real listening socket (the
rest of gunicorn's worker is not started); the last starts the real server with two
workers and counts, in /proc, which worker holds each client's connection.
"""

from __future__ import annotations

import http.client
import logging
import os
import selectors
import socket
import time
from pathlib import Path

import pytest
from gunicorn.config import Config

from cli.serve_worker import StrongroomWorker
from tests.e2e.server import initialise, serving, trusting


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def _worker(listener: socket.socket, *, workers: int, threads: int) -> tuple[StrongroomWorker, list]:
    cfg = Config()
    cfg.set("workers", workers)
    cfg.set("threads", threads)
    worker = StrongroomWorker(0, os.getpid(), [listener], None, 30, cfg, logging.getLogger(__name__))
    worker.poller = selectors.DefaultSelector()
    worker.method_queue.init()
    taken: list = []
    worker.enqueue_req = taken.append  # the accepted connection, not handed to a thread
    worker.set_accept_enabled(True)
    return worker, taken


def _connect(listener: socket.socket) -> socket.socket:
    return socket.create_connection(listener.getsockname(), timeout=2)


def test_a_worker_with_a_free_thread_takes_a_connection_at_once(listener):
    worker, taken = _worker(listener, workers=2, threads=2)
    worker.nr_conns = 1
    with _connect(listener):
        worker.wait_for_and_dispatch_events(1.0)
        assert len(taken) == 1 and worker.nr_conns == 2


def test_a_full_worker_leaves_a_new_connection_to_the_others_then_takes_it_if_nobody_did(listener):
    worker, taken = _worker(listener, workers=2, threads=2)
    worker.nr_conns = 2  # a connection per thread
    with _connect(listener):
        started = time.monotonic()
        worker.wait_for_and_dispatch_events(1.0)
        assert taken == [] and not worker._accepting  # paused: a sibling may take it
        while not taken and time.monotonic() - started < 2:
            # The run loop's turn: listening again once the pause is over.
            worker.set_accept_enabled(worker.nr_conns < worker.worker_connections)
            worker.wait_for_and_dispatch_events(1.0)
        waited = time.monotonic() - started
        assert len(taken) == 1  # nobody else took it: never left waiting
        assert StrongroomWorker.ACCEPT_YIELD_SECONDS <= waited < StrongroomWorker.ACCEPT_YIELD_SECONDS + 0.5


def test_after_a_pause_only_a_connection_still_waiting_is_taken_at_once(listener):
    worker, taken = _worker(listener, workers=2, threads=1)
    worker.nr_conns = 1
    with _connect(listener):
        worker.wait_for_and_dispatch_events(1.0)
        assert taken == []
        sibling, _ = listener.accept()  # another worker takes it meanwhile
        sibling.close()
    time.sleep(StrongroomWorker.ACCEPT_YIELD_SECONDS)
    worker.set_accept_enabled(True)
    worker.wait_for_and_dispatch_events(1.0)  # the turn that takes a connection still waiting: none
    assert taken == [] and worker._accepting
    with _connect(listener):  # a new one, while this worker is still full: left to the others again
        worker.wait_for_and_dispatch_events(1.0)
        assert taken == [] and not worker._accepting


def test_a_lone_worker_never_pauses(listener):
    worker, taken = _worker(listener, workers=1, threads=1)
    worker.nr_conns = 5
    with _connect(listener):
        worker.wait_for_and_dispatch_events(1.0)
        assert len(taken) == 1


def _connections_per_worker(port: int, workers: list[int]) -> list[int]:
    """How many established TCP connections on `port` each process holds (from /proc)."""
    wanted = f":{port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(wanted) and fields[3] == "01":  # local port, ESTABLISHED
                inodes.add(fields[9])
    counts = []
    for pid in workers:
        held = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            held += target.startswith("socket:[") and target[8:-1] in inodes
        counts.append(held)
    return counts


def _serving_workers(log: Path, expected: int) -> list[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = [int(line.split("worker ")[1].split(" ")[0]) for line in log.read_text().splitlines()
                if " is serving" in line]
        if len(pids) >= expected:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"not every worker started serving:\n{log.read_text()}")


def test_the_real_server_spreads_keep_alive_clients_over_its_workers(tmp_path):
    folder = tmp_path / "instance"
    initialise(folder)
    with serving(folder, tmp_path / "serve.log", workers=2, env={}, threads=2) as server:
        workers = _serving_workers(server["log"], 2)
        clients = []
        try:
            for _ in range(4):  # one after another, each kept alive, as a pool of upstream connections
                client = http.client.HTTPSConnection("localhost", server["port"], context=trusting(server["cert"]),
                                                     timeout=10)
                client.request("GET", "/healthz")
                response = client.getresponse()
                response.read()
                assert response.status == 200
                clients.append(client)
            assert _connections_per_worker(server["port"], workers) == [2, 2]
        finally:
            for client in clients:
                client.close()
