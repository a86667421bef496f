"""Projection apart from the API (R7.4): a worker process follows the log on
PostgreSQL, writers wait for it, and a restarted worker resumes exactly where its
tracked position says (no event projected twice, none skipped)."""

from __future__ import annotations

import functools
import threading
import time

import pytest

from application.context import acting_as
from application.errors import ProjectionLagging
from infrastructure.composition import ConfigurationError
from infrastructure.projection import CustomerProjection
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
        api.projection.wait_for = lambda position, timeout=5.0: True  # no worker yet; do not wait
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


def _short_bound(components, seconds=0.3):
    """The writer's wait for the worker, shortened so a test of the lag bound is quick."""
    components.projection.wait_for = functools.partial(
        CustomerProjection.wait_for, components.projection, timeout=seconds)


def test_a_committed_write_the_worker_has_not_reached_is_accepted_not_failed(tmp_path, pg_url):
    # Fault: no worker runs, so the read model never reaches the write within the bound.
    api = make_components(tmp_path, pg_url, projection="worker")
    _short_bound(api)
    try:
        with acting_as(OPERATOR):
            with pytest.raises(ProjectionLagging) as lagging:
                api.app.register_customer(customer_fields())
            (customer_id,) = lagging.value.subject_ids
            assert lagging.value.position == api.app.recorder.max_notification_id()
            # Committed once, in the log; nothing retried it.
            assert api.app.get_customer(customer_id)["version"] == 1
            assert api.directory.get(customer_id) is None
            # An unconditional command that lags is not tried again either.
            with pytest.raises(ProjectionLagging):
                api.app.update_customer(customer_id, {"risk_rating": "high"})
            assert api.app.get_customer(customer_id)["version"] == 2
        stop, thread = _start_worker(api)
        try:
            deadline = time.monotonic() + 10
            while (api.directory.get(customer_id) or {}).get("risk_rating") != "high":
                assert time.monotonic() < deadline, "the worker never projected the accepted writes"
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(5)
    finally:
        api.close()


def test_staff_writes_never_wait_for_the_customer_projection(tmp_path, pg_url):
    # Fault: no worker runs. Staff accounts are read from the log, not the customer read
    # model, so enrolling one (what `strongroom init` does) must not wait the 5 s bound.
    api = make_components(tmp_path, pg_url, projection="worker")
    try:
        with acting_as(OPERATOR):
            started = time.monotonic()
            admin = api.staff_admin.enrol_first_admin()
            assert time.monotonic() - started < 4
        assert api.identity.staff(admin.staff_id) is not None
    finally:
        api.close()


def test_an_erasure_the_worker_has_not_reached_still_destroys_the_keys(tmp_path, pg_url):
    # Fault: no worker runs when the erasure is recorded.
    api = make_components(tmp_path, pg_url, projection="worker")
    _short_bound(api)
    try:
        with acting_as(OPERATOR):
            with pytest.raises(ProjectionLagging) as lagging:
                api.app.register_customer(customer_fields())
            (customer_id,) = lagging.value.subject_ids
            result = api.app.erase_customer(customer_id, "subject request")
        assert result["read_model_purged"] is False
        # The profile key goes now; the KYC key is kept under the AML hold (R5.4).
        assert api.keyring.status(customer_id)["profile"] == "destroyed"
        assert result["keys_destroyed"] == ["profile"]
    finally:
        api.close()
