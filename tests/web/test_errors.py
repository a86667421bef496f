"""The one error table: every error is `{"code", "status", "message", "errors"?}`, never a trace."""

from __future__ import annotations

import io
import json
import sqlite3

import psycopg
import pytest
from eventsourcing.persistence import InterfaceError as LibraryInterfaceError
from eventsourcing.persistence import OperationalError as LibraryOperationalError
from flask import abort, request
from psycopg_pool import PoolTimeout, TooManyRequests
from marshmallow import ValidationError

from application.errors import (
    AnonymousWrite,
    CustomerErased,
    CustomerNotFound,
    StoreUnavailable,
    ValidationFailed,
    VersionConflict,
)
from domain.errors import InvalidField
from infrastructure.faults import DeadlineExceeded
from infrastructure.sql import DatabaseUnavailable
from web import auth
from web.app import MAX_BODY_BYTES
from web.errors import RETRY_AFTER_SECONDS, UNAVAILABLE_MESSAGE

PLANTED = "planted-secret-ada@example.org"
CUSTOMER_ID = "0b8e4a5e-8d8e-4c1b-9a47-3f0b1e6c2d11"

RAISERS = {
    "not_found": lambda: CustomerNotFound(CUSTOMER_ID),
    "erased": lambda: CustomerErased(CUSTOMER_ID),
    "invalid": lambda: ValidationFailed({"email": ["not an email address"]}),
    "stale": lambda: VersionConflict(CUSTOMER_ID, 7),
    "store_down": lambda: StoreUnavailable(f"store down at {PLANTED}"),
    "db_down": lambda: DatabaseUnavailable(f"cannot open SQLite database: /srv/{PLANTED}"),
    "anonymous": AnonymousWrite,
    "schema": lambda: ValidationError({"address": {"country": ["Missing data for required field."]}}),
    "domain": lambda: InvalidField("cards.0.pan", "Luhn check digit"),
}


def _wrapped(outer: type[Exception], inner: Exception) -> Exception:
    """`outer` raised from `inner`, as the event-sourcing library wraps a driver's error."""
    try:
        raise outer(str(inner)) from inner
    except Exception as exc:  # noqa: BLE001 - returned for the view to raise
        return exc


def _sqlite_error(errorname: str) -> sqlite3.OperationalError:
    # sqlite3 sets the code on the errors it raises; tests/web/test_store_faults.py
    # provokes real ones (a locked file, a full database).
    exc = sqlite3.OperationalError(f"{errorname.lower()} in /srv/{PLANTED}.sqlite")
    exc.sqlite_errorname = errorname
    return exc


# Each store fault a view can meet, untranslated, under the name of the fault.
STORE_FAULTS = {
    "pg_connection_refused": lambda: psycopg.OperationalError(f"connection to {PLANTED} refused"),
    "pg_connection_closed": lambda: psycopg.InterfaceError(f"the connection to {PLANTED} is closed"),
    "pg_disk_full": lambda: psycopg.errors.DiskFull(f"could not extend file for {PLANTED}"),
    "pg_admin_shutdown": lambda: psycopg.errors.AdminShutdown(f"terminating {PLANTED}"),
    "pg_lock_timeout": lambda: psycopg.errors.LockNotAvailable(f"lock on {PLANTED}"),
    "pg_serialization": lambda: psycopg.errors.SerializationFailure(f"could not serialize {PLANTED}"),
    "pool_timeout": lambda: PoolTimeout(f"couldn't get a connection to {PLANTED} after 5 sec"),
    "pool_too_many_waiting": lambda: TooManyRequests(f"pool {PLANTED} has 8 requests waiting"),
    "library_operational": lambda: _wrapped(
        LibraryOperationalError, psycopg.OperationalError(f"server {PLANTED} closed the connection")),
    "library_interface": lambda: _wrapped(
        LibraryInterfaceError, psycopg.InterfaceError(f"connection to {PLANTED} closed")),
    "library_operational_alone": lambda: LibraryOperationalError(f"down at {PLANTED}"),
    "library_over_sqlite_full": lambda: _wrapped(LibraryOperationalError, _sqlite_error("SQLITE_FULL")),
    "sqlite_locked": lambda: _sqlite_error("SQLITE_BUSY"),
    "sqlite_disk_io": lambda: _sqlite_error("SQLITE_IOERR_WRITE"),
    "sqlite_full": lambda: _sqlite_error("SQLITE_FULL"),
    "deadline_passed": lambda: DeadlineExceeded(f"waited for {PLANTED}"),
}
RAISERS.update(STORE_FAULTS)
RAISERS["sqlite_no_such_table"] = lambda: _wrapped(LibraryOperationalError, _sqlite_error("SQLITE_ERROR"))


@pytest.fixture
def app(app_factory, monkeypatch):
    # Routes made up for these tests: what they test is the error shape, not sign-in
    # (every real /api/v1 route needs a session: tests/web/test_auth_api.py).
    monkeypatch.setattr(auth, "PUBLIC_RULES", auth.PUBLIC_RULES | {
        "/api/v1/echo", "/api/v1/boom", "/api/v1/raise/<name>", "/api/v1/teapot", "/api/v1/abort"})
    app = app_factory()

    @app.post("/api/v1/echo")
    def echo():
        return {"received": request.get_json()}

    @app.get("/api/v1/boom")
    def boom():
        raise RuntimeError(f"exploded while handling {PLANTED}")

    @app.get("/api/v1/raise/<name>")
    def raise_named(name):
        raise RAISERS[name]()

    @app.get("/api/v1/teapot")
    def teapot():
        abort(418)

    @app.get("/api/v1/abort")
    def aborted():
        abort(500, description=f"aborted over {PLANTED}")

    return app


def assert_error_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["code"] == code
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) <= {"code", "status", "message", "errors", "request_id"}
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "<html" not in text.lower()
    return body


def test_an_unknown_route_is_a_json_404(client):
    body = assert_error_shape(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert set(body) == {"code", "status", "message"}


def test_a_wrong_method_is_a_json_405_that_says_what_is_allowed(client):
    response = client.delete("/healthz")
    assert_error_shape(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_a_body_over_one_mebibyte_is_refused_with_413(client):
    big = json.dumps({"notes": "x" * MAX_BODY_BYTES}).encode()
    assert_error_shape(client.post("/api/v1/echo", data=big, content_type="application/json"),
                       413, "payload_too_large")


def test_a_large_body_is_refused_before_any_route_reads_it(client):
    # Even where no view would read it (an unknown path), the declared length decides.
    assert_error_shape(client.post("/api/v1/nothing-here", data=b"x" * (MAX_BODY_BYTES + 1)),
                       413, "payload_too_large")


def test_a_large_body_without_a_declared_length_is_cut_off_at_the_limit(client):
    stream = io.BytesIO(json.dumps({"notes": "x" * MAX_BODY_BYTES}).encode())
    response = client.post("/api/v1/echo", input_stream=stream, content_type="application/json",
                           headers={"Transfer-Encoding": "chunked"},
                           environ_base={"wsgi.input_terminated": True})
    assert_error_shape(response, 413, "payload_too_large")


def test_a_body_just_under_the_limit_is_accepted(client):
    payload = {"notes": "x" * (MAX_BODY_BYTES - 100)}
    response = client.post("/api/v1/echo", json=payload)
    assert response.status_code == 200


def test_malformed_json_is_a_400_that_does_not_quote_the_body(client):
    response = client.post("/api/v1/echo", data='{"email": "' + PLANTED + '",',
                           content_type="application/json")
    assert_error_shape(response, 400, "malformed_json")
    assert PLANTED not in response.get_data(as_text=True)


def test_a_body_that_is_not_json_is_a_415(client):
    assert_error_shape(client.post("/api/v1/echo", data="a=b", content_type="application/x-www-form-urlencoded"),
                       415, "unsupported_media_type")


@pytest.mark.controls("ASVS-V16")
def test_an_unexpected_exception_is_a_500_without_its_message(client, capsys):
    response = client.get("/api/v1/boom")
    body = assert_error_shape(response, 500, "internal_error")
    assert body == {
        "code": "internal_error",
        "status": 500,
        "message": "internal error",
        "request_id": response.headers["X-Request-Id"],
    }
    assert "exploded" not in response.get_data(as_text=True)
    logged = capsys.readouterr().err
    assert "RuntimeError" in logged  # the type, so an operator knows what to look for
    assert "exploded" not in logged and PLANTED not in logged
    assert "Traceback" not in logged


def test_an_aborted_request_is_the_same_internal_error(client):
    response = client.get("/api/v1/abort")
    assert_error_shape(response, 500, "internal_error")
    assert PLANTED not in response.get_data(as_text=True)


def test_an_http_error_without_an_entry_still_has_the_shape(client):
    assert_error_shape(client.get("/api/v1/teapot"), 418, "i_m_a_teapot")


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("not_found", 404, "not_found"),
        ("erased", 410, "erased"),
        ("invalid", 422, "validation_failed"),
        ("stale", 412, "version_conflict"),
        ("store_down", 503, "unavailable"),
        ("db_down", 503, "unavailable"),
        ("anonymous", 401, "unauthenticated"),
        ("schema", 422, "validation_failed"),
        ("domain", 422, "validation_failed"),
    ],
)
def test_application_errors_map_to_their_status(client, capsys, name, status, code):
    response = client.get(f"/api/v1/raise/{name}")
    assert_error_shape(response, status, code)
    assert PLANTED not in response.get_data(as_text=True)  # a library's message never leaks
    assert PLANTED not in capsys.readouterr().err


@pytest.mark.parametrize("fault", sorted(STORE_FAULTS))
@pytest.mark.controls("ASVS-V16")
def test_a_store_that_is_down_full_or_contended_answers_503_with_retry_after(client, capsys, fault):
    response = client.get(f"/api/v1/raise/{fault}")
    body = assert_error_shape(response, 503, "unavailable")
    assert body["message"] == UNAVAILABLE_MESSAGE
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert PLANTED not in response.get_data(as_text=True)
    logged = capsys.readouterr().err
    assert "dependency unavailable" in logged
    assert PLANTED not in logged  # logged by type, never by the driver's message


def test_a_wrong_statement_on_sqlite_is_a_bug_not_an_outage(client):
    # "no such table" is an OperationalError too: it must not hide behind a 503.
    response = client.get("/api/v1/raise/sqlite_no_such_table")
    assert_error_shape(response, 500, "internal_error")
    assert "Retry-After" not in response.headers


def test_validation_errors_name_fields_and_rules(client):
    assert client.get("/api/v1/raise/invalid").get_json()["errors"] == {"email": ["not an email address"]}
    assert client.get("/api/v1/raise/schema").get_json()["errors"] == {
        "address.country": ["Missing data for required field."]
    }
    assert client.get("/api/v1/raise/domain").get_json()["errors"] == {"cards.0.pan": ["Luhn check digit"]}


def test_not_found_names_only_the_id_that_was_asked_for(client):
    body = client.get("/api/v1/raise/not_found").get_json()
    assert body["message"] == f"customer {CUSTOMER_ID} not found"


# -- the real routes: flask-smorest parses, the one error table answers ------------------


def test_a_declared_body_that_is_not_json_is_a_415_from_a_real_route(client):
    response = client.post("/api/v1/auth/login", data="username=ada", content_type="text/plain")
    assert_error_shape(response, 415, "unsupported_media_type")


def test_broken_json_to_a_real_route_is_a_400_that_does_not_quote_it(client):
    response = client.post("/api/v1/auth/login", data='{"username": "' + PLANTED + '",',
                           content_type="application/json")
    assert_error_shape(response, 400, "malformed_json")
    assert PLANTED not in response.get_data(as_text=True)


def test_a_field_nobody_asked_for_is_refused_in_our_shape_without_its_value(client):
    # Mass assignment: an attacker adds `is_admin` to a login body.
    response = client.post("/api/v1/auth/login", json={"username": "ada", "password": "x", "is_admin": PLANTED})
    body = assert_error_shape(response, 422, "validation_failed")
    assert body["errors"] == {"is_admin": ["Unknown field."]}
    assert PLANTED not in response.get_data(as_text=True)


def test_the_document_lists_the_error_answers_of_every_json_operation(client):
    document = client.get("/api/v1/openapi.json").get_json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":  # the path's own, shared by its operations
                continue
            responses = operation["responses"]
            assert "default" not in responses, f"{method} {path}: every status is named, none is a catch-all"
            if "requestBody" in operation:
                assert {"400", "415", "422"} <= set(responses), f"{method} {path}"
            for status, answer in responses.items():
                if int(status) >= 400:
                    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
