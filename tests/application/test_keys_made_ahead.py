"""New customers' keys are made ahead, so a registration commits only its events
(issue 15, item 1; R1.1, R4.2: keys and events stay in separate stores).

The guarantee kept: no event is ever durable without its keys. Faults injected: a
real writer process SIGKILLed mid-stream, and a key store that fails to commit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest

from application.context import acting_as
from domain.customer import Customer
from infrastructure.crypto.keyring import POOL_BATCH
from tests.application.conftest import OPERATOR, customer_fields, make_components

ROOT = Path(__file__).resolve().parents[2]

# Registers customers until killed, printing each id once register_customer returned.
WRITER = """
import sys
from application.context import RequestContext, acting_as
from infrastructure.composition import Settings, build
from tests.application.conftest import customer_fields

settings = Settings.load(sys.argv[1], {"database_url": sys.argv[2], "blind_index_bits": 8})
built = build(settings)
with acting_as(RequestContext(actor_id="operator:test", via="cli", purpose="tests")):
    n = 0
    while True:
        record = built.app.register_customer(customer_fields(email=f"killed.{n}@example.org"))
        print(record["id"], flush=True)
        n += 1
"""


def _registered_ids(app) -> list[str]:
    ids = []
    for notification in app.recorder.select_notifications(start=1, limit=100_000):
        if notification.topic.endswith("Customer.Registered"):
            ids.append(str(UUID(str(notification.originator_id))))
    return ids


def _write_transactions(database, counted: list[int]):
    real = database.transaction

    def counting(*args, **kwargs):
        if kwargs.get("write", True):
            counted.append(1)
        return real(*args, **kwargs)

    return counting


def test_registrations_commit_keys_once_per_batch_not_once_per_customer(components, monkeypatch):
    # The first write also makes the installation's system key (once, ever).
    registered = [components.app.register_customer(customer_fields(email="first@example.org"))]
    counted: list[int] = []
    monkeypatch.setattr(components.keys_db, "transaction", _write_transactions(components.keys_db, counted))
    registered += [components.app.register_customer(customer_fields(email=f"batch.{n}@example.org"))
                   for n in range(30)]
    # Batches of 2, 4, 8, 16 after the first's 1: four commits of the key store for
    # 30 customers (30 before), and each customer reads back under its own keys.
    assert len(counted) == 4
    assert POOL_BATCH >= 16
    for record in registered:
        assert components.app.get_customer(record["id"])["email"] == record["email"]
        assert components.keyring.status(record["id"]) == {"profile": "active", "kyc": "active"}


def test_refused_input_gives_its_reserved_id_back(components):
    with pytest.raises(Exception):  # noqa: B017, PT011 - the domain's own validation error
        components.app.register_customer(customer_fields(date_of_birth=None))
    record = components.app.register_customer(customer_fields())
    assert components.app.get_customer(record["id"])["full_name"] == "Ada Plantedname"
    assert len(_registered_ids(components.app)) == 1


def test_a_key_store_that_cannot_commit_leaves_no_event(components, monkeypatch):
    before = components.app.recorder.max_notification_id() or 0

    def fails(keys):
        raise ConnectionError("the key store went away")

    monkeypatch.setattr(components.keyring.store, "insert_new", fails)
    with pytest.raises(ConnectionError):
        components.app.register_customer(customer_fields())
    assert (components.app.recorder.max_notification_id() or 0) == before
    monkeypatch.undo()
    record = components.app.register_customer(customer_fields())
    assert components.app.get_customer(record["id"])["email"] == "ada.planted@example.org"


def test_unused_made_ahead_keys_are_deleted_at_a_clean_close(tmp_path, database_url):
    built = make_components(tmp_path, database_url)
    with acting_as(OPERATOR):
        for n in range(2):  # batches of 1 and 2: one pair left unused
            built.app.register_customer(customer_fields(email=f"close.{n}@example.org"))
    built.close()
    again = make_components(tmp_path, database_url)
    try:
        counts = again.keyring.counts()
        assert (counts["active_profile"], counts["active_kyc"], counts["destroyed"]) == (2, 2, 0)
    finally:
        again.close()


def test_a_writer_killed_mid_stream_leaves_no_event_without_its_keys(tmp_path, database_url):
    instance = tmp_path / "instance"
    make_components(tmp_path, database_url).close()  # the instance, its KEK and schema
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(instance), database_url], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        acknowledged = [writer.stdout.readline().strip() for _ in range(12)]
        os.kill(writer.pid, signal.SIGKILL)  # mid-stream: a batch made, part of it used
    finally:
        writer.kill()
        writer.wait(timeout=30)
        writer.stdout.close()
        writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL
    assert all(acknowledged), "the writer died before registering"

    built = make_components(tmp_path, database_url)
    try:
        with acting_as(OPERATOR):
            stored = _registered_ids(built.app)
            assert set(acknowledged) <= set(stored)
            for customer_id in stored:  # every event written has both its keys
                assert built.keyring.status(customer_id) == {"profile": "active", "kyc": "active"}
                customer = built.app.repository.get(UUID(customer_id))
                assert isinstance(customer, Customer) and customer.email.startswith("killed.")
    finally:
        built.close()


def _agent():
    from application.security import Actor

    return Actor(staff_id="staff-agent", username="agent", roles=frozenset({"agent"}),
                 portfolios=frozenset({"retail"}))


def test_a_created_customer_and_the_record_of_its_view_commit_together(components):
    from application.customer_service import CustomerService
    from domain.audit import AccessRecord

    service = CustomerService(components.app, policy=components.policy)
    before = components.app.recorder.max_notification_id() or 0
    view = service.create(_agent(), customer_fields())
    assert view["email"] == "a***@example.org"
    rows = components.app.recorder.select_timed_notifications(before + 1, 10)
    events = [components.app.mapper.to_domain_event(n) for n in rows]
    [record] = [e for e in events if isinstance(e, AccessRecord.Event)]
    assert record.customer_ids == [view["id"]] and "email" in record.fields
    # One save: the customer's events and the access record share one transaction,
    # hence one stamp (a second commit would have its own).
    assert len({n.recorded_at for n in rows}) == 1


def test_a_create_that_fails_leaves_neither_customer_nor_access_record(components, monkeypatch):
    from application.customer_service import CustomerService

    service = CustomerService(components.app, policy=components.policy)
    before = components.app.recorder.max_notification_id() or 0

    def broken(*args, **kwargs):
        raise RuntimeError("the read model could not be written")

    monkeypatch.setattr(components.directory, "upsert", broken)
    with pytest.raises(RuntimeError):
        service.create(_agent(), customer_fields())
    assert (components.app.recorder.max_notification_id() or 0) == before
