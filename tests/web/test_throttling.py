"""Throttling and the search oracle (R2.6, R2.11, R2.3, R3.2; issue 10, items 1 and 8),
through Flask's client. The attacks over real TLS are in tests/e2e/test_throttling_serve.py.
"""

from __future__ import annotations

import pytest

from tests.web.customers_support import access_records_since, plant_customer, position, strongroom
from tests.web.helpers import PASSWORD, MovableClock, components, create_staff, quick_login, use_clock


def _search(client, headers, **query):
    return client.get("/api/v1/customers", query_string=query, headers=headers)


# -- searching by a field one may not reveal (R2.11) -------------------------------------------


@pytest.mark.parametrize("field, value", [("pan", "4111111111111111"), ("national_id", "QQ123456C")])
def test_an_agent_may_not_search_by_a_field_they_cannot_reveal(client, app, field, value):
    plant_customer(app)
    agent = quick_login(client, app, roles=["agent"], portfolios=["retail"])
    since = position(app)
    response = _search(client, agent, **{field: value})
    assert response.status_code == 403
    assert response.get_json()["code"] == "search_not_allowed"
    assert value not in response.get_data(as_text=True)
    refused = access_records_since(app, since)
    assert [(r.kind, r.outcome, r.details["reason"]) for r in refused] == [
        ("denied", "denied", "search_field_not_allowed")]


def test_each_role_searches_by_what_it_may_reveal_and_kyc_by_anything(client, app):
    plant_customer(app)
    cases = {
        # role: (email, phone, national_id, pan)
        "agent": (200, 200, 403, 403),
        "supervisor": (200, 200, 200, 403),
        "dpo": (200, 200, 200, 403),
        "compliance_officer": (200, 200, 200, 200),
        "auditor": (403, 403, 403, 403),
    }
    query = {"email": "ada.planted@example.org", "phone": "+44 7700 900123",
             "national_id": "QQ123456C", "pan": "4111111111111111"}
    for role, expected in cases.items():
        headers = quick_login(client, app, roles=[role], portfolios=["retail"])
        got = tuple(_search(client, headers, **{field: query[field]}).status_code for field in query)
        assert got == expected, role


# -- every search spends the actor's budget (R2.11, R7.4) ---------------------------------------


@pytest.mark.controls("ASVS-V2")
def test_the_sixth_search_in_a_minute_answers_429_with_retry_after_and_others_are_unaffected(app_factory):
    app = app_factory(search_per_minute=5)
    client = app.test_client()
    agent = quick_login(client, app)
    other = quick_login(client, app)
    statuses = [_search(client, agent, phone=f"+44 7700 90{n:04d}").status_code for n in range(5)]
    assert statuses == [200] * 5
    refused = _search(client, agent, phone="+44 7700 900123")
    assert refused.status_code == 429
    assert refused.get_json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 12
    # Listing is a search too.
    assert _search(client, agent).status_code == 429
    assert _search(client, other, phone="+44 7700 900123").status_code == 200


def test_two_app_instances_on_one_database_share_one_budget(app_factory, database_url):
    first = app_factory(database_url=database_url, search_per_minute=4)
    second = app_factory(database_url=database_url, search_per_minute=4)
    first_client, second_client = first.test_client(), second.test_client()
    agent = quick_login(first_client, first)
    answers = []
    for n in range(6):
        client = first_client if n % 2 == 0 else second_client
        answers.append(_search(client, agent, email=f"probe{n}@example.org").status_code)
    assert answers == [200, 200, 200, 200, 429, 429]


# -- one record of one shape, hit or miss (R2.6, R3.2) -------------------------------------------


def test_a_search_matching_someone_out_of_scope_leaves_the_same_record_as_a_miss(client, app):
    plant_customer(app, portfolio="private", email="elsewhere@example.org")
    agent = quick_login(client, app, roles=["agent"], portfolios=["retail"])

    def probe(email):
        since = position(app)
        response = _search(client, agent, email=email)
        assert response.status_code == 200 and response.get_json()["items"] == []
        records = access_records_since(app, since)
        return position(app) - since, [(r.kind, r.outcome, sorted(r.details), r.customer_ids, r.fields)
                                       for r in records], records

    moved_hit, shape_hit, hit = probe("elsewhere@example.org")
    moved_miss, shape_miss, _ = probe("nobody@example.org")
    assert moved_hit == moved_miss == 1
    assert shape_hit == shape_miss
    # The audit trail still knows which customer the search confirmed.
    assert hit[0].details["out_of_scope"] and hit[0].details["by"] == "email"


def test_public_metrics_carry_no_log_position(client, app):
    plant_customer(app)
    text = client.get("/metrics").get_data(as_text=True)
    assert "position" not in text
    assert str(strongroom(app).recorder.max_notification_id()) not in [
        line.rsplit(" ", 1)[-1] for line in text.splitlines() if not line.startswith("#")]


# -- logins: per address, per account, then the lockout (R2.3, R2.11) -----------------------------


def _login(client, username, password, address):
    return client.post("/api/v1/auth/login", json={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def test_one_address_cannot_keep_an_account_locked_however_long_it_tries(client, app):
    clock = MovableClock()
    use_clock(app, clock)
    victim = quick_login(client, app, roles=["admin"], portfolios=[])
    for _hour in range(6):
        answers = [_login(client, victim.username, "wrong password, again", "203.0.113.9") for _ in range(8)]
        statuses = [a.status_code for a in answers]
        assert 429 in statuses and statuses.count(401) <= 5, statuses
        assert all(int(a.headers["Retry-After"]) >= 1 for a in answers if a.status_code == 429)
        clock.advance(minutes=41)
    # Six hours of trying from one address: the account still signs in from another.
    assert _login(client, victim.username, PASSWORD, "198.51.100.4").status_code == 200


def test_the_lockout_still_locks_an_account_attacked_from_many_addresses(client, app):
    victim = quick_login(client, app, roles=["agent"])
    for n in range(10):
        assert _login(client, victim.username, "wrong password, again", f"198.51.100.{n + 10}").status_code == 401
    # Locked: the right password is refused, from anywhere, with the same answer.
    locked = _login(client, victim.username, PASSWORD, "192.0.2.200")
    assert locked.status_code == 401 and locked.get_json()["code"] == "invalid_credentials"


def test_many_attempts_on_one_username_are_throttled_whether_or_not_it_exists(app_factory):
    app = app_factory(login_attempts_per_account=3)
    client = app.test_client()
    _, username_of_member, _ = create_staff(app)
    for username in (username_of_member, "no.such.person"):
        statuses = [_login(client, username, "wrong password, again", f"198.51.100.{n}").status_code
                    for n in range(4)]
        assert statuses == [401, 401, 401, 429], username


# -- unlock by a security officer, with a reason (R2.3, R3.1) -----------------------------------------


def test_a_security_officer_unlocks_with_a_reason_recorded_in_the_same_commit(client, app):
    victim = quick_login(client, app, roles=["agent"])
    for n in range(10):
        _login(client, victim.username, "wrong password, again", f"198.51.100.{n + 10}")
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[])
    agent = quick_login(client, app, roles=["agent"])
    path = f"/api/v1/staff/{victim.staff_id}/unlock"

    assert client.post(path, json={"reason": "confirmed by phone"}, headers=agent).status_code == 403
    assert client.post(path, json={}, headers=officer).status_code == 422
    since = position(app)
    response = client.post(path, json={"reason": "identity confirmed by call-back"}, headers=officer)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["unlocked"] is True
    store = strongroom(app)
    events = [store.mapper.to_domain_event(n) for n in store.recorder.select_notifications(start=since + 1, limit=10)]
    unlocked = [e for e in events if type(e).__name__ == "Unlocked"]
    assert len(unlocked) == 1 and unlocked[0].reason == "identity confirmed by call-back"
    assert str(unlocked[0].originator_id) == victim.staff_id
    assert _login(client, victim.username, PASSWORD, "192.0.2.201").status_code == 200
    again = client.post(path, json={"reason": "twice"}, headers=officer)
    assert again.status_code == 409 and again.get_json()["code"] == "not_locked"


def test_a_refused_unlock_leaves_the_account_locked(client, app):
    victim = quick_login(client, app, roles=["agent"])
    for n in range(10):
        _login(client, victim.username, "wrong password, again", f"198.51.100.{n + 10}")
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[])
    # A reason the domain refuses: nothing is saved, so the lock stays.
    response = client.post(f"/api/v1/staff/{victim.staff_id}/unlock", json={"reason": "   "}, headers=officer)
    assert response.status_code == 422
    identity = components(app).identity
    assert identity.throttle.locked_until(victim.staff_id, identity.now()) is not None


def test_a_full_hashing_pool_answers_503_at_once(app):
    hasher = components(app).identity.hasher
    assert hasher._slots.acquire(blocking=False)  # another login holds the only slot
    try:
        client = app.test_client()
        response = _login(client, "anyone", "any password at all", "192.0.2.9")
        assert response.status_code == 503
        assert response.get_json()["code"] == "busy"
        assert response.headers["Retry-After"] == "1"
    finally:
        hasher._slots.release()
    assert _login(app.test_client(), "anyone", "any password at all", "192.0.2.9").status_code == 401
