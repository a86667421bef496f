"""End to end over real TLS against `strongroom serve`: an operator creates an agent,
the agent signs in with TOTP, creates a customer, reads it masked, steps up and
reveals (R1.6, R2.2, R2.7, R3.2)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.e2e.server import call, initialise, serving, staff_add

PLANTED_EMAIL = "e2e.planted@example.org"
PLANTED_NAME = "Grace Plantedname"
NEW_PASSWORD = "quiet-harbour lanterns at noon"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("e2e-customers") / "instance"
    initialise(folder)
    return folder


@pytest.fixture(scope="module")
def agent_account(instance: Path) -> dict[str, Any]:
    created = staff_add(instance, "e2e.agent", "agent", "retail")
    assert created["username"] == "e2e.agent" and created["roles"] == ["agent"]
    return created


@pytest.fixture(scope="module")
def server(instance: Path, agent_account: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, Any]]:
    with serving(instance, tmp_path_factory.mktemp("serve-customers") / "serve.log", workers=2) as running:
        yield running


def test_an_agent_signs_in_creates_reads_masked_steps_up_and_reveals(server, agent_account):
    # Sign in with the one-time password; enrol TOTP; change the password.
    status, _, started = call(server, "POST", "/api/v1/auth/login",
                              {"username": "e2e.agent", "password": agent_account["one_time_password"]})
    assert status == 200 and started["status"] == "mfa_enrollment_required"
    totp = pyotp.parse_uri(started["totp_uri"])
    step = int(time.time()) // 30
    status, _, opened = call(server, "POST", "/api/v1/auth/mfa",
                             {"challenge": started["challenge"], "code": totp.generate_otp(step)})
    assert status == 200, opened
    token = opened["token"]
    status, _, refused = call(server, "GET", "/api/v1/customers", token=token)
    assert status == 403 and refused["code"] == "password_change_required"
    status, _, _ = call(server, "POST", "/api/v1/auth/password", token=token,
                        body={"current_password": agent_account["one_time_password"], "new_password": NEW_PASSWORD})
    assert status == 200

    # Create a customer: 201, the masked view, an ETag, no-store.
    customer = {
        "type": "individual", "full_name": PLANTED_NAME, "date_of_birth": "1985-07-14",
        "email": PLANTED_EMAIL, "phone": "+44 7700 900456", "national_id": "QQ654321A",
        "address": {"line1": "2 Planted Row", "city": "Leeds", "postcode": "LS1 4AP", "country": "GB"},
        "portfolio": "retail", "risk_rating": "medium",
        "cards": [{"pan": "5555555555554444", "expiry": "11/30"}],
    }
    status, headers, created = call(server, "POST", "/api/v1/customers", customer, token=token)
    assert status == 201, created
    assert headers["etag"] == '"1"' and headers["cache-control"] == "no-store"
    assert headers["strict-transport-security"].startswith("max-age=")
    assert created["email"] == "e***@example.org" and created["cards"][0]["display"] == "555555••••••4444"

    # Read it masked.
    status, headers, view = call(server, "GET", f"/api/v1/customers/{created['id']}", token=token)
    assert status == 200 and headers["etag"] == '"1"'
    assert view["full_name"] == PLANTED_NAME and view["phone"] == "•••• 0456"
    assert PLANTED_EMAIL not in json.dumps(view)

    # Reveal needs a step-up first.
    reveal = {"fields": ["email", "phone"], "purpose": "customer asked for a callback"}
    status, _, refused = call(server, "POST", f"/api/v1/customers/{created['id']}/reveal", reveal, token=token)
    assert status == 403 and refused["code"] == "step_up_required"
    status, _, stepped = call(server, "POST", "/api/v1/auth/step-up", {"code": totp.generate_otp(step + 1)},
                              token=token)
    assert status == 200, stepped
    status, headers, revealed = call(server, "POST", f"/api/v1/customers/{created['id']}/reveal", reveal, token=token)
    assert status == 200, revealed
    assert revealed["fields"] == {"email": PLANTED_EMAIL, "phone": "+447700900456"}
    assert headers["cache-control"] == "no-store"

    # The server's log lines carry neither the values nor the token.
    time.sleep(0.3)
    log = server["log"].read_text()
    for secret in (PLANTED_EMAIL, PLANTED_NAME, "QQ654321A", "5555555555554444", token, NEW_PASSWORD):
        assert secret not in log


def test_the_customer_api_is_not_served_without_a_token(server):
    status, headers, body = call(server, "GET", "/api/v1/customers")
    assert status == 401 and body["code"] == "unauthenticated"
    assert "bearer" in headers.get("www-authenticate", "").lower()
