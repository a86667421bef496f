"""A real `strongroom serve` for end-to-end tests: made by `strongroom init`, started as
its own process group, reached over TLS trusting the instance's certificate.

Shared by the tests in this folder (they import from here, never from each other).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

ROOT = Path(__file__).resolve().parents[2]


def strongroom(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("strongroom")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from cli.main import run; run()", *args]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STRONGROOM_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def trusting(cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = True
    return context


def handshake(context: ssl.SSLContext, port: int) -> tuple[str | None, tuple | None]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version(), tls.cipher()


def initialise(folder: Path, env: dict[str, str] | None = None) -> dict:
    """`strongroom init --json` into `folder` (with `env` added, e.g. a database URL);
    returns the first admin it printed."""
    done = subprocess.run(strongroom("--instance", str(folder), "init", "--json"), cwd=ROOT,
                          env={**clean_env(), **(env or {})}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    admin: dict = json.loads(done.stdout)["admin"]
    return admin


def monitor_alerts_only(instance: Path) -> None:
    """On SQLite the monitor runs inside `serve` (issue 12) and acts on what looks like
    misuse: a fuzzer's or a throttle test's synthetic traffic does, by design. This sets
    every rule to record its alert only, so those tests keep their sessions."""
    from application.monitoring import alerts_only

    config = json.loads((instance / "strongroom.json").read_text())
    (instance / "strongroom.json").write_text(json.dumps({**config, "monitor_rules": json.loads(alerts_only())}))


@contextlib.contextmanager
def serving(instance: Path, log_path: Path, *, workers: int = 1,
            env: dict[str, str] | None = None, threads: int | None = None) -> Iterator[dict]:
    """`strongroom serve` on a free port, up once it completes a TLS handshake."""
    port = free_port()
    log = log_path.open("w")
    per_worker = ["--threads", str(threads)] if threads else []
    process = subprocess.Popen(
        strongroom("--instance", str(instance), "serve", "--port", str(port), "--workers", str(workers),
                   *per_worker),
        cwd=ROOT, env={**clean_env(), **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    cert = instance / "tls" / "cert.pem"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"strongroom serve exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                handshake(trusting(cert), port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"strongroom serve did not answer within 60 s:\n{log_path.read_text()}")
                time.sleep(0.2)
        yield {"port": port, "cert": cert, "key": instance / "tls" / "key.pem", "log": log_path, "process": process}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def call(server: dict[str, Any], method: str, path: str, body: Any = None, token: str | None = None,
         headers: dict[str, str] | None = None, source: str | None = None) -> tuple[int, dict[str, str], Any]:
    """One HTTPS request to the server; (status, headers in lower case, JSON body or None).
    `source` is the client's address (any of 127.0.0.0/8), for attacks from several."""
    connection = http.client.HTTPSConnection("localhost", server["port"], context=trusting(server["cert"]), timeout=30,
                                             source_address=(source, 0) if source else None)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    connection.request(method, path, body=None if body is None else json.dumps(body), headers=sent)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(raw) if raw else None


def staff_add(instance: Path, username: str, role: str | tuple[str, ...], portfolio: str | None = None,
              *, trained: bool = True) -> dict[str, Any]:
    """`strongroom staff add`, the operator's bootstrap: the new account (one role, or a
    tuple of them) and its one-time password; `trained`, then `strongroom staff training
    record` (R6.4: without a current training nobody reveals)."""
    scope = ["--portfolio", portfolio] if portfolio else []
    roles = [arg for name in ((role,) if isinstance(role, str) else role) for arg in ("--role", name)]
    done = subprocess.run(
        strongroom("--instance", str(instance), "staff", "add", username, *roles, *scope, "--json"),
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    created: dict[str, Any] = json.loads(done.stdout)
    if trained:
        done = subprocess.run(
            strongroom("--instance", str(instance), "staff", "training", "record", username,
                       "--course", "security-awareness", "--course-version", "2026.1",
                       "--completed-at", datetime.now(UTC).isoformat(), "--evidence-ref", "LMS-E2E", "--json"),
            cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["current"] is True
    return created


def first_sign_in(server: dict[str, Any], account: dict[str, Any], new_password: str) -> tuple[str, pyotp.TOTP]:
    """A bootstrapped account's first sign-in: one-time password, TOTP enrolment, a new
    password, then a step-up with the next TOTP step's code (each code counts once, and
    ±1 step is accepted). Returns the session token and the enrolled TOTP."""
    status, _, started = call(server, "POST", "/api/v1/auth/login",
                              {"username": account["username"], "password": account["one_time_password"]})
    assert status == 200 and started["status"] == "mfa_enrollment_required", started
    totp = pyotp.parse_uri(started["totp_uri"])
    step = int(time.time()) // 30
    status, _, opened = call(server, "POST", "/api/v1/auth/mfa",
                             {"challenge": started["challenge"], "code": totp.generate_otp(step)})
    assert status == 200, opened
    token: str = opened["token"]
    status, _, changed = call(server, "POST", "/api/v1/auth/password", token=token,
                              body={"current_password": account["one_time_password"], "new_password": new_password})
    assert status == 200, changed
    status, _, stepped = call(server, "POST", "/api/v1/auth/step-up", {"code": totp.generate_otp(step + 1)},
                              token=token)
    assert status == 200, stepped
    return token, totp
