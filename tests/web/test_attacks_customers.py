"""Named attacks on the customer API, each a test (R1.7, R2.5-R2.7, R3.2, R7.3)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from tests.web.customers_support import (
    absent_id,
    access_records_since,
    customer_body,
    plant_customer,
    position,
    strongroom,
)
from tests.web.helpers import MovableClock, quick_login, step_up, use_clock

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def agent(client, app):
    return quick_login(client, app, roles=["agent"], portfolios=["retail"])


def raw_store_bytes(instance: Path, tmp_path: Path) -> bytes:
    """Every byte on disk: the event store, read models, keys, and their WAL files."""
    data = b""
    for folder in (instance, tmp_path):
        for path in folder.rglob("*"):
            if path.is_file():
                data += path.read_bytes()
    return data


# -- IDOR across portfolios ---------------------------------------------------------------------


@pytest.mark.controls("PCI-DSS-7.2.2", "ASVS-V8")
def test_idor_across_portfolios_is_answered_exactly_as_absent_and_recorded(client, app, agent):
    theirs = plant_customer(app, portfolio="corporate", email="corporate.planted@example.org")
    step_up(client, agent)
    attempts = [
        ("GET", "", None, {}),
        ("PATCH", "", {"risk_rating": "high"}, {"If-Match": '"1"'}),
        ("POST", "/reveal", {"fields": ["email"], "purpose": "just looking"}, {}),
        ("GET", "/history", None, {}),
        ("GET", "/interactions", None, {}),
        ("POST", "/interactions", {"kind": "note", "channel": "x", "notes": "n"}, {}),
    ]
    for method, suffix, body, extra in attempts:
        absent = absent_id()
        answers = []
        for cid in (theirs["id"], absent):
            before = position(app)
            response = client.open(f"/api/v1/customers/{cid}{suffix}", method=method, json=body,
                                   headers={**agent, **extra})
            answers.append((response.status_code, response.get_data(as_text=True).replace(cid, "ID"),
                            sorted(h for h in response.headers.keys() if h != "X-Request-Id")))
            (record,) = access_records_since(app, before)
            assert (record.kind, record.outcome, record.customer_ids) == ("denied", "not_found", [cid])
            assert record.details["reason"] == ("out_of_scope" if cid == theirs["id"] else "absent")
        assert answers[0] == answers[1], (method, suffix)
        assert answers[0][0] == 404
    # Nor does a search by their email find them; the hidden match is recorded.
    before = position(app)
    page = client.get("/api/v1/customers", query_string={"email": "corporate.planted@example.org"},
                      headers=agent).get_json()
    assert page["items"] == []
    # One search record, shaped as for a miss; the audit trail reads the hidden match in it.
    (searched,) = access_records_since(app, before)
    assert (searched.kind, searched.customer_ids, searched.details["out_of_scope"]) == ("search", [], theirs["id"])
    assert strongroom(app).customer_view(theirs["id"])["risk_rating"] == "low"  # nothing changed


# -- mass assignment ------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [
    {"id": "11111111-1111-4111-8111-111111111111"}, {"version": 7}, {"status": "closed"}, {"restricted": True},
    {"created_on": "2000-01-01T00:00:00+00:00"}, {"roles": ["admin"]}, {"is_admin": True}, {"closed_on": None},
])
@pytest.mark.controls("ASVS-V2")
def test_mass_assignment_on_create_is_refused(client, app, agent, extra):
    before = position(app)
    response = client.post("/api/v1/customers", json=customer_body(**extra), headers=agent)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == set(extra)
    assert strongroom(app).read_model.page(limit=10) == []  # nothing was created
    assert not [r for r in access_records_since(app, before) if r.kind == "view"]


@pytest.mark.parametrize("extra", [
    {"id": "11111111-1111-4111-8111-111111111111"}, {"version": 9}, {"status": "closed"}, {"restricted": False},
    {"cards": [{"pan": "5555555555554444", "expiry": "12/30"}]}, {"type": "business"}, {"modified_on": "x"},
])
def test_mass_assignment_on_patch_is_refused(client, app, agent, extra):
    cid = client.post("/api/v1/customers", json=customer_body(), headers=agent).get_json()["id"]
    response = client.patch(f"/api/v1/customers/{cid}", json={"segment": "gold", **extra},
                            headers={**agent, "If-Match": '"1"'})
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == set(extra)
    assert strongroom(app).customer_view(cid)["version"] == 1


def test_moving_a_customer_to_a_portfolio_out_of_scope_is_refused(client, app, agent):
    cid = client.post("/api/v1/customers", json=customer_body(), headers=agent).get_json()["id"]
    response = client.patch(f"/api/v1/customers/{cid}", json={"portfolio": "corporate"},
                            headers={**agent, "If-Match": '"1"'})
    assert response.status_code == 403 and response.get_json()["code"] == "portfolio_out_of_scope"
    created = client.post("/api/v1/customers", json=customer_body(portfolio="corporate"), headers=agent)
    assert created.status_code == 403 and created.get_json()["code"] == "portfolio_out_of_scope"


# -- card security codes (R1.7) --------------------------------------------------------------------

CVV = "7319"
TRACK2 = ";4111111111111111=29121010000000000000?"
# The code standing on its own: not as four hex digits inside a UUID or a request id.
CVV_ALONE = re.compile(r"(?<![0-9A-Fa-f-])" + CVV + r"(?![0-9A-Fa-f-])")
# Anything stored is JSON (sealed or not): a leaked code would be a quoted value or key.
STORED_FORMS = [f'"{CVV}"'.encode(), b'"cvv"', b'"cvc"', b'"security_code"', b'"track2"', b'"pin_block"']


@pytest.mark.parametrize(("where", "body"), [
    ("card cvv", customer_body(email="sad1.planted@example.org",
                               cards=[{"pan": "4111111111111111", "expiry": "12/29", "cvv": CVV}])),
    ("top-level cvc", customer_body(email="sad2.planted@example.org", cvc=CVV)),
    ("nested security code", customer_body(email="sad3.planted@example.org",
                                           address={"line1": "1 St", "city": "London", "country": "GB",
                                                    "security_code": CVV})),
    ("track data", customer_body(email="sad4.planted@example.org", track2=TRACK2)),
    ("PIN block", customer_body(email="sad5.planted@example.org", pin_block=CVV * 4)),
    ("swipe pasted into the PAN", customer_body(email="sad6.planted@example.org",
                                                cards=[{"pan": "4111111111111111=2912" + CVV[:2], "expiry": "12/29"}])),
])
@pytest.mark.controls("PCI-DSS-3.3.1")
def test_a_card_security_code_is_refused_and_never_logged_or_stored(client, app, agent, instance, tmp_path,
                                                                     capsys, caplog, where, body):
    caplog.set_level(logging.DEBUG)
    response = client.post("/api/v1/customers", json=body, headers=agent)
    assert response.status_code == 422, where
    reasons = [m for msgs in response.get_json()["errors"].values() for m in msgs]
    assert any("sensitive authentication data" in m for m in reasons), reasons  # refused as SAD, by name
    text = response.get_data(as_text=True)
    assert not CVV_ALONE.search(text) and TRACK2 not in text
    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text
    assert "strongroom.request" in captured.err  # the request was logged, without the code
    assert not CVV_ALONE.search(logged) and "=2912" not in logged
    assert strongroom(app).read_model.page(limit=10) == []
    stored = raw_store_bytes(instance, tmp_path)
    assert not [form for form in STORED_FORMS if form in stored] and b"=2912" not in stored
    assert body["email"].encode() not in stored


def test_a_card_security_code_in_a_patch_or_a_query_is_refused(client, app, agent):
    cid = client.post("/api/v1/customers", json=customer_body(), headers=agent).get_json()["id"]
    patched = client.patch(f"/api/v1/customers/{cid}", json={"segment": "gold", "cvv2": CVV},
                           headers={**agent, "If-Match": '"1"'})
    assert patched.status_code == 422 and CVV not in patched.get_data(as_text=True)
    queried = client.get("/api/v1/customers", query_string={"pan": "4111111111111111", "cvv": CVV}, headers=agent)
    assert queried.status_code == 422


# -- oversized and malformed bodies: 4xx, never 500 ------------------------------------------------


def test_oversized_and_malformed_bodies_are_4xx_never_500(client, app, agent):
    cid = plant_customer(app)["id"]
    nested = '{"a": ' * 100_000 + "{}" + "}" * 100_000  # deeper than any parser's recursion limit
    cases = [
        ("POST", "/api/v1/customers", {"data": b"{" + b'"x": "' + b"a" * (2 * 1024 * 1024) + b'"}',
                                       "content_type": "application/json"}, 413),
        ("POST", "/api/v1/customers", {"data": b'{"type": "individual",', "content_type": "application/json"}, 400),
        ("POST", "/api/v1/customers", {"data": b"\xff\xfe\x00garbage", "content_type": "application/json"}, 400),
        ("POST", "/api/v1/customers", {"data": b"type=individual", "content_type": "application/x-www-form-urlencoded"},
         415),
        ("POST", "/api/v1/customers", {"json": [customer_body()]}, 422),
        ("POST", "/api/v1/customers", {"json": "a string"}, 422),
        ("POST", "/api/v1/customers", {"data": "null", "content_type": "application/json"}, 422),
        ("POST", "/api/v1/customers", {}, 415),
        ("POST", "/api/v1/customers", {"json": customer_body(full_name="x" * 100_000)}, 422),
        ("POST", "/api/v1/customers", {"json": customer_body(full_name="Ada\x00Planted")}, 422),
        ("POST", "/api/v1/customers", {"json": customer_body(address="1 Street")}, 422),
        ("POST", "/api/v1/customers", {"json": customer_body(cards="4111111111111111")}, 422),
        ("POST", "/api/v1/customers", {"json": customer_body(date_of_birth="1980-02-30")}, 422),
        ("POST", "/api/v1/customers", {"json": customer_body(email=["a@example.org"])}, 422),
        ("POST", "/api/v1/customers", {"json": customer_body(risk_rating=1)}, 422),
        ("POST", "/api/v1/customers", {"data": nested, "content_type": "application/json"}, None),
        ("PATCH", f"/api/v1/customers/{cid}", {"json": {}, "headers": {"If-Match": '"1"'}}, 422),
        ("PATCH", f"/api/v1/customers/{cid}", {"json": {"address": {"city": "x"}}, "headers": {"If-Match": '"1"'}}, 422),
        ("PATCH", f"/api/v1/customers/{cid}", {"json": {"email": "not-an-email"}, "headers": {"If-Match": '"1"'}},
         422),
        ("POST", f"/api/v1/customers/{cid}/reveal", {"json": {"fields": "email", "purpose": "x"}}, 422),
        ("POST", f"/api/v1/customers/{cid}/reveal", {"json": {"fields": ["pan"], "purpose": "x"}}, 422),
        ("POST", f"/api/v1/customers/{cid}/revert", {"json": {"to": "yesterday", "reason": "x"}}, 422),
        ("POST", f"/api/v1/customers/{cid}/interactions", {"json": {"kind": "call", "channel": "a b", "notes": ""}},
         422),
        ("GET", f"/api/v1/customers/{cid}?as_of=not-a-time", {}, 422),
        ("GET", "/api/v1/customers/not-a-uuid", {}, 404),
        ("GET", "/api/v1/customers?cursor=%00%01", {}, 422),
        ("GET", "/api/v1/customers?email=" + "a" * 300, {}, 422),
        ("GET", "/api/v1/customers?phone=abc", {}, 422),
    ]
    for method, path, kwargs, want in cases:
        extra = kwargs.pop("headers", {})
        response = client.open(path, method=method, headers={**agent, **extra}, **kwargs)
        label = f"{method} {path[:60]} {str(kwargs)[:60]}"
        assert 400 <= response.status_code < 500, label
        if want is not None:
            assert response.status_code == want, label
        body = response.get_json()
        assert set(body) <= {"code", "status", "message", "errors"}, label
        assert "Traceback" not in response.get_data(as_text=True)


# -- reveal needs step-up and a purpose -------------------------------------------------------------


def test_reveal_without_step_up_is_403_step_up_required_and_recorded(client, app, agent):
    cid = plant_customer(app)["id"]
    before = position(app)
    response = client.post(f"/api/v1/customers/{cid}/reveal", json={"fields": ["email"], "purpose": "complaint"},
                           headers=agent)
    assert response.status_code == 403 and response.get_json()["code"] == "step_up_required"
    assert "ada.planted" not in response.get_data(as_text=True)
    (record,) = access_records_since(app, before)
    assert (record.kind, record.outcome, record.details["reason"]) == ("denied", "denied", "step_up_required")


def test_a_step_up_lapses_after_five_minutes(client, app, agent):
    clock = MovableClock()
    use_clock(app, clock)
    cid = plant_customer(app)["id"]
    step_up(client, agent)
    ok = client.post(f"/api/v1/customers/{cid}/reveal", json={"fields": ["phone"], "purpose": "callback"}, headers=agent)
    assert ok.status_code == 200 and ok.get_json()["fields"]["phone"] == "+447700900123"
    clock.advance(minutes=5, seconds=1)
    late = client.post(f"/api/v1/customers/{cid}/reveal", json={"fields": ["phone"], "purpose": "callback"},
                       headers=agent)
    assert late.status_code == 403 and late.get_json()["code"] == "step_up_required"


@pytest.mark.parametrize("body", [
    {"fields": ["email"]}, {"fields": ["email"], "purpose": ""}, {"fields": ["email"], "purpose": "   "},
    {"fields": ["email"], "purpose": "x" * 201}, {"fields": [], "purpose": "complaint"},
])
def test_reveal_without_a_stated_purpose_is_refused(client, app, agent, body):
    cid = plant_customer(app)["id"]
    step_up(client, agent)
    response = client.post(f"/api/v1/customers/{cid}/reveal", json=body, headers=agent)
    assert response.status_code == 422
    assert "ada.planted" not in response.get_data(as_text=True)


@pytest.mark.parametrize("body", [
    {"fields": ["email"]}, {"fields": ["email"], "purpose": "   "}, {"fields": ["email"], "purpose": "x" * 201},
])
def test_a_reveal_without_an_acceptable_purpose_is_a_recorded_refusal(client, app, agent, body):
    # The schema checks only the purpose's type, so the policy sees every attempt to
    # reveal without saying why, and records it (a bare 422 would leave no trace).
    cid = plant_customer(app)["id"]
    step_up(client, agent)
    before = position(app)
    response = client.post(f"/api/v1/customers/{cid}/reveal", json=body, headers=agent)
    assert response.status_code == 422 and "purpose" in response.get_json()["errors"]
    (record,) = access_records_since(app, before)
    assert (record.kind, record.outcome) == ("denied", "denied")
    assert record.details["reason"] == "purpose_missing"


def test_an_agent_may_not_reveal_a_restricted_field(client, app, agent):
    cid = plant_customer(app)["id"]
    step_up(client, agent)
    response = client.post(f"/api/v1/customers/{cid}/reveal", json={"fields": ["national_id"], "purpose": "KYC"},
                           headers=agent)
    assert response.status_code == 403 and response.get_json()["code"] == "field_not_revealable"
    assert response.get_json()["errors"] == {"national_id": ["not revealable for your roles"]}


# -- least privilege ---------------------------------------------------------------------------------


@pytest.mark.controls("PCI-DSS-10.2.1.4")
def test_an_admin_reading_customer_data_is_403_everywhere_and_recorded(client, app):
    admin = quick_login(client, app, roles=["admin"], portfolios=[])
    cid = plant_customer(app)["id"]
    for method, path, body in [
        ("GET", f"/api/v1/customers/{cid}", None), ("GET", "/api/v1/customers", None),
        ("GET", "/api/v1/customers?email=ada.planted@example.org", None),
        ("GET", f"/api/v1/customers/{cid}/history", None), ("GET", f"/api/v1/customers/{cid}/interactions", None),
        ("POST", f"/api/v1/customers/{cid}/reveal", {"fields": ["email"], "purpose": "curious"}),
        ("POST", "/api/v1/customers", customer_body()),
    ]:
        before = position(app)
        response = client.open(path, method=method, json=body, headers=admin)
        assert response.status_code == 403 and response.get_json()["code"] == "forbidden", path
        assert "Plantedname" not in response.get_data(as_text=True)
        (record,) = access_records_since(app, before)
        assert (record.kind, record.outcome) == ("denied", "denied")


def test_an_auditor_never_reveals_even_after_a_step_up(client, app):
    auditor = quick_login(client, app, roles=["auditor"], portfolios=[])
    cid = plant_customer(app)["id"]
    step_up(client, auditor)
    for fields in (["email"], ["full_name"], ["national_id"]):
        response = client.post(f"/api/v1/customers/{cid}/reveal", json={"fields": fields, "purpose": "audit"},
                               headers=auditor)
        assert response.status_code in (403, 422) and "ada.planted" not in response.get_data(as_text=True)
    response = client.post(f"/api/v1/customers/{cid}/reveal", json={"fields": ["email"], "purpose": "audit"},
                           headers=auditor)
    assert response.status_code == 403 and response.get_json()["code"] == "forbidden"


# -- masking per role matches the SPEC table ----------------------------------------------------------

PLAIN = {
    "full_name": "Ada Plantedname", "email": "ada.planted@example.org", "phone": "+447700900123",
    "date_of_birth": "1980-02-03", "national_id": "QQ123456C",
}
MASKED = {
    "full_name": "A*** P***", "email": "a***@example.org", "phone": "•••• 0123", "date_of_birth": "****-**-**",
    "national_id": "•••• •••• 456C",
}
# SPEC R2, default field policy (S shown, M/R masked); admin reads nothing (403).
SPEC_TABLE = {
    #                   agent supervisor compliance dpo auditor
    "full_name":        "S S S S M",
    "email":            "R R R R M",
    "phone":            "R R R R M",
    "date_of_birth":    "R R R R M",
    "address":          "R R R R M",
    "national_id":      "M R R R M",
    "bank_accounts":    "M R R R M",
}
TABLE_ROLES = ("agent", "supervisor", "compliance_officer", "dpo", "auditor")


@pytest.mark.parametrize("role", TABLE_ROLES)
@pytest.mark.controls("PCI-DSS-3.4.1")
def test_masking_per_role_matches_the_spec_table(client, app, role):
    reader = quick_login(client, app, roles=[role], portfolios=["retail"])
    cid = plant_customer(app, segment="gold")["id"]
    view = client.get(f"/api/v1/customers/{cid}", headers=reader).get_json()
    column = TABLE_ROLES.index(role)
    for field, row in SPEC_TABLE.items():
        cell = row.split()[column]
        if field in PLAIN:
            assert view[field] == (PLAIN[field] if cell == "S" else MASKED[field]), (role, field)
        elif field == "address":
            assert view[field]["line1"] == "•••" and view[field]["city"] == "London"
        else:
            assert view[field][0]["iban"] == "•••• •••• 5432"
        assert (field in view["revealable"]) == (cell == "R"), (role, field)
    # Internal fields are shown to all of them.
    assert (view["id"], view["portfolio"], view["segment"], view["risk_rating"]) == (cid, "retail", "gold", "low")
    # PAN: BIN + last four, to everyone, always; last four only for the auditor.
    (card,) = view["cards"]
    if role == "auditor":
        assert "bin" not in card and card["display"] == "•••• •••• •••• 1111"
    else:
        assert card["bin"] == "411111" and card["display"] == "411111••••••1111"
    body = json.dumps(view, ensure_ascii=False)
    assert "4111111111111111" not in body and "GB82WEST12345698765432" not in body


@pytest.mark.parametrize("role", ["admin", "security_officer"])
@pytest.mark.controls("GDPR-25")
def test_roles_without_customer_data_get_none_of_it(client, app, role):
    reader = quick_login(client, app, roles=[role], portfolios=[])
    cid = plant_customer(app)["id"]
    response = client.get(f"/api/v1/customers/{cid}", headers=reader)
    assert response.status_code == 403
    assert not UUID_RE.search(response.get_data(as_text=True).replace(cid, ""))
