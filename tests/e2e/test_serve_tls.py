"""`strongroom serve` for real: gunicorn over TLS, from a fresh `strongroom init` (R1.6, R7.2)."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.serve import INTERMEDIATE_CIPHERS
from tests.e2e.server import ROOT, clean_env, free_port, handshake, initialise, serving, strongroom, trusting

PLANTED_EMAIL = "planted@example.org"


def legacy_client(max_version: ssl.TLSVersion, ciphers: str = "DEFAULT:@SECLEVEL=0") -> ssl.SSLContext:
    """A client willing to speak old protocols (for showing that the server will not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = max_version
    context.set_ciphers(ciphers)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@contextlib.contextmanager
def permissive_server(cert: Path, key: Path) -> Iterator[int]:
    """A TLS server that accepts anything this OpenSSL can speak: the control that
    shows the legacy client really offers what it claims, so that a refusal by
    Strongroom is Strongroom's doing and not the client's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.load_cert_chain(str(cert), str(key))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with contextlib.suppress(OSError, ssl.SSLError), context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("e2e") / "instance"
    assert initialise(folder)["username"] == "admin"
    assert (folder / "tls" / "cert.pem").is_file() and (folder / "tls" / "key.pem").is_file()
    return folder


@pytest.fixture(scope="module")
def server(instance: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with serving(instance, tmp_path_factory.mktemp("serve") / "serve.log") as running:
        yield running


def https_get(server: dict, path: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPSConnection("localhost", server["port"], context=trusting(server["cert"]), timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def test_healthz_over_https_trusting_the_instance_certificate(server):
    response = https_get(server, "/healthz")
    assert response.status == 200
    assert json.loads(response.body) == {"status": "ok"}
    assert response.getheader("Strict-Transport-Security") == "max-age=63072000; includeSubDomains"
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("X-Request-Id")


def test_readyz_metrics_and_openapi_answer_over_https(server):
    assert https_get(server, "/readyz").status == 200
    metrics = https_get(server, "/metrics")
    assert metrics.status == 200
    assert b"strongroom_http_requests_total" in metrics.body
    assert b"position" not in metrics.body  # issue 10, item 1: no log position without a session
    document = json.loads(https_get(server, "/api/v1/openapi.json").body)
    assert document["openapi"].startswith("3.1")


def test_an_unknown_route_is_a_json_error_over_https(server):
    response = https_get(server, "/api/v1/no-such-thing")
    assert response.status == 404
    assert json.loads(response.body)["code"] == "not_found"


def test_tls_1_2_uses_an_intermediate_profile_cipher(server):
    context = trusting(server["cert"])
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    version, cipher = handshake(context, server["port"])
    assert version == "TLSv1.2"
    assert cipher[0] in INTERMEDIATE_CIPHERS.split(":")


def test_tls_1_3_is_offered(server):
    version, _ = handshake(trusting(server["cert"]), server["port"])
    assert version == "TLSv1.3"


@pytest.mark.controls("GDPR-32", "ASVS-V12")
def test_a_tls_1_1_client_is_refused(server):
    client = legacy_client(ssl.TLSVersion.TLSv1_1)
    with permissive_server(server["cert"], server["key"]) as control_port:
        assert handshake(client, control_port)[0] == "TLSv1.1"  # the client can speak it
    with pytest.raises(ssl.SSLError):
        handshake(client, server["port"])


@pytest.mark.controls("ASVS-V12")
def test_a_cipher_outside_the_intermediate_profile_is_refused(server):
    # CBC with HMAC-SHA256: OpenSSL's defaults still accept it, Mozilla's intermediate does not.
    client = legacy_client(ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA256")
    with permissive_server(server["cert"], server["key"]) as control_port:
        assert handshake(client, control_port)[1][0] == "ECDHE-ECDSA-AES128-SHA256"
    with pytest.raises(ssl.SSLError):
        handshake(client, server["port"])


def test_plain_http_gets_no_answer(server):
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                received += chunk
    assert not received.startswith(b"HTTP/1.1 200")
    assert b'"status"' not in received


def test_the_server_log_has_request_lines_without_query_strings(server):
    assert https_get(server, f"/healthz?email={PLANTED_EMAIL}").status == 200
    time.sleep(0.3)
    text = server["log"].read_text()
    assert PLANTED_EMAIL not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(line.get("logger") == "strongroom.request" and line.get("rule") == "/healthz" for line in lines)


def test_serve_refuses_to_start_without_a_certificate(tmp_path):
    folder = tmp_path / "instance"
    done = subprocess.run(strongroom("--instance", str(folder), "init", "--json"), cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (folder / "tls" / "cert.pem").unlink()
    started = subprocess.run(strongroom("--instance", str(folder), "serve", "--port", str(free_port())),
                             cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert started.returncode == 2
    assert "TLS certificate not found" in started.stderr
    assert "no plain-HTTP mode" in started.stderr


def test_serve_refuses_to_start_with_the_wrong_kek(tmp_path):
    folder = tmp_path / "instance"
    done = subprocess.run(strongroom("--instance", str(folder), "init", "--json"), cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from infrastructure.crypto.kek import LocalKek

    (folder / "kek.key").unlink()
    LocalKek.create(folder / "kek.key")
    started = subprocess.run(strongroom("--instance", str(folder), "serve", "--port", str(free_port())),
                             cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert started.returncode == 2
    assert "cannot start" in started.stderr and "KEK" in started.stderr
