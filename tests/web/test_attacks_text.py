"""Issue 10 items 5 and 6 through Flask's client, on SQLite and on PostgreSQL:
break-glass with no record, hostile text, and card data in free text (R1.7, R2.8,
R3.2; PCI DSS 3.3, 3.4). Each test performs the attack and fails if it works;
tests/e2e/test_attacks_text_tls.py repeats the main ones over TLS.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.web.customers_support import (
    customer_body,
    plant_customer,
    position,
    strongroom,
)
from tests.web.helpers import components, quick_login

ISSUE_NOTE = "card 4929381278166016 cvv 737"
PAN = "4929381278166016"
HOSTILE = ["\udfff", "\ud800", "\u202e", "\u2066", "\u200b", "\ufeff", "\x00"]


@pytest.fixture
def app(app_factory, database_url):
    return app_factory(database_url=database_url)


def grants(app):
    return components(app).staff_admin.break_glass.grants()


# -- item 5: break-glass with no record ---------------------------------------------------------


def test_break_glass_with_a_lone_surrogate_in_the_reason_leaves_no_grant_and_no_reach(app, client):
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    other = plant_customer(app, portfolio="private")
    before = position(app)
    response = client.post("/api/v1/break-glass", headers=supervisor,
                           json={"portfolio": "private", "reason": "\udfff", "minutes": 30})
    assert response.status_code == 422 and "reason" in response.get_json()["errors"]
    assert grants(app) == [] and position(app) == before  # nothing written, not even half
    assert client.get(f"/api/v1/customers/{other['id']}", headers=supervisor).status_code == 404


def _refuse_event_inserts(app):
    """Make every write to the event log fail, as a full or broken audit store would:
    a trigger on the events table of this store, either dialect."""
    recorder = strongroom(app).recorder
    table = recorder.events_table_name
    db = components(app).events_db
    with db.transaction() as cur:
        if db.dialect == "sqlite":
            cur.execute(f"CREATE TRIGGER refuse_audit BEFORE INSERT ON {table} "
                        "BEGIN SELECT RAISE(ABORT, 'audit store refuses'); END")
        else:
            cur.execute("CREATE OR REPLACE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
                        "'BEGIN RAISE EXCEPTION ''audit store refuses''; END'")
            cur.execute(f"CREATE TRIGGER refuse_audit BEFORE INSERT ON {table} "
                        "FOR EACH ROW EXECUTE FUNCTION refuse_audit()")

    def restore() -> None:
        with db.transaction() as cur:
            cur.execute("DROP TRIGGER refuse_audit" if db.dialect == "sqlite"
                        else f"DROP TRIGGER refuse_audit ON {table}")

    return restore


def test_break_glass_whose_access_record_fails_leaves_no_grant(app, client):
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    other = plant_customer(app, portfolio="private")
    restore = _refuse_event_inserts(app)
    try:
        response = client.post("/api/v1/break-glass", headers=supervisor,
                               json={"portfolio": "private", "reason": "INC-9 audit store down", "minutes": 30})
    finally:
        restore()
    assert response.status_code != 201
    # The record failed, so the grant was never written: no live grant, no reach.
    assert grants(app) == []
    assert client.get(f"/api/v1/customers/{other['id']}", headers=supervisor).status_code == 404


def test_an_approval_request_and_its_execution_commit_with_their_records_or_not_at_all(app, client):
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    approver = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    target = quick_login(client, app, roles=["agent"], portfolios=["retail"])
    approvals = components(app).staff_admin.approvals
    restore = _refuse_event_inserts(app)
    try:
        refused = client.post(f"/api/v1/staff/{target.staff_id}/roles", headers=admin,
                              json={"grant": ["security_officer"]})
    finally:
        restore()
    assert refused.status_code != 202 and approvals.approvals(status=None) == []  # no request without its record

    held = client.post(f"/api/v1/staff/{target.staff_id}/roles", headers=admin, json={"grant": ["security_officer"]})
    assert held.status_code == 202, held.get_json()
    approval_id = held.get_json()["approval_id"]
    restore = _refuse_event_inserts(app)
    try:
        failed = client.post(f"/api/v1/approvals/{approval_id}/approve", headers=approver)
    finally:
        restore()
    assert failed.status_code != 200
    # The role change, the decision's record and the request's new status commit
    # together or not at all: none happened, so the request is still open to decide.
    assert "security_officer" not in components(app).identity.staff(target.staff_id).roles
    assert approvals.approval(approval_id).status == "pending"
    assert client.post(f"/api/v1/approvals/{approval_id}/approve", headers=approver).status_code == 200
    assert "security_officer" in components(app).identity.staff(target.staff_id).roles


# -- item 5: hostile characters in every text field ----------------------------------------------


def test_every_schema_a_route_parses_with_holds_the_one_text_rule(app):
    """The rule lives once, in StrictSchema; a request schema outside it would escape it."""
    from web.schemas import StrictSchema

    parsed = [(name, parameter["schema"]) for name, view in app.view_functions.items()
              for parameter in getattr(view, "_apidoc", {}).get("arguments", {}).get("parameters", [])]
    assert len(parsed) >= 17
    for name, schema in parsed:
        schema_class = schema if isinstance(schema, type) else type(schema)
        assert issubclass(schema_class, StrictSchema), name


def _text_fields(app, client):
    """(method, path, headers, body builder, field path) for each kind of text a client sends."""
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    admin = quick_login(client, app, roles=["admin"], portfolios=[])
    cid = plant_customer(app)["id"]
    now = datetime.now(UTC).isoformat()
    address = customer_body()["address"]
    return [
        ("POST", "/api/v1/customers", supervisor, lambda v: customer_body(full_name=f"Ada{v}"), "full_name"),
        ("POST", "/api/v1/customers", supervisor,
         lambda v: customer_body(address={**address, "line1": f"1{v} Street"}), "address.line1"),
        ("POST", "/api/v1/customers", supervisor, lambda v: customer_body(email=f"a{v}@example.org"), "email"),
        ("PATCH", f"/api/v1/customers/{cid}", {**supervisor, "If-Match": '"1"'},
         lambda v: {"segment": f"gold{v}"}, "segment"),
        ("POST", f"/api/v1/customers/{cid}/interactions", supervisor,
         lambda v: {"kind": "note", "channel": "phone", "notes": f"called{v}back"}, "notes"),
        ("POST", f"/api/v1/customers/{cid}/revert", supervisor,
         lambda v: {"to": now, "reason": f"typo{v}"}, "reason"),
        ("POST", f"/api/v1/customers/{cid}/reveal", supervisor,
         lambda v: {"fields": ["email"], "purpose": f"KYC{v}"}, "purpose"),
        ("POST", "/api/v1/staff", admin,
         lambda v: {"username": "new.agent", "display_name": f"New{v}", "roles": ["agent"]}, "display_name"),
        ("POST", "/api/v1/break-glass", supervisor,
         lambda v: {"portfolio": "private", "reason": f"INC{v}", "minutes": 5}, "reason"),
        ("POST", "/api/v1/auth/login", {}, lambda v: {"username": f"admin{v}", "password": "x" * 12}, "username"),
    ]


@pytest.mark.parametrize("char", HOSTILE, ids=[f"U+{ord(c):04X}" for c in HOSTILE])
@pytest.mark.controls("ASVS-V2")
def test_hostile_characters_in_any_text_field_are_refused_and_write_nothing(app, client, char):
    for method, path, headers, body, field in _text_fields(app, client):
        before = position(app)
        response = client.open(path, method=method, headers=headers, json=body(char))
        assert response.status_code == 422, (path, field, response.get_json())
        assert field in response.get_json()["errors"], (path, field)
        assert position(app) == before, (path, field)  # a refused write writes nothing


def test_hostile_characters_in_a_query_or_a_key_are_refused(app, client):
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    response = client.get("/api/v1/customers", headers=supervisor, query_string={"email": "a\u202e@example.org"})
    assert response.status_code == 422 and "email" in response.get_json()["errors"]
    response = client.post("/api/v1/customers", headers=supervisor, json={**customer_body(), "\udfffid": 1})
    assert response.status_code == 422
    assert "\udfff" not in response.get_data(as_text=True) and "\\udfff" not in response.get_data(as_text=True)


def test_a_one_mebibyte_string_is_413_or_422_never_5xx(app, client):
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    cid = plant_customer(app)["id"]
    before = position(app)
    for size in (1024 * 1024, 1024 * 1024 - 100):
        response = client.post(f"/api/v1/customers/{cid}/interactions", headers=supervisor,
                               json={"kind": "note", "channel": "phone", "notes": "x" * size})
        assert response.status_code in (413, 422), response.status_code
    response = client.get("/api/v1/customers", headers=supervisor, query_string={"email": "x" * 1024 * 1024})
    assert response.status_code in (413, 414, 422)
    assert position(app) == before


# -- item 6: card data in free text ---------------------------------------------------------------


def _card_data_cases(app, client):
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    cid = plant_customer(app)["id"]
    address = customer_body()["address"]
    return supervisor, [
        (f"/api/v1/customers/{cid}/interactions", {"kind": "note", "channel": "phone", "notes": ISSUE_NOTE}, "notes"),
        ("/api/v1/customers", customer_body(full_name=f"Ada {PAN}"), "full_name"),
        ("/api/v1/customers", customer_body(address={**address, "line2": "4929-3812-7816-6016"}), "address.line2"),
        (f"/api/v1/customers/{cid}/revert", {"to": datetime.now(UTC).isoformat(), "reason": "cvc2: 123"}, "reason"),
        ("/api/v1/break-glass", {"portfolio": "private", "reason": f";{PAN}=28111010000?", "minutes": 5}, "reason"),
    ]


@pytest.mark.controls("PCI-DSS-3.3.1")
def test_card_data_in_free_text_is_refused_naming_the_field_never_echoing_it(app, client):
    supervisor, cases = _card_data_cases(app, client)
    for path, body, field in cases:
        before = position(app)
        response = client.post(path, headers=supervisor, json=body)
        assert response.status_code == 422, (path, response.get_json())
        assert field in response.get_json()["errors"], (path, field)
        text = response.get_data(as_text=True)
        assert PAN not in text and "4929-3812" not in text and "cvc2" not in text and ISSUE_NOTE not in text
        assert position(app) == before, path


def test_card_data_is_never_stored_nor_shown_in_an_interaction(app, client):
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    cid = plant_customer(app)["id"]
    client.post(f"/api/v1/customers/{cid}/interactions", headers=supervisor,
                json={"kind": "note", "channel": "phone", "notes": ISSUE_NOTE})
    listed = client.get(f"/api/v1/customers/{cid}/interactions", headers=supervisor)
    assert listed.status_code == 200 and PAN not in listed.get_data(as_text=True)
    assert listed.get_json()["items"] == []


def test_card_data_in_the_purpose_header_is_refused(app, client):
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    response = client.get("/api/v1/customers", headers=supervisor.with_purpose(f"call about {PAN}"))
    assert response.status_code == 422 and "X-Purpose" in response.get_json()["errors"]
    assert PAN not in response.get_data(as_text=True)


def test_the_document_calls_valid_no_text_the_api_refuses(app):
    """Found by schemathesis over TLS: a break-glass reason with a soft hyphen (U+00AD,
    a format character) matched the documented pattern, and the API refused it (422).
    Every documented pattern of a one-line text field now refuses what the text rule does."""
    import re

    document = app.test_client().get("/api/v1/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    patterns = [prop["pattern"] for schema in schemas.values() for prop in schema.get("properties", {}).values()
                if isinstance(prop, dict) and "pattern" in prop and "\\s" in prop["pattern"]]
    assert patterns, "no one-line text field states its pattern"
    for pattern in patterns:
        rule = re.compile(pattern)
        assert rule.match("a real reason")
        for refused in ("soft\u00adhyphen", "right\u200fmark", "nul\x00", "   "):
            assert not rule.match(refused), (pattern[:40], refused)
