"""`/api/v1/auth` through Flask's client, on SQLite and on PostgreSQL (R2.1-R2.4, R2.7).

The happy paths a member of staff walks: first login with a one-time password and
TOTP enrolment, later logins, step-up, listing and ending sessions, logout. Attacks
on the same endpoints are in test_attacks_identity.py.
"""

from __future__ import annotations

import re
import uuid

import pyotp
import pytest

from tests.web.helpers import PASSWORD, create_staff, login, quick_login, sign_in
from web import auth

NEW_PASSWORD = "lantern fish prefer the deep end"


@pytest.fixture
def app(app_factory, database_url):
    return app_factory(database_url=database_url)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.controls("PCI-DSS-8.4.2")
def test_first_login_enrols_totp_returns_recovery_codes_and_asks_for_a_new_password(app, client):
    _staff_id, username, one_time = create_staff(app, roles=["agent"])
    response = client.post("/api/v1/auth/login", json={"username": username, "password": one_time})
    assert response.status_code == 200
    started = response.get_json()
    assert started["status"] == "mfa_enrollment_required"
    assert started["totp_uri"].startswith(f"otpauth://totp/Strongroom:{username}?secret=")
    assert len(started["challenge"]) >= 22  # at least 128 random bits
    totp = pyotp.TOTP(pyotp.parse_uri(started["totp_uri"]).secret)
    response = client.post("/api/v1/auth/mfa", json={"challenge": started["challenge"], "code": totp.now()})
    assert response.status_code == 200
    opened = response.get_json()
    assert set(opened) == {"token", "session_id", "expires_at", "idle_timeout_seconds",
                           "must_change_password", "recovery_codes"}
    assert len(opened["recovery_codes"]) == 10 and opened["idle_timeout_seconds"] == 900
    assert opened["must_change_password"] is True
    response = client.post("/api/v1/auth/password", headers=bearer(opened["token"]),
                           json={"current_password": one_time, "new_password": NEW_PASSWORD})
    assert response.status_code == 200 and response.get_json() == {"password_changed": True}
    assert client.get("/api/v1/auth/sessions", headers=bearer(opened["token"])).status_code == 200


@pytest.mark.controls("PCI-DSS-8.3.1")
def test_a_later_login_asks_for_a_code_and_shows_no_secret(app, client):
    headers = login(client, app)
    response = client.post("/api/v1/auth/login", json={"username": headers.username, "password": PASSWORD})
    started = response.get_json()
    assert response.status_code == 200 and started["status"] == "mfa_required" and "totp_uri" not in started
    response = client.post("/api/v1/auth/mfa", json={"challenge": started["challenge"], "code": headers.next_code()})
    assert response.status_code == 200 and "recovery_codes" not in response.get_json()


def test_a_recovery_code_opens_a_session(app, client):
    headers = login(client, app)
    started = client.post("/api/v1/auth/login", json={"username": headers.username, "password": PASSWORD}).get_json()
    response = client.post("/api/v1/auth/mfa", json={"challenge": started["challenge"],
                                                     "code": headers.recovery_codes[0]})
    assert response.status_code == 200 and response.get_json()["token"]


def test_step_up_answers_until_when(app, client):
    headers = quick_login(client, app)
    response = client.post("/api/v1/auth/step-up", headers=headers, json={"code": headers.next_code()})
    assert response.status_code == 200
    assert set(response.get_json()) == {"stepped_up_until"}


def test_logout_ends_the_session(app, client):
    headers = quick_login(client, app)
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/auth/sessions", headers=headers).status_code == 401


def test_sessions_are_listed_without_tokens(app, client):
    headers = quick_login(client, app)
    opened, _totp, step = sign_in(client, app, headers.username, PASSWORD, headers.totp, headers.last_step)
    headers.last_step = step
    response = client.get("/api/v1/auth/sessions", headers=headers)
    assert response.status_code == 200
    sessions = response.get_json()["items"]
    assert [s["id"] for s in sessions] == [headers.session_id, opened["session_id"]]
    for session in sessions:
        assert set(session) == {"id", "staff_id", "created_at", "last_seen_at", "expires_at", "client_addr", "current"}
        assert session["client_addr"] == "127.0.0.1" and session["staff_id"] == headers.staff_id
    assert [s["current"] for s in sessions] == [True, False]
    text = response.get_data(as_text=True)
    assert headers.token not in text and opened["token"] not in text


def test_a_member_ends_their_own_other_session(app, client):
    headers = quick_login(client, app)
    opened, _totp, step = sign_in(client, app, headers.username, PASSWORD, headers.totp, headers.last_step)
    assert client.delete(f"/api/v1/auth/sessions/{opened['session_id']}", headers=headers).status_code == 204
    assert client.get("/api/v1/auth/sessions", headers=bearer(opened["token"])).status_code == 401
    assert client.get("/api/v1/auth/sessions", headers=headers).status_code == 200


def test_a_member_cannot_see_or_end_someone_elses_sessions(app, client):
    alice = quick_login(client, app)
    bob = quick_login(client, app)
    response = client.delete(f"/api/v1/auth/sessions/{bob.session_id}", headers=alice)
    assert response.status_code == 404 and response.get_json()["code"] == "not_found"
    assert client.get(f"/api/v1/auth/sessions?staff_id={bob.staff_id}", headers=alice).status_code == 404
    assert client.get("/api/v1/auth/sessions", headers=bob).status_code == 200


def test_a_security_officer_lists_and_ends_anyones_sessions(app, client):
    bob = quick_login(client, app)
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[])
    response = client.get(f"/api/v1/auth/sessions?staff_id={bob.staff_id}", headers=officer)
    assert [s["id"] for s in response.get_json()["items"]] == [bob.session_id]
    assert client.delete(f"/api/v1/auth/sessions/{bob.session_id}", headers=officer).status_code == 204
    assert client.get("/api/v1/auth/sessions", headers=bob).status_code == 401


def _concrete(rule: str) -> str:
    return re.sub(r"<[^>]+>", str(uuid.uuid4()), rule)


@pytest.mark.controls("ASVS-V4")
def test_every_api_route_except_the_login_steps_needs_a_token(app, client):
    """A new endpoint that forgot authentication fails here."""
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule in auth.PUBLIC_RULES:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(_concrete(rule.rule), method=method, json={})
            assert response.status_code == 401, (method, rule.rule)
            assert response.get_json()["code"] == "unauthenticated"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            checked += 1
    assert checked >= 12
    assert auth.PUBLIC_RULES == {"/api/v1/auth/login", "/api/v1/auth/activate", "/api/v1/auth/mfa",
                                 "/api/v1/openapi.json"}


@pytest.mark.parametrize("header", [
    "Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer ", "bearer-token", "Token abc", "Bearer " + "x" * 300,
])
def test_malformed_or_foreign_authorization_headers_are_refused(app, client, header):
    response = client.get("/api/v1/auth/sessions", headers={"Authorization": header})
    assert response.status_code == 401


def test_the_login_steps_refuse_unknown_fields_and_wrong_shapes(app, client):
    response = client.post("/api/v1/auth/login", json={"username": "x", "password": "y", "remember_me": True})
    assert response.status_code == 422 and "remember_me" in response.get_json()["errors"]
    assert client.post("/api/v1/auth/login", json={"username": "x"}).status_code == 422
    assert client.post("/api/v1/auth/login", json=["x", "y"]).status_code == 422
    assert client.post("/api/v1/auth/mfa", json={"challenge": "x", "code": 123456}).status_code == 422
    assert client.post("/api/v1/auth/login", data="username=x", content_type="text/plain").status_code == 415


def test_the_openapi_document_describes_the_auth_endpoints(app, client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["paths"]["/api/v1/auth/login"]["post"]["security"] == []
    assert document["paths"]["/api/v1/auth/mfa"]["post"]["security"] == []
    assert "security" not in document["paths"]["/api/v1/auth/logout"]["post"]
    schemas = document["components"]["schemas"]
    assert schemas["Login"]["additionalProperties"] is False
    assert set(schemas["SessionOpened"]["properties"]) >= {"token", "expires_at", "recovery_codes"}
    assert "token" not in schemas["Session"]["properties"]
