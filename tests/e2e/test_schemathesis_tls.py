"""Schemathesis' command line, with all its checks, against `strongroom serve` over real
TLS: the document served by the running server must tell the truth about every
operation, as gunicorn, TLS and every worker answer it (issue 8; R1.6, R7.6).

The in-process run (tests/web/test_schemathesis.py) fuzzes through the WSGI app with
Hypothesis; this run adds what only the real thing has: the served document, the
coverage phase (boundary values of every parameter), the stateful phase (links
between operations), and answers that cross a real socket. Both take the same
allowances (tests/web/schemathesis_config.py).

The caller is a stepped-up supervisor of `retail` with customers on file. The three
operations that end the caller's own session (logout, password change, ending a
session) are left to the in-process run, which signs in anew for each example.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server import call, clean_env, first_sign_in, initialise, monitor_alerts_only, serving, staff_add
from tests.web.schemathesis_config import config

pytestmark = pytest.mark.slow

SESSION_ENDING = r"^/api/v1/auth/(logout|password|sessions/)"
CUSTOMER = {
    "type": "individual", "full_name": "Fuzz Target", "email": "fuzz.target@example.org",
    "phone": "+44 20 7946 0011", "date_of_birth": "1980-01-01", "national_id": "QQ123411C",
    "address": {"line1": "1 Road", "city": "London", "postcode": "SW1A 1AA", "country": "GB"},
    "portfolio": "retail", "risk_rating": "low", "kyc_status": "pending", "segment": "retail",
}


def _toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def as_toml(settings: dict[str, Any]) -> str:
    """schemathesis.toml for the two-level shape `config()` has: [checks.NAME] tables and
    an [[operations]] array whose entries hold a name and [operations.checks.NAME]."""
    lines = []
    for check, options in settings["checks"].items():
        lines.append(f"[checks.{check}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in options.items()]
    for operation in settings["operations"]:
        lines += ["", "[[operations]]", f"include-name = {_toml_value(operation['include-name'])}"]
        for check, options in operation["checks"].items():
            lines.append(f"[operations.checks.{check}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def test_schemathesis_finds_nothing_against_the_running_server(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    initialise(instance)
    monitor_alerts_only(instance)  # fuzzing looks like an oracle attack: alerted, never cut off
    supervisor = staff_add(instance, "fuzz.supervisor", "supervisor", "retail")
    with serving(instance, tmp_path / "serve.log", workers=2) as server:
        token, _ = first_sign_in(server, supervisor, "amber-kettle orchards at dusk")
        for number in range(3):
            status, _, created = call(server, "POST", "/api/v1/customers",
                                      {**CUSTOMER, "national_id": f"QQ12345{number}C"}, token=token)
            assert status == 201, created
        (tmp_path / "schemathesis.toml").write_text(as_toml(config()))
        done = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "--config-file", "schemathesis.toml", "run",
             f"https://localhost:{server['port']}/api/v1/openapi.json",
             "--checks", "all", "--header", f"Authorization: Bearer {token}",
             "--tls-verify", str(server["cert"]), "--max-examples", "10", "--generation-deterministic",
             "--workers", "2", "--exclude-path-regex", SESSION_ENDING],
            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=600,
        )
        # The caller's session outlived the run: every operation was tried signed in.
        status, _, _ = call(server, "GET", "/api/v1/auth/sessions", token=token)
        assert status == 200
    report = done.stdout
    assert done.returncode == 0, report[-6000:]
    # Every operation of the document was tested but the 3 that end the session.
    selected, total = map(int, re.search(r"(\d+) selected / (\d+) total", report).groups())
    assert selected == total - 3 and f"Tested: {selected}" in report, report[-3000:]
    assert "failures" not in report.split("SUMMARY")[-1].lower(), report[-3000:]
