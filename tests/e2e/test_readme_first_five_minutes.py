"""The README's "first five minutes" works as written, against a real `strongroom serve`.

A newcomer copies those lines into a shell: sign in as the first administrator and
replace the one-time password, bootstrap an agent, sign in as the agent, create a
customer, read its history, step up and reveal one field. This test runs that very
block (taken out of README.md, not a copy of it) from a fresh `strongroom init`, with
only the values a newcomer would paste in: the admin's password and TOTP URI; and the
port and instance folder of this test's server. If the API or the README moves on
without the other, this fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.server import ROOT, clean_env, initialise, serving

pytestmark = pytest.mark.slow


def first_five_minutes() -> str:
    section = (ROOT / "README.md").read_text().split("## Your first five minutes", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README.md's first-five-minutes section has no sh block"
    return match.group(1)


def as_pasted(script: str, admin: dict, port: int, instance: Path) -> str:
    pasted = {
        "ADMIN_PASSWORD='…'": f"ADMIN_PASSWORD='{admin['password']}'",
        "ADMIN_TOTP='otpauth://totp/Strongroom:admin?secret=…'": f"ADMIN_TOTP='{admin['totp_uri']}'",
        "https://localhost:8443": f"https://localhost:{port}",
        "--instance instance": f"--instance {instance}",
        ".venv/bin/": f"{Path(sys.executable).parent}/",
    }
    for placeholder, value in pasted.items():
        assert placeholder in script, f"the README no longer has {placeholder!r}"
        script = script.replace(placeholder, value)
    return script


def test_the_readme_walkthrough_signs_in_creates_a_customer_and_reveals(tmp_path):
    instance = tmp_path / "instance"
    admin = initialise(instance)
    with serving(instance, tmp_path / "serve.log") as server:
        script = as_pasted(first_five_minutes(), admin, server["port"], instance)
        done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=clean_env(),
                              capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert answers.count({"password_changed": True}) == 2
    assert {"code": "forbidden", "message": "not allowed", "status": 403} in answers  # admin: no customer data
    customer = json.loads((tmp_path / "customer.json").read_text())
    assert customer["full_name"] == "Ada Lovelace" and customer["email"] == "a***@example.org"
    assert {"fields": {"email": "ada@example.org"}, "id": customer["id"], "version": 1} in answers
    # The walkthrough ends with the audit replay of that customer: the reveal is in it.
    assert any(customer["id"] in line and "reveal/allowed" in line for line in done.stdout.splitlines())
