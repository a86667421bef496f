"""Readiness answers within its deadline, even when a dependency hangs."""

from __future__ import annotations

import threading
import time

from infrastructure.faults import remaining
from web.bounded import BoundedCall
from web.health import ReadinessProbe


def test_a_hung_dependency_is_reported_within_the_deadline():
    # An HSM or a database that stops answering without refusing the connection.
    release = threading.Event()
    probe = ReadinessProbe({"event store": lambda: 1, "key store": release.wait}, timeout=0.3)
    try:
        started = time.monotonic()
        assert probe.failure() == ("key store", "TimeoutError")
        assert time.monotonic() - started < 2
    finally:
        release.set()
        probe.stop()


def test_a_failing_dependency_is_named_with_its_error_type_only():
    def refuse():
        raise ConnectionRefusedError("connect to 10.0.0.7:5432 as strongroom_app failed")

    probe = ReadinessProbe({"event store": lambda: 1, "read models": refuse}, timeout=1)
    try:
        assert probe.failure() == ("read models", "ConnectionRefusedError")
    finally:
        probe.stop()


def test_a_failure_is_reported_without_waiting_for_a_slow_sibling():
    release = threading.Event()

    def refuse():
        raise OSError("down")

    probe = ReadinessProbe({"event store": release.wait, "key store": refuse}, timeout=5)
    try:
        started = time.monotonic()
        assert probe.failure() == ("key store", "OSError")
        assert time.monotonic() - started < 2
    finally:
        release.set()
        probe.stop()


def test_repeated_probes_while_a_call_hangs_do_not_pile_up_calls():
    release = threading.Event()
    calls = []

    def hang():
        calls.append(threading.current_thread().name)
        release.wait()

    probe = ReadinessProbe({"event store": hang}, timeout=0.05)
    try:
        for _ in range(10):
            assert probe.failure() == ("event store", "TimeoutError")
        assert len(calls) == 1
        release.set()
        time.sleep(0.1)
        assert probe.failure() is None  # the store came back: ready again
    finally:
        release.set()
        probe.stop()


def test_a_bounded_call_reuses_one_thread():
    names = []
    call = BoundedCall("probe", lambda: names.append(threading.current_thread().name))
    try:
        for _ in range(5):
            call(1.0)
        assert names == ["bounded-probe"] * 5
    finally:
        call.stop()


def test_a_probe_runs_under_a_database_deadline_of_its_own_timeout():
    # So a store that is down ends the call soon after the probe stops waiting,
    # rather than after the event-sourcing library's ten retries.
    seen = []
    probe = ReadinessProbe({"event store": lambda: seen.append(remaining(60.0))}, timeout=1.5)
    try:
        assert probe.failure() is None
        assert 0 < seen[0] <= 1.5
        assert remaining(60.0) == 60.0  # the caller's own context has no deadline
    finally:
        probe.stop()
