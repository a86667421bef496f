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

from typing import Any

import pytest

from application.context import acting_as
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
