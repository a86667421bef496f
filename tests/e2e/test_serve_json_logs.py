"""Every line `strongroom serve` writes is a JSON object (R7.3), under traffic and faults.

Faults injected: a malformed JSON body, an unknown route carrying personal data in
its query string, a plain-HTTP request and a broken TLS handshake on the TLS port,
a failed sign-in, then a SIGTERM stop; and, separately, a start-up refusal (no
certificate). Warnings, library loggers and uncaught exceptions are covered in
tests/web/test_process_logging.py.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server import (
    ROOT,
    call,
    clean_env,
    free_port,
    initialise,
    serving,
    strongroom,
    trusting,
)

PLANTED_EMAIL = "planted-json@example.org"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("json-logs") / "instance"
    initialise(folder)
    return folder


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    assert lines, "serve wrote nothing"
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"line {number} of serve's output is not JSON: {line!r}")
        assert isinstance(entry, dict) and {"time", "level", "logger", "message"} <= entry.keys(), line
        parsed.append(entry)
    return parsed


def test_every_line_of_a_served_and_stopped_server_is_json(instance: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "serve.log"
    with serving(instance, log_path, workers=2) as server:
        assert call(server, "GET", "/healthz")[0] == 200
        assert call(server, "GET", f"/no/such/route?email={PLANTED_EMAIL}")[0] == 404
        assert call(server, "POST", "/api/v1/auth/login", {"username": "admin", "password": "wrong"})[0] in (401, 429)
        connection = http.client.HTTPSConnection("localhost", server["port"], timeout=30,
                                                 context=trusting(server["cert"]))
        connection.request("POST", "/api/v1/auth/login", body="{not json",
                           headers={"Content-Type": "application/json"})
        assert connection.getresponse().status == 400
        connection.close()
        with socket.create_connection(("127.0.0.1", server["port"]), timeout=5) as plain:
            plain.sendall(b"GET /healthz?email=" + PLANTED_EMAIL.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            plain.recv(100)
        with socket.create_connection(("127.0.0.1", server["port"]), timeout=5) as garbage:
            garbage.sendall(b"\x16\x03\x01\x00\x05hello")
            garbage.recv(100)
        time.sleep(0.5)
    entries = json_lines(log_path.read_text())
    assert PLANTED_EMAIL not in log_path.read_text()
    statuses = {entry.get("status") for entry in entries if entry["logger"] == "strongroom.request"}
    assert {200, 404, 400} <= statuses, statuses
    messages = [entry["message"] for entry in entries]
    assert any(message.startswith("serving https://") for message in messages)  # the start-up line, as JSON
    assert any("Shutting down" in message for message in messages)  # gunicorn's own, as JSON


def test_a_refused_start_is_a_json_line(tmp_path: Path) -> None:
    folder = tmp_path / "instance"
    initialise(folder)
    (folder / "tls" / "cert.pem").unlink()
    started = subprocess.run(strongroom("--instance", str(folder), "serve", "--port", str(free_port())),
                             cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60, check=False)
    assert started.returncode == 2
    assert started.stdout == ""
    [refusal] = json_lines(started.stderr)
    assert refusal["level"] == "error" and "TLS certificate not found" in refusal["message"]
