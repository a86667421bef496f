"""`strongroom serve` with the KEK in a SoftHSM2 token and no key file (R1.4).

Attack named: an operator with a shell copies the instance folder to read customers
elsewhere. After `keys rotate-kek --to pkcs11` the folder holds no KEK at all, and the
server (gunicorn: the master builds once, then forks workers that each open the token
afresh) still creates and reads customers.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.server import ROOT, call, clean_env, first_sign_in, initialise, serving, strongroom

PIN = "1234-token-pin"


def test_a_rotated_instance_serves_customers_over_tls_with_its_kek_file_deleted(tmp_path: Path, softhsm) -> None:
    softhsm.init_tokens("serve-hsm", pin=PIN)
    instance = tmp_path / "instance"
    initialise(instance)
    token_env = {**clean_env(), "STRONGROOM_PKCS11_PIN": PIN}
    rotated = subprocess.run(
        strongroom("--instance", str(instance), "keys", "rotate-kek", "--to", "pkcs11", "--token-label", "serve-hsm"),
        cwd=ROOT, env=token_env, capture_output=True, text=True, timeout=120)
    assert rotated.returncode == 0, rotated.stderr
    (instance / "kek.key").unlink()
    assert not any(p.name == "kek.key" for p in instance.rglob("*"))

    agent = staff_add_with_pin(instance)
    with serving(instance, tmp_path / "serve.log", workers=2, env={"STRONGROOM_PKCS11_PIN": PIN}) as server:
        token, _ = first_sign_in(server, agent, "quiet-harbour lanterns at noon")
        customer = {
            "type": "individual", "full_name": "Hedy Tokenheld", "date_of_birth": "1985-07-14",
            "email": "hedy.tokenheld@example.org", "phone": "+44 7700 900456", "national_id": "QQ654321A",
            "address": {"line1": "2 Planted Row", "city": "Leeds", "postcode": "LS1 4AP", "country": "GB"},
            "portfolio": "retail", "risk_rating": "medium",
        }
        for _ in range(4):  # several requests, so both workers are likely to serve one
            status, _, created = call(server, "POST", "/api/v1/customers", customer, token=token)
            assert status == 201, created
            status, _, view = call(server, "GET", f"/api/v1/customers/{created['id']}", token=token)
            assert status == 200 and view["full_name"] == "Hedy Tokenheld", view
        status, _, ready = call(server, "GET", "/readyz")
        assert status == 200, ready

    # Without the PIN the server will not start: the token stays shut.
    no_pin = subprocess.run(strongroom("--instance", str(instance), "serve", "--port", "1"),
                            cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert no_pin.returncode == 2 and "STRONGROOM_PKCS11_PIN" in no_pin.stderr + no_pin.stdout


def staff_add_with_pin(instance: Path) -> dict:
    """`staff add` run by an operator who has the token's PIN in the environment."""
    done = subprocess.run(
        strongroom("--instance", str(instance), "staff", "add", "hsm.agent", "--role", "agent",
                   "--portfolio", "retail", "--json"),
        cwd=ROOT, env={**clean_env(), "STRONGROOM_PKCS11_PIN": PIN}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    created: dict = json.loads(done.stdout)
    return created
