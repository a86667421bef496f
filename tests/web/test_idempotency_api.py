"""Retried writes do not duplicate (R7.6): `Idempotency-Key` on the customer API.

Each test names the fault it injects: an answer lost after the write committed, a
retry racing the first attempt, a key reused for another request, another member of
staff sending the same key. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from application.customer_service import CustomerService
from tests.web.customers_support import customer_body, strongroom
from tests.web.helpers import quick_login

CUSTOMERS = "/api/v1/customers"


@pytest.fixture
def app(app_factory, database_url):
    return app_factory(database_url=database_url)


@pytest.fixture
def agent(client, app):
    return quick_login(client, app, roles=["agent"], portfolios=["retail"])


def keyed(headers: Any, key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def registrations(app: Any) -> int:
    """Customers in the log: Registered events."""
    store = strongroom(app)
    notifications = store.recorder.select_notifications(start=1, limit=100_000)
    return sum(1 for n in notifications if n.topic.endswith("Customer.Registered"))


def directory_rows(app: Any, table: str = "rm_customers") -> int:
    built = app.extensions["strongroom"]
    with built.events_db.transaction(write=False) as cur:
        cur.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - a constant from this test
        return int(cur.fetchone()[0])


def lose_the_first_answer(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fault: the connection drops after the write committed, before the answer is
    sent (here: once, right after the create committed; its access record commits
    with the customer since issue 15, so the fault comes after both)."""
    lost: list[int] = []
    original = CustomerService.create

    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        answer = original(self, *args, **kwargs)
        if not lost:
            lost.append(1)
            raise ConnectionResetError("connection lost before the answer was sent")
        return answer

    monkeypatch.setattr(CustomerService, "create", create)
    return lost


def test_a_create_retried_after_its_answer_was_lost_returns_the_first_customer(client, app, agent, monkeypatch):
    lose_the_first_answer(monkeypatch)
    first = client.post(CUSTOMERS, json=customer_body(), headers=keyed(agent, "retry-1"))
    assert first.status_code == 500  # the client never learnt that it worked
    assert registrations(app) == 1

    retry = client.post(CUSTOMERS, json=customer_body(), headers=keyed(agent, "retry-1"))
    assert retry.status_code == 201
    view = retry.get_json()
    assert retry.headers["Location"] == f"{CUSTOMERS}/{view['id']}" and retry.headers["ETag"] == '"1"'
    again = client.post(CUSTOMERS, json=customer_body(), headers=keyed(agent, "retry-1"))
    assert again.status_code == 201 and again.get_json()["id"] == view["id"]
    assert view["email"] == "a***@example.org"  # a replay is masked like any read
    assert registrations(app) == 1 and directory_rows(app) == 1


def test_without_a_key_a_retry_creates_a_second_customer(client, app, agent):
    for _ in range(2):
        assert client.post(CUSTOMERS, json=customer_body(), headers=agent).status_code == 201
    assert registrations(app) == 2


def test_the_same_key_with_another_body_is_refused(client, app, agent):
    """Fault: a client bug reuses a key for a different customer."""
    first = client.post(CUSTOMERS, json=customer_body(), headers=keyed(agent, "k-2"))
    assert first.status_code == 201
    other = client.post(CUSTOMERS, json=customer_body(full_name="Grace Other"), headers=keyed(agent, "k-2"))
    assert other.status_code == 422
    assert other.get_json()["code"] == "idempotency_key_reused"
    assert registrations(app) == 1


def test_another_member_of_staffs_same_key_is_another_request(client, app, agent):
    """Attack: replaying someone else's key to read what they created."""
    colleague = quick_login(client, app, roles=["agent"], portfolios=["retail"])
    mine = client.post(CUSTOMERS, json=customer_body(), headers=keyed(agent, "shared-key"))
    theirs = client.post(CUSTOMERS, json=customer_body(), headers=keyed(colleague, "shared-key"))
    assert mine.status_code == theirs.status_code == 201
    assert mine.get_json()["id"] != theirs.get_json()["id"]
    assert registrations(app) == 2


def test_a_retry_racing_the_first_attempt_answers_from_the_winner(client, app, agent, monkeypatch):
    """Fault: the retry looks the key up before the first attempt commits, then
    writes after it did; its record collides with the first one and its whole write
    (customer included) rolls back."""
    first = client.post(CUSTOMERS, json=customer_body(), headers=keyed(agent, "race"))
    assert first.status_code == 201
    store = strongroom(app).writes.store
    original = store.find
    misses: list[int] = []

    def find_too_early(*args: Any, **kwargs: Any) -> Any:
        if not misses:
            misses.append(1)
            return None  # what the retry saw while the first was in flight
        return original(*args, **kwargs)

    monkeypatch.setattr(store, "find", find_too_early)
    retry = client.post(CUSTOMERS, json=customer_body(), headers=keyed(agent, "race"))
    assert misses and retry.status_code == 201
    assert retry.get_json()["id"] == first.get_json()["id"]
    assert registrations(app) == 1 and directory_rows(app) == 1


def test_a_change_retried_with_its_now_stale_if_match_answers_the_first_change(client, app, agent):
    """Fault: a PATCH's answer lost; the retry still carries If-Match "1"."""
    created = client.post(CUSTOMERS, json=customer_body(), headers=agent).get_json()
    url = f"{CUSTOMERS}/{created['id']}"
    headers = {**keyed(agent, "patch-1"), "If-Match": '"1"'}
    first = client.patch(url, json={"risk_rating": "high"}, headers=headers)
    assert first.status_code == 200 and first.get_json()["version"] == 2
    retry = client.patch(url, json={"risk_rating": "high"}, headers=headers)
    assert retry.status_code == 200 and retry.get_json()["version"] == 2 and retry.headers["ETag"] == '"2"'
    assert client.get(url, headers=agent).get_json()["version"] == 2


def test_an_interaction_retried_is_recorded_once(client, app, agent):
    created = client.post(CUSTOMERS, json=customer_body(), headers=agent).get_json()
    url = f"{CUSTOMERS}/{created['id']}/interactions"
    body = {"kind": "call", "channel": "phone", "notes": "asked about fees"}
    first = client.post(url, json=body, headers=keyed(agent, "call-1"))
    retry = client.post(url, json=body, headers=keyed(agent, "call-1"))
    assert first.status_code == retry.status_code == 201
    assert retry.get_json()["interaction_id"] == first.get_json()["interaction_id"]
    assert len(client.get(url, headers=agent).get_json()["items"]) == 1


@pytest.mark.parametrize("key", ["", "with space", "x" * 256, "naïve"])
def test_a_malformed_key_is_refused(client, app, agent, key):
    response = client.post(CUSTOMERS, json=customer_body(), headers=keyed(agent, key))
    assert response.status_code == 422
    assert registrations(app) == 0


@pytest.mark.controls("ASVS-V14")
def test_no_personal_data_is_kept_with_the_outcome(client, app, agent, tmp_path: Path, database_url):
    """The stored outcome holds neither the body nor a key a client filled with an email."""
    body = customer_body(email="planted.idem@example.org")
    response = client.post(CUSTOMERS, json=body, headers=keyed(agent, "planted.idem@example.org"))
    assert response.status_code == 201
    built = app.extensions["strongroom"]
    with built.events_db.transaction(write=False) as cur:
        cur.execute("SELECT * FROM idempotency")
        rows = cur.fetchall()
    assert len(rows) == 1
    assert "planted" not in repr(rows) and "Plantedname" not in repr(rows)
    if database_url.startswith("sqlite"):
        raw = (tmp_path / "strongroom.sqlite").read_bytes()
        for wal in tmp_path.glob("strongroom.sqlite-*"):
            raw += wal.read_bytes()
        assert b"planted.idem" not in raw


def test_a_key_is_kept_for_24_hours_then_means_a_new_request(client, app, agent, monkeypatch):
    """Fault: a retry arriving after the outcome expired is a new write (and the key's
    old record gives way to the new one)."""
    first = client.post(CUSTOMERS, json=customer_body(), headers=keyed(agent, "day-old"))
    writes = strongroom(app).writes
    later = datetime.now(UTC) + timedelta(hours=23, minutes=59)
    monkeypatch.setattr(writes, "clock", lambda: later)
    within = client.post(CUSTOMERS, json=customer_body(), headers=keyed(agent, "day-old"))
    assert within.get_json()["id"] == first.get_json()["id"] and registrations(app) == 1
    expired = datetime.now(UTC) + timedelta(hours=24, minutes=1)
    monkeypatch.setattr(writes, "clock", lambda: expired)
    after = client.post(CUSTOMERS, json=customer_body(), headers=keyed(agent, "day-old"))
    assert after.status_code == 201 and after.get_json()["id"] != first.get_json()["id"]
    again = client.post(CUSTOMERS, json=customer_body(), headers=keyed(agent, "day-old"))
    assert again.get_json()["id"] == after.get_json()["id"]
    assert registrations(app) == 2
