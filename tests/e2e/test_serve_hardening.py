"""A real `strongroom serve`, attacked at the edges (issue 10, item 10; R1.6, R1.3, R7.1).

One server per store (SQLite, PostgreSQL) for the whole module. What it stops:
- a scanner finding the served port outside Mozilla "intermediate" (sslyze's own
  checker, run from its own environment against the port), or offered groups outside it (X448, P-521, FFDHE);
- a self-signed certificate usable for anything but TLS server authentication;
- gunicorn's own error pages (garbage, an oversized header, an overlong request line,
  a broken chunk) without the security headers, with a `Server` banner, or echoing
  what the client sent; and the banner on ordinary answers;
- stores, WAL, keys and checkpoint copies readable by other local users;
- a body that is not JSON reaching a view.
"""

from __future__ import annotations

import json
import socket
import ssl
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from infrastructure.tls import INTERMEDIATE_GROUPS, restrict_groups
from tests.application.conftest import customer_fields
from tests.conftest import PG_ADMIN_URL, _database_url
from tests.e2e.server import ROOT, call, first_sign_in, initialise, serving, staff_add, trusting
from web.headers import SECURITY_HEADERS

PASSWORD = "plum-coloured tractor honks at dawn"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The environment that points `strongroom` at the store (none for SQLite)."""
    if request.param == "sqlite":
        yield {}
        return
    name = f"sr_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"STRONGROOM_DATABASE_URL": _database_url(name)}
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def server(store: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("hardening") / "instance"
    initialise(folder, store)
    if store:
        config = json.loads((folder / "strongroom.json").read_text())
        (folder / "strongroom.json").write_text(json.dumps({**config, "database_url": store["STRONGROOM_DATABASE_URL"]}))
    agent = staff_add(folder, "hardening.agent", "agent", "retail")
    with serving(folder, tmp_path_factory.mktemp("serve") / "serve.log",
                 env={"STRONGROOM_CHECKPOINT_ROWS": "1"}) as running:
        token, _totp = first_sign_in(running, agent, PASSWORD)
        yield {**running, "instance": folder, "token": token, "sqlite": not store}


# -- TLS (item 10e) ------------------------------------------------------------------------------


SSLYZE = ROOT / ".venv-tools" / "sslyze" / "bin" / "python"


def test_sslyze_finds_the_served_port_compliant_with_mozilla_intermediate(server):
    # sslyze, from its own environment (scripts/setup), scans the port from outside.
    assert SSLYZE.exists(), "sslyze's environment is missing: run scripts/setup"
    done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [str(SSLYZE), str(Path(__file__).with_name("sslyze_check.py")), "127.0.0.1", str(server["port"]),
         str(server["cert"])], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["status"] == "completed", report
    assert set(report["curves"]) == {"X25519", "secp256r1", "secp384r1"}
    assert report["issues"] == {}, f"not Mozilla intermediate: {report['issues']}"


@pytest.mark.parametrize("groups", [("X448",), ("secp521r1",), ("ffdhe2048", "ffdhe3072")])
def test_a_client_offering_only_groups_outside_the_profile_is_refused(server, groups):
    client = trusting(server["cert"])
    restrict_groups(client, groups)
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", server["port"]), timeout=5) as raw:
        client.wrap_socket(raw, server_hostname="localhost").close()
    # The control: one of the profile's groups alone is enough.
    allowed = trusting(server["cert"])
    restrict_groups(allowed, (INTERMEDIATE_GROUPS[2],))
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=5) as raw:
        with allowed.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_the_self_signed_certificate_is_for_tls_server_authentication_only(server):
    cert = x509.load_pem_x509_certificate(server["cert"].read_bytes())
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not (usage.value.key_cert_sign or usage.value.crl_sign or usage.value.key_encipherment)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    authority = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    subject = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert authority.key_identifier == subject.digest == x509.SubjectKeyIdentifier.from_public_key(
        cert.public_key()).digest


# -- gunicorn's own answers (item 10d) ------------------------------------------------------------

MARKER = "planted-7c1e"
GARBAGE = {
    "malformed_request_line": f"{MARKER} <script>\r\n\r\n".encode(),
    "oversized_header": f"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-{MARKER}: {'a' * 9000}\r\n\r\n".encode(),
    "overlong_request_line": f"GET /{MARKER}{'a' * 9000} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode(),
    "too_many_headers": ("GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                         + "".join(f"X-{MARKER}-{n}: 1\r\n" for n in range(120)) + "\r\n").encode(),
    "broken_chunk": (f"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     f"Transfer-Encoding: chunked\r\n\r\n{MARKER}\r\n").encode(),
    "bad_http_version": f"GET /healthz HTTP/7.{MARKER}\r\nHost: localhost\r\n\r\n".encode(),
}


def raw_exchange(server: dict[str, Any], payload: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send `payload` as is over TLS; (status line, headers in lower case, body)."""
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as raw:
        with trusting(server["cert"]).wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(payload)
            received = b""
            while True:
                try:
                    chunk = tls.recv(65536)
                except (ssl.SSLError, ConnectionResetError):
                    break
                if not chunk:
                    break
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        assert name.lower() not in headers, f"duplicate header {name}"
        headers[name.lower()] = value.strip()
    return status, headers, body


@pytest.mark.parametrize("attack", sorted(GARBAGE))
def test_gunicorns_own_error_pages_carry_the_security_headers_and_no_banner(server, attack):
    status, headers, body = raw_exchange(server, GARBAGE[attack])
    code = int(status.split()[1])
    assert 400 <= code < 500, status
    assert "server" not in headers
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name.lower()) == value, (name, headers)
    assert headers["cache-control"] == "no-store" and headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["status"] == code and set(answer) == {"code", "status", "message"}
    assert MARKER.encode() not in body and b"<" not in body  # nothing the client sent comes back


@pytest.mark.controls("ASVS-V13")
def test_ordinary_answers_carry_no_server_banner(server):
    for path in ("/healthz", "/api/v1/openapi.json", "/no-such-page"):
        status, headers, _ = raw_exchange(server, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        assert "server" not in headers, (path, headers)
        assert headers["strict-transport-security"] == SECURITY_HEADERS["Strict-Transport-Security"]


# -- files (item 10f) and bodies (item 10g) ----------------------------------------------------------


def test_a_form_post_is_415_over_https(server):
    status, _, answer = call(server, "POST", "/api/v1/auth/logout", token=server["token"],
                             headers={"Content-Type": "application/x-www-form-urlencoded"}, body="a")
    assert status == 415 and answer["code"] == "unsupported_media_type"
    assert call(server, "GET", "/api/v1/auth/sessions", token=server["token"])[0] == 200  # still signed in


def test_every_file_the_server_made_is_private(server):
    # A write, so that the store's WAL is live and a checkpoint copy is due.
    status, _, created = call(server, "POST", "/api/v1/customers", token=server["token"], body=customer_fields())
    assert status in (201, 202), created
    instance: Path = server["instance"]
    made = [instance, *instance.rglob("*")]
    names = {str(path.relative_to(instance)) for path in made}
    assert {"kek.key", "strongroom.json", "tls/key.pem"} <= names
    if server["sqlite"]:
        assert {"strongroom.sqlite", "strongroom.sqlite-wal", "strongroom.sqlite-shm", "keys.sqlite"} <= names
    for path in made:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
