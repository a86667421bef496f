"""The cached principal (issue 15 item 6, R2.4, R2.10): two app instances on one
PostgreSQL database, as two gunicorn workers or two hosts run them.

The attack: a role revoked, or an account disabled, through one worker while the
person's session is served by another. With a principal cached for a while, the
revoked agent would go on reading customers until the cache lapsed. The principal
is checked against the account's stream version in the store on every request, so
the very next request on the other instance is refused; and while nothing changed,
no request replays the account (the cache works).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from application.context import acting_as
from application.identity import token_digest
from application.ports import SessionRecord
from tests.web.customers_support import OPERATOR, plant_customer
from tests.web.helpers import components, quick_login


@pytest.fixture
def two_workers(app_factory: Any, pg_url: str) -> tuple[Any, Any]:
    first = app_factory(database_url=pg_url)
    second = app_factory(database_url=pg_url)
    return first, second


def test_a_role_revoked_on_one_worker_is_refused_on_the_next_request_to_the_other(two_workers):
    first, second = two_workers
    a, b = first.test_client(), second.test_client()
    customer = plant_customer(first)
    agent = quick_login(a, first, roles=["agent"])
    admin = quick_login(a, first, roles=["admin"], stepped_up=True)
    cache = components(second).identity.principals

    assert b.get(f"/api/v1/customers/{customer['id']}", headers=agent).status_code == 200
    replays = cache.replays
    assert b.get(f"/api/v1/customers/{customer['id']}", headers=agent).status_code == 200
    assert cache.replays == replays  # nothing changed: the account was not replayed again

    revoked = a.post(f"/api/v1/staff/{agent.staff_id}/roles", headers=admin, json={"revoke": ["agent"]})
    assert revoked.status_code == 200, revoked.get_json()

    refused = b.get(f"/api/v1/customers/{customer['id']}", headers=agent)
    assert refused.status_code == 403, refused.get_json()
    assert cache.replays == replays + 1


def test_an_account_disabled_by_another_instance_loses_its_session_at_once(two_workers):
    first, second = two_workers
    b = second.test_client()
    customer = plant_customer(first)
    agent = quick_login(first.test_client(), first, roles=["agent"])
    assert b.get(f"/api/v1/customers/{customer['id']}", headers=agent).status_code == 200

    built = components(first)
    member = built.identity.staff(agent.staff_id)
    member.disable("left the company")
    with acting_as(OPERATOR):
        built.app._save(member)

    assert b.get(f"/api/v1/customers/{customer['id']}", headers=agent).status_code == 401


def test_the_account_version_comes_with_the_session_in_one_statement_and_a_change_still_shows(app_factory,
                                                                                               database_url):
    """On either store the events share the identity tables' database, so the stream
    version is read in the session's own statement: no second query per request. The
    guarantee stays: a role revoked in between is seen on the very next request."""
    app = app_factory(database_url=database_url)
    client = app.test_client()
    customer = plant_customer(app)
    agent = quick_login(client, app, roles=["agent"])
    admin = quick_login(client, app, roles=["admin"], stepped_up=True)
    built = components(app)
    assert client.get(f"/api/v1/customers/{customer['id']}", headers=agent).status_code == 200  # cached now
    asked = []
    recorder = built.app.recorder
    select_events = recorder.select_events

    def counting(*args: Any, **kwargs: Any) -> Any:
        asked.append((args, kwargs))
        return select_events(*args, **kwargs)

    recorder.select_events = counting
    try:
        assert client.get(f"/api/v1/customers/{customer['id']}", headers=agent).status_code == 200
        assert asked == []  # the version came with the session; the principal was cached
        revoked = client.post(f"/api/v1/staff/{agent.staff_id}/roles", headers=admin, json={"revoke": ["agent"]})
        assert revoked.status_code == 200, revoked.get_json()
        assert client.get(f"/api/v1/customers/{customer['id']}", headers=agent).status_code == 403
    finally:
        del recorder.select_events


def test_a_session_row_whose_staff_id_is_not_a_uuid_is_refused_401_not_500(app_factory, database_url):
    """An operator with database access plants a session for a staff id that is not a
    UUID (none is ever made so). The version lookup in the session's statement must
    find no account, not fail the statement: 401, never a 500 (found in review)."""
    app = app_factory(database_url=database_url)
    client = app.test_client()
    token = "planted-" + "x" * 40
    now = datetime.now(UTC)
    components(app).identity.sessions.create_session(
        SessionRecord(session_id=str(uuid.uuid4()), staff_id="not-a-uuid", created_at=now, last_seen_at=now,
                      expires_at=now + timedelta(hours=1)),
        token_digest(token),
    )
    response = client.get("/api/v1/customers", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.get_json()
