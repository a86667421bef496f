"""Projection apart from the API (R7.4): a worker process follows the log on
PostgreSQL, writers wait for it, and a restarted worker resumes exactly where its
tracked position says (no event projected twice, none skipped)."""

from __future__ import annotations

import threading

import pytest

from application.context import acting_as
from infrastructure.composition import ConfigurationError
from tests.application.conftest import OPERATOR, customer_fields, make_components


def _start_worker(components):
    stop = threading.Event()
    thread = threading.Thread(
        target=components.projection.run_forever,
        kwargs={"app": components.app, "interval": 0.02, "stop": stop.is_set},
        daemon=True,
    )
    thread.start()
    return stop, thread


def test_writers_read_their_writes_through_a_separate_worker(tmp_path, pg_url):
    api = make_components(tmp_path, pg_url, projection="worker")
    worker = make_components(tmp_path, pg_url, projection="worker")
    stop, thread = _start_worker(worker)
    try:
        with acting_as(OPERATOR):
            record = api.app.register_customer(customer_fields())
            # register_customer returned only after the worker projected it.
            assert api.app.customer_view(record["id"])["email"] == "ada.planted@example.org"
            api.app.update_customer(record["id"], {"risk_rating": "high"})
            assert api.app.customer_view(record["id"])["risk_rating"] == "high"
    finally:
        stop.set()
        thread.join(5)
        api.close()
        worker.close()


def test_a_restarted_worker_resumes_from_its_tracked_position(tmp_path, pg_url):
    api = make_components(tmp_path, pg_url, projection="worker")
    with acting_as(OPERATOR):
        hook = api.projection.inline([])
        assert hook is None  # nothing projected by the writer in worker mode
        api.projection.is_inline = True  # write a first batch inline, as a past worker would have
        first = api.app.register_customer(customer_fields())
        api.projection.is_inline = False
        api.projection.wait_for = lambda position, timeout=5.0: None  # no worker yet
        second = api.app.register_customer(customer_fields(email="second@example.org"))
    assert api.directory.get(second["id"]) is None
    before = api.directory.position()
    worker = make_components(tmp_path, pg_url, projection="worker")
    try:
        assert worker.projection.catch_up(worker.app) == api.app.recorder.max_notification_id() - before
        assert worker.directory.get(second["id"])["email"] == "second@example.org"
        assert worker.directory.get(first["id"])["email"] == "ada.planted@example.org"
        assert worker.projection.catch_up(worker.app) == 0
    finally:
        api.close()
        worker.close()


def test_a_separate_worker_needs_postgresql(tmp_path):
    with pytest.raises(ConfigurationError, match="needs PostgreSQL"):
        make_components(tmp_path, f"sqlite:///{tmp_path / 'x.sqlite'}", projection="worker")
