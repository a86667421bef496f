"""The customer API through Flask's client, as a front end uses it (R2.6-R2.8, R3.2, R4.5)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from tests.web.customers_support import (
    OPERATOR,
    absent_id,
    access_records_since,
    customer_body,
    plant_customer,
    position,
    strongroom,
)
from tests.web.helpers import quick_login, step_up


@pytest.fixture
def agent(client, app):
    return quick_login(client, app, roles=["agent"], portfolios=["retail"])


def test_an_agent_creates_a_customer_and_gets_the_masked_view_with_an_etag(client, app, agent):
    response = client.post("/api/v1/customers", json=customer_body(), headers=agent)
    assert response.status_code == 201
    view = response.get_json()
    assert response.headers["ETag"] == '"1"' and view["version"] == 1
    assert response.headers["Location"] == f"/api/v1/customers/{view['id']}"
    assert response.headers["Cache-Control"] == "no-store"
    assert view["full_name"] == "Ada Plantedname"
    assert view["email"] == "a***@example.org" and view["phone"] == "•••• 0123"
    assert view["national_id"] == "•••• •••• 456C" and view["date_of_birth"] == "****-**-**"
    assert view["address"] == {"line1": "•••", "line2": None, "city": "London", "postcode": "•••", "country": "GB"}
    assert view["cards"][0]["display"] == "411111••••••1111" and "pan" not in view["cards"][0]
    assert view["bank_accounts"][0]["iban"] == "•••• •••• 5432"
    assert view["revealable"] == ["address", "date_of_birth", "email", "phone"]
    body = response.get_data(as_text=True)
    for planted in ("ada.planted", "QQ123456C", "4111111111111111", "GB82WEST", "Planted Street", "1980-02-03"):
        assert planted not in body


@pytest.mark.controls("PCI-DSS-10.2.1.1")
def test_reading_a_customer_answers_the_masked_view_and_records_the_access(client, app, agent):
    created = client.post("/api/v1/customers", json=customer_body(), headers=agent).get_json()
    before = position(app)
    response = client.get(f"/api/v1/customers/{created['id']}", headers=agent)
    assert response.status_code == 200 and response.headers["ETag"] == '"1"'
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == created
    (record,) = access_records_since(app, before)
    assert (record.kind, record.outcome, record.customer_ids) == ("view", "allowed", [created["id"]])
    assert {"email", "full_name", "national_id"} <= set(record.fields)


def test_unauthenticated_requests_get_401_before_anything_else(client, app):
    cid = plant_customer(app)["id"]
    for method, path in [("GET", f"/api/v1/customers/{cid}"), ("GET", "/api/v1/customers"),
                         ("POST", "/api/v1/customers"), ("PATCH", f"/api/v1/customers/{cid}")]:
        response = client.open(path, method=method, json={})
        assert response.status_code == 401 and response.get_json()["code"] == "unauthenticated"


def test_an_update_needs_if_match_428_when_missing_412_when_stale(client, app, agent):
    cid = client.post("/api/v1/customers", json=customer_body(), headers=agent).get_json()["id"]
    missing = client.patch(f"/api/v1/customers/{cid}", json={"email": "zoe@example.org"}, headers=agent)
    assert missing.status_code == 428 and missing.get_json()["code"] == "precondition_required"
    done = client.patch(f"/api/v1/customers/{cid}", json={"email": "zoe@example.org"},
                        headers={**agent, "If-Match": '"1"'})
    assert done.status_code == 200 and done.headers["ETag"] == '"2"'
    assert done.get_json()["email"] == "z***@example.org"
    stale = client.patch(f"/api/v1/customers/{cid}", json={"risk_rating": "high"}, headers={**agent, "If-Match": '"1"'})
    assert stale.status_code == 412 and stale.get_json()["code"] == "version_conflict"
    for odd in ("*", 'W/"2"', "two", '"2", "3"'):
        answer = client.patch(f"/api/v1/customers/{cid}", json={"risk_rating": "high"}, headers={**agent, "If-Match": odd})
        assert answer.status_code == 412, odd
    assert client.get(f"/api/v1/customers/{cid}", headers=agent).get_json()["risk_rating"] == "low"


def test_a_domain_rule_broken_by_a_patch_is_a_422_that_names_the_field(client, app, agent):
    cid = client.post("/api/v1/customers", json=customer_body(), headers=agent).get_json()["id"]
    response = client.patch(f"/api/v1/customers/{cid}", json={"kyc_status": "verified"},
                            headers={**agent, "If-Match": '"1"'})
    assert response.status_code == 422 and "kyc_status" in response.get_json()["errors"]


@pytest.mark.parametrize(("field", "value"), [
    ("email", "ADA.Planted@example.org"), ("phone", "+447700900123"), ("national_id", "qq 123456 c"),
    ("pan", "4111 1111 1111 1111"),
])
def test_search_by_blind_index_finds_exactly_the_customer(client, app, agent, field, value):
    cid = client.post("/api/v1/customers", json=customer_body(), headers=agent).get_json()["id"]
    client.post("/api/v1/customers", json=customer_body(email="other@example.org", phone=None, national_id=None,
                                                        cards=[], bank_accounts=[]), headers=agent)
    # An agent may search only by what they may reveal (R2.11); KYC searches by anything.
    kyc = quick_login(client, app, roles=["compliance_officer"], portfolios=[])
    before = position(app)
    response = client.get("/api/v1/customers", query_string={field: value}, headers=kyc)
    assert response.status_code == 200
    page = response.get_json()
    assert [v["id"] for v in page["items"]] == [cid] and page["next_cursor"] is None
    assert page["items"][0]["email"] == "a***@example.org"
    (record,) = access_records_since(app, before)
    assert (record.kind, record.customer_ids, record.details["by"]) == ("search", [cid], field)


def test_two_search_fields_at_once_or_a_bad_page_is_a_422(client, agent):
    for query in ({"email": "a@example.org", "phone": "+447700900123"}, {"limit": 0}, {"limit": 101},
                  {"limit": "ten"}, {"cursor": "not a cursor"}, {"status": "dormant"}, {"nickname": "ada"}):
        response = client.get("/api/v1/customers", query_string=query, headers=agent)
        assert response.status_code == 422, query


def test_listing_pages_with_an_opaque_cursor_and_stays_in_scope(client, app):
    from tests.web.helpers import quick_login

    agent = quick_login(client, app, roles=["agent"], portfolios=["retail", "retail-2"])
    mine = sorted(plant_customer(app, portfolio=p, email=None, phone=None, national_id=None, cards=[],
                                 bank_accounts=[])["id"] for p in ("retail", "retail", "retail-2", "retail-2", "retail"))
    for _ in range(3):
        plant_customer(app, portfolio="corporate")
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/customers", query_string=query, headers=agent).get_json()
        pages += 1
        seen.extend(v["id"] for v in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert base64.urlsafe_b64decode(cursor + "==").decode() == seen[-1]  # opaque, yet only an id
    assert seen == mine and pages == 3
    assert client.get("/api/v1/customers", query_string={"portfolio": "corporate"}, headers=agent).get_json() == {
        "items": [], "next_cursor": None}
    only = client.get("/api/v1/customers", query_string={"portfolio": "retail-2"}, headers=agent).get_json()
    assert len(only["items"]) == 2


def test_reveal_after_step_up_returns_plaintext_and_records_the_purpose(client, app):
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    cid = plant_customer(app)["id"]
    step_up(client, supervisor)
    before = position(app)
    response = client.post(f"/api/v1/customers/{cid}/reveal", headers=supervisor,
                           json={"fields": ["email", "national_id", "bank_accounts"], "purpose": "complaint 2026-118"})
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    revealed = response.get_json()
    assert revealed["fields"]["email"] == "ada.planted@example.org"
    assert revealed["fields"]["national_id"] == "QQ123456C"
    assert revealed["fields"]["bank_accounts"][0]["iban"] == "GB82WEST12345698765432"
    (record,) = access_records_since(app, before)
    assert (record.kind, record.fields) == ("reveal", ["bank_accounts", "email", "national_id"])
    store = strongroom(app)
    (notification,) = [n for n in store.recorder.select_notifications(start=before + 1, limit=10)]
    assert store.mapper.metadata(notification)["purpose"] == "complaint 2026-118"


def test_history_lists_each_change_with_its_actor_and_never_a_value(client, app, agent):
    cid = client.post("/api/v1/customers", json=customer_body(), headers=agent).get_json()["id"]
    client.patch(f"/api/v1/customers/{cid}", json={"email": "zoe@example.org"}, headers={**agent, "If-Match": '"1"'})
    response = client.get(f"/api/v1/customers/{cid}/history", headers=agent)
    assert response.status_code == 200
    events = response.get_json()["events"]
    assert [(e["version"], e["type"], e["actor_id"], e["via"]) for e in events] == [
        (1, "Registered", agent.staff_id, "api"), (2, "ContactChanged", agent.staff_id, "api")]
    assert events[1]["fields"] == ["email", "phone"]
    assert "zoe@example.org" not in response.get_data(as_text=True)


def test_interactions_are_recorded_and_listed(client, app, agent):
    cid = client.post("/api/v1/customers", json=customer_body(), headers=agent).get_json()["id"]
    created = client.post(f"/api/v1/customers/{cid}/interactions", headers=agent,
                          json={"kind": "call", "channel": "phone", "notes": "Asked about fees"})
    assert created.status_code == 201 and created.get_json()["notes"] == "Asked about fees"
    listing = client.get(f"/api/v1/customers/{cid}/interactions", headers=agent).get_json()
    assert [(i["kind"], i["notes"]) for i in listing["items"]] == [("call", "Asked about fees")]
    bad = client.post(f"/api/v1/customers/{cid}/interactions", headers=agent,
                      json={"kind": "telepathy", "channel": "phone", "notes": "x"})
    assert bad.status_code == 422


def test_a_customer_reads_as_of_a_past_moment_and_reverts_to_it(client, app):
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    cid = client.post("/api/v1/customers", json=customer_body(), headers=supervisor).get_json()["id"]
    moment = datetime.now(UTC).isoformat()
    client.patch(f"/api/v1/customers/{cid}", json={"email": "zoe@example.org", "risk_rating": "high"},
                 headers={**supervisor, "If-Match": '"1"'})
    past = client.get(f"/api/v1/customers/{cid}", query_string={"as_of": moment}, headers=supervisor)
    assert past.status_code == 200, past.get_json()
    assert past.get_json()["email"] == "a***@example.org" and past.get_json()["risk_rating"] == "low"
    assert past.headers["ETag"] == '"1"'
    naive = client.get(f"/api/v1/customers/{cid}", query_string={"as_of": "2026-01-01T00:00:00"}, headers=supervisor)
    assert naive.status_code == 422
    reverted = client.post(f"/api/v1/customers/{cid}/revert", headers=supervisor,
                           json={"to": moment, "reason": "entered on the wrong record"})
    assert reverted.status_code == 200, reverted.get_json()
    assert reverted.get_json()["risk_rating"] == "low" and reverted.get_json()["email"] == "a***@example.org"
    types = [e["type"] for e in client.get(f"/api/v1/customers/{cid}/history", headers=supervisor).get_json()["events"]]
    assert types[-1] == "Reverted" and "ContactChanged" in types  # history is kept, never rewritten


@pytest.mark.controls("GDPR-17", "CCPA-1798.105")
def test_an_erased_customer_is_410_gone(client, app, agent):
    from application.context import acting_as

    cid = client.post("/api/v1/customers", json=customer_body(), headers=agent).get_json()["id"]
    with acting_as(OPERATOR):
        strongroom(app).erase_customer(cid, reason="GDPR Art. 17 request")
    for path in (f"/api/v1/customers/{cid}", f"/api/v1/customers/{cid}/history", f"/api/v1/customers/{cid}/interactions"):
        response = client.get(path, headers=agent)
        assert response.status_code == 410 and response.get_json()["code"] == "erased", path
    assert client.get("/api/v1/customers", query_string={"email": "ada.planted@example.org"},
                      headers=agent).get_json()["items"] == []


def test_an_absent_customer_is_404_in_the_error_shape(client, agent):
    response = client.get(f"/api/v1/customers/{absent_id()}", headers=agent)
    assert response.status_code == 404
    assert set(response.get_json()) == {"code", "status", "message"} and response.get_json()["code"] == "not_found"


def test_the_whole_story_on_postgresql(pg_url, app_factory):  # app closes before the database goes
    app = app_factory(database_url=pg_url)
    client = app.test_client()
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    created = client.post("/api/v1/customers", json=customer_body(), headers=supervisor)
    assert created.status_code == 201
    cid = created.get_json()["id"]
    assert client.get(f"/api/v1/customers/{cid}", headers=supervisor).get_json()["email"] == "a***@example.org"
    changed = client.patch(f"/api/v1/customers/{cid}", json={"phone": "+44 7700 900999"},
                           headers={**supervisor, "If-Match": '"1"'})
    assert changed.status_code == 200 and changed.get_json()["phone"] == "•••• 0999"
    found = client.get("/api/v1/customers", query_string={"phone": "+447700900999"}, headers=supervisor).get_json()
    assert [v["id"] for v in found["items"]] == [cid]
    step_up(client, supervisor)
    revealed = client.post(f"/api/v1/customers/{cid}/reveal", json={"fields": ["phone"], "purpose": "callback"},
                           headers=supervisor)
    assert revealed.get_json()["fields"] == {"phone": "+447700900999"}
    outsider = quick_login(client, app, roles=["agent"], portfolios=["corporate"])
    assert client.get(f"/api/v1/customers/{cid}", headers=outsider).status_code == 404


def test_break_glass_reaches_the_granted_portfolio_for_its_window_and_every_access_is_flagged(client, app):
    from tests.web.helpers import MovableClock, use_clock

    clock = MovableClock()
    use_clock(app, clock)
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"], stepped_up=True)
    theirs = plant_customer(app, portfolio="corporate")["id"]
    private = plant_customer(app, portfolio="private")["id"]
    assert client.get(f"/api/v1/customers/{theirs}", headers=supervisor).status_code == 404
    granted = client.post("/api/v1/break-glass", headers=supervisor,
                          json={"portfolio": "corporate", "minutes": 30, "reason": "fraud call, customer on the line"})
    assert granted.status_code == 201, granted.get_json()
    before = position(app)
    response = client.get(f"/api/v1/customers/{theirs}", headers=supervisor)
    assert response.status_code == 200 and response.get_json()["email"] == "a***@example.org"
    (record,) = access_records_since(app, before)
    assert record.kind == "view" and record.details.get("break_glass") == "true"
    # Only the granted portfolio opens.
    assert client.get(f"/api/v1/customers/{private}", headers=supervisor).status_code == 404
    # When the window closes, the portfolio is out of scope again (the session stays alive).
    for minutes in (14, 14, 3):
        clock.advance(minutes=minutes)
        last = client.get(f"/api/v1/customers/{theirs}", headers=supervisor)
    assert last.status_code == 404
    assert client.get("/api/v1/customers", headers=supervisor).status_code == 200
