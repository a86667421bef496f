"""The app factory, health, readiness, the OpenAPI document and the security headers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import psycopg
import pytest

from infrastructure.composition import ConfigurationError
from tests.conftest import PG_ADMIN_URL
from web import create_app
from web.app import close_app
from web.openapi import openapi_path

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# -- the factory ------------------------------------------------------------------------


def test_the_factory_builds_the_application_once_and_keeps_it_in_extensions(app, client):
    built = app.extensions["strongroom"]
    client.get("/healthz")
    client.get("/readyz")
    assert app.extensions["strongroom"] is built
    assert built.settings.database_url.endswith("x.sqlite")
    assert built.settings.blind_index_bits == 8


def test_importing_the_web_package_builds_nothing_and_leaves_the_metrics_mode_open():
    # `strongroom serve` sets the multiprocess metrics folder after the command
    # line has loaded: if loading it imported prometheus_client, every worker
    # would count alone and /metrics would show whichever worker was asked.
    code = (
        "import sys, web, cli.main, cli.serve\n"
        "assert 'prometheus_client' not in sys.modules, 'prometheus_client loaded'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_closing_the_app_closes_its_stores(app):
    built = app.extensions["strongroom"]
    close_app(app)
    close_app(app)  # a second close (at exit, say) is harmless
    assert built.events_db._all == []  # the SQLite handles were closed


def test_a_missing_kek_stops_the_factory_with_a_clear_message(tmp_path):
    instance = tmp_path / "empty"
    instance.mkdir()
    with pytest.raises(ConfigurationError, match="cannot start:.*kek"):
        create_app({"instance": str(instance), "database_url": f"sqlite:///{tmp_path / 'x.sqlite'}"})


def test_an_unopenable_database_stops_the_factory_with_a_clear_message(instance, tmp_path):
    with pytest.raises(ConfigurationError, match="cannot start:.*database"):
        create_app({"instance": str(instance), "database_url": f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.sqlite'}"})


@pytest.mark.slow
def test_an_unreachable_postgres_stops_the_factory_with_a_clear_message(instance):
    # Port 1 on loopback: nothing listens, the connection is refused.
    with pytest.raises(ConfigurationError, match="cannot start: cannot connect to PostgreSQL"):
        create_app({"instance": str(instance), "database_url": "postgresql://strongroom@127.0.0.1:1/strongroom"})


# -- health and readiness ---------------------------------------------------------------


def test_healthz_says_the_process_is_alive(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_answers_without_touching_the_database(app, client):
    # An orchestrator restarts unhealthy processes: a database outage must not
    # make every API process look dead.
    close_app(app)
    built = app.extensions["strongroom"]
    built.events_db.transaction = None  # any use would raise TypeError
    built.keys_db.transaction = None
    assert client.get("/healthz").status_code == 200


def test_readyz_is_ready_when_the_stores_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready"}


def test_readyz_is_not_ready_when_postgres_goes_away(app_factory, pg_url):
    app = app_factory(database_url=pg_url)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200

    name = pg_url.rpartition("/")[2]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    # The event store's pool would wait minutes for a connection; a probe that
    # hangs that long is no probe, so the answer comes within the deadline.
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    body = response.get_json()
    assert body["code"] == "not_ready"
    assert body["status"] == 503
    assert "unavailable" in body["message"]
    assert name not in response.get_data(as_text=True)  # no database names or hosts
    assert "127.0.0.1" not in response.get_data(as_text=True)

    started = time.monotonic()  # asked again while the event store still hangs
    assert client.get("/readyz").status_code == 503
    assert client.get("/metrics").status_code == 200  # a scrape is not held up either
    assert time.monotonic() - started < 10


# -- the OpenAPI document ---------------------------------------------------------------


def test_the_openapi_document_describes_the_customer_schema(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.get_data(as_text=True))
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] == "Strongroom"
    assert document["info"]["version"] == version("strongroom")
    schemas = document["components"]["schemas"]
    customer = schemas["CustomerCreate"]
    assert {"type", "full_name", "address", "portfolio", "risk_rating"} <= set(customer["required"])
    assert customer["additionalProperties"] is False  # unknown fields are refused
    assert customer["properties"]["address"] == {"$ref": "#/components/schemas/Address"}
    assert customer["properties"]["risk_rating"]["enum"] == ["low", "medium", "high"]
    assert {"Error", "Address", "Card", "BankAccount"} <= set(schemas)
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


@pytest.mark.controls("ASVS-V4")
def test_every_route_the_app_serves_is_in_the_openapi_document(app, client):
    document = client.get("/api/v1/openapi.json").get_json()
    served = {openapi_path(rule.rule) for rule in app.url_map.iter_rules()}
    assert served == set(document["paths"])
    assert set(document["paths"]) >= {"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"}


# Reachable without a session: probes, the document itself, and the two login steps.
PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/api/v1/auth/login",
                "/api/v1/auth/activate", "/api/v1/auth/mfa"}


def test_operations_need_a_token_unless_marked_public(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["security"] == [{"bearerAuth": []}]
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path in PUBLIC_PATHS:
                assert operation.get("security") == [], f"{path} should be explicitly public"
            else:
                assert "security" not in operation, f"{path} must need a token"


# -- headers on every response ----------------------------------------------------------

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/api/v1/openapi.json", 200),
        ("GET", "/api/v1/customers/no-such-thing", 404),
        ("DELETE", "/healthz", 405),
    ],
)
@pytest.mark.controls("ASVS-V14")
def test_every_response_carries_the_security_headers(client, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert UUID.match(response.headers["X-Request-Id"])
    if path.startswith("/api"):
        assert response.headers["Cache-Control"] == "no-store"


def test_a_well_formed_request_id_from_the_caller_is_kept(client):
    response = client.get("/healthz", headers={"X-Request-Id": "lb-7f3a9c21-0001"})
    assert response.headers["X-Request-Id"] == "lb-7f3a9c21-0001"


@pytest.mark.parametrize(
    "offered",
    ["short", "x" * 65, "abc def ghi", "id;<script>alert(1)</script>", "ada@example.org-0001"],
)
@pytest.mark.controls("ASVS-V1")
def test_a_malformed_request_id_is_replaced_so_it_cannot_inject_into_logs(client, offered):
    response = client.get("/healthz", headers={"X-Request-Id": offered})
    assert response.headers["X-Request-Id"] != offered
    assert UUID.match(response.headers["X-Request-Id"])


def test_each_request_gets_its_own_id(client):
    ids = {client.get("/healthz").headers["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5


def test_no_cookie_is_ever_set(client):
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/nowhere"):
        assert "Set-Cookie" not in client.get(path).headers


def test_the_factory_reads_the_instance_folder_config(tmp_path: Path):
    instance = tmp_path / "instance"
    instance.mkdir()
    from infrastructure.crypto.kek import LocalKek

    LocalKek.create(instance / "kek.key")
    (instance / "strongroom.json").write_text(json.dumps({"blind_index_bits": 9}))
    app = create_app({"instance": str(instance), "database_url": f"sqlite:///{tmp_path / 'y.sqlite'}"})
    try:
        assert app.extensions["strongroom"].settings.blind_index_bits == 9
        assert app.extensions["strongroom"].settings.instance == instance.resolve()
    finally:
        close_app(app)
