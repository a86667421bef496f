"""Issue 10 item 7 through Flask's client, on SQLite and on PostgreSQL: the scope
slips (R2.3, R2.6, R4.5; PCI DSS 8.3.4). Each test performs the attack and fails if it
works; tests/e2e/test_attacks_text_tls.py repeats two of them over TLS.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from application.context import acting_as
from tests.web.customers_support import OPERATOR, absent_id, plant_customer, strongroom
from tests.web.helpers import PASSWORD, MovableClock, components, from_a_new_address, quick_login, use_clock


@pytest.fixture
def app(app_factory, database_url):
    return app_factory(database_url=database_url)


# -- item 7: scope slips ---------------------------------------------------------------------------


def test_revert_cannot_move_a_customer_out_of_the_actors_scope(app, client):
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    customer = plant_customer(app, portfolio="private")
    moment = datetime.now(UTC).isoformat()
    with acting_as(OPERATOR):  # someone reaching both portfolios moves it into retail
        strongroom(app).update_customer(customer["id"], {"portfolio": "retail"}, expected_version=1)
    # The PATCH that would move it back out is refused...
    patched = client.patch(f"/api/v1/customers/{customer['id']}", headers={**supervisor, "If-Match": '"2"'},
                           json={"portfolio": "private"})
    assert patched.status_code == 403, patched.get_json()
    # ...and so is the revert to the moment it was there.
    reverted = client.post(f"/api/v1/customers/{customer['id']}/revert", headers=supervisor,
                           json={"to": moment, "reason": "entered on the wrong record"})
    assert reverted.status_code == 403 and reverted.get_json()["code"] == "portfolio_out_of_scope"
    assert strongroom(app).customer_view(customer["id"])["portfolio"] == "retail"
    assert strongroom(app).customer_view(customer["id"])["version"] == 2


def test_an_erased_customer_is_410_only_inside_the_actors_scope(app, client):
    inside = quick_login(client, app, roles=["agent"], portfolios=["retail"])
    outside = quick_login(client, app, roles=["agent"], portfolios=["private"])
    cid = plant_customer(app, portfolio="retail")["id"]
    with acting_as(OPERATOR):
        strongroom(app).erase_customer(cid, reason="GDPR Art. 17 request")
    assert client.get(f"/api/v1/customers/{cid}", headers=inside).status_code == 410
    for path in (f"/api/v1/customers/{cid}", f"/api/v1/customers/{cid}/history",
                 f"/api/v1/customers/{cid}/interactions"):
        erased = client.get(path, headers=outside)
        absent = client.get(path.replace(cid, absent_id()), headers=outside)
        # Out of scope, "erased" would tell that it existed: the same 404 as an absent id.
        assert erased.status_code == absent.status_code == 404, path
        assert erased.get_json()["code"] == absent.get_json()["code"] == "not_found"
        assert set(erased.get_json()) == set(absent.get_json())


def test_a_lockout_ends_the_accounts_live_sessions(app, client):
    use_clock(app, MovableClock(datetime(2026, 11, 30, 9, 0, 10, tzinfo=UTC)))
    stolen = quick_login(client, app)
    assert client.get("/api/v1/auth/sessions", headers=stolen).status_code == 200
    for _ in range(10):  # from ten addresses: one is throttled after 5 failures (item 8)
        response = client.post("/api/v1/auth/login", json={"username": stolen.username, "password": "guess-guess"},
                               environ_base=from_a_new_address())
        assert response.status_code == 401
    # Locked now: the session opened before the lock must not carry on.
    assert client.get("/api/v1/auth/sessions", headers=stolen).status_code == 401
    assert client.get("/api/v1/customers", headers=stolen).status_code == 401
    live = components(app).identity.sessions.live_sessions_of(stolen.staff_id)
    assert live == []
    # the right password does not reopen it either, during the lock
    assert client.post("/api/v1/auth/login", json={"username": stolen.username, "password": PASSWORD},
                       environ_base=from_a_new_address()).status_code == 401
