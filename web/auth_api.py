"""`/api/v1/auth`: login with password then TOTP, step-up, password change, logout,
and one's sessions (R2.1-R2.4). Thin views: parse, call one use case, dump."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema

from web import openapi
from web.auth import current_actor, identity, unauthenticated
from web.schemas_auth import (
    SCHEMAS,
    LoginSchema,
    LoginStartedSchema,
    MfaSchema,
    PasswordChangedSchema,
    PasswordChangeSchema,
    SessionListSchema,
    SessionOpenedSchema,
    SessionsQuerySchema,
    StepUpResultSchema,
    StepUpSchema,
)

blueprint = Blueprint("auth_api", __name__, url_prefix="/api/v1/auth")


def load(schema: type[Schema]) -> dict[str, Any]:
    """The JSON body, parsed strictly (unknown fields: 422)."""
    loaded: dict[str, Any] = schema().load(request.get_json())
    return loaded


def dump(schema: type[Schema], value: Any, status: int = 200) -> Response:
    response = jsonify(schema().dump(value))
    response.status_code = status
    return response


@blueprint.post("/login")
def login() -> Response:
    body = load(LoginSchema)
    with unauthenticated():
        started = identity().login(body["username"], body["password"])
    result = {k: v for k, v in asdict(started).items() if v is not None}
    return dump(LoginStartedSchema, result)


@blueprint.post("/mfa")
def mfa() -> Response:
    body = load(MfaSchema)
    with unauthenticated():
        opened = identity().complete_mfa(body["challenge"], body["code"])
    result = {k: v for k, v in asdict(opened).items() if v is not None}
    return dump(SessionOpenedSchema, result)


@blueprint.post("/step-up")
def step_up() -> Response:
    body = load(StepUpSchema)
    until = identity().step_up(current_actor(), body["code"])
    return dump(StepUpResultSchema, {"stepped_up_until": until})


@blueprint.post("/password")
def change_password() -> Response:
    body = load(PasswordChangeSchema)
    identity().change_password(current_actor(), body["current_password"], body["new_password"])
    return dump(PasswordChangedSchema, {"password_changed": True})  # nosec B105 - a flag, not a password


@blueprint.post("/logout")
def logout() -> Response:
    identity().logout(current_actor())
    return Response(status=204)


@blueprint.get("/sessions")
def list_sessions() -> Response:
    query = SessionsQuerySchema().load(request.args.to_dict())
    sessions = identity().list_sessions(current_actor(), query.get("staff_id"))
    return dump(SessionListSchema, {"sessions": sessions})


@blueprint.delete("/sessions/<session_id>")
def end_session(session_id: str) -> Response:
    identity().end_session(current_actor(), session_id)
    return Response(status=204)


# -- the OpenAPI description ------------------------------------------------------------------


def doc_ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def doc_response(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": doc_ref(schema)}}}


def doc_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": doc_ref(schema)}}}


_ERRORS = {
    "401": doc_response("Error", "No live session (code `unauthenticated`)."),
    "403": doc_response("Error", "Not allowed, or `password_change_required` until the one-time password is changed."),
    "422": doc_response("Error", "The body is not valid (unknown fields are refused)."),
}
_FAILED = doc_response("Error", "Code `invalid_credentials`: the same answer for an unknown user, a wrong "
                         "password or code, and a locked account.")

OPERATIONS: dict[str, dict[str, Any]] = {
    "/api/v1/auth/login": {"post": {
        "operationId": "login", "tags": ["auth"], "security": [],
        "summary": "Password step: returns a single-use challenge for /auth/mfa (and a TOTP URI at first login).",
        "requestBody": doc_body("Login"),
        "responses": {"200": doc_response("LoginStarted", "Password accepted; second factor needed."),
                      "401": _FAILED, "422": _ERRORS["422"]},
    }},
    "/api/v1/auth/mfa": {"post": {
        "operationId": "mfa", "tags": ["auth"], "security": [],
        "summary": "Second factor: a TOTP code (each accepted once) or a recovery code opens a session.",
        "requestBody": doc_body("Mfa"),
        "responses": {"200": doc_response("SessionOpened", "A new session."),
                      "401": _FAILED, "422": _ERRORS["422"]},
    }},
    "/api/v1/auth/step-up": {"post": {
        "operationId": "stepUp", "tags": ["auth"],
        "summary": "A fresh TOTP code allows reveals for 5 minutes.",
        "requestBody": doc_body("StepUp"),
        "responses": {"200": doc_response("StepUpResult", "Stepped up."),
                      "401": _ERRORS["401"],
                      "403": doc_response("Error", "Code `step_up_failed`, or `password_change_required`."),
                      "422": _ERRORS["422"]},
    }},
    "/api/v1/auth/password": {"post": {
        "operationId": "changePassword", "tags": ["auth"],
        "summary": "Change one's password (required first of all after a one-time password).",
        "requestBody": doc_body("PasswordChange"),
        "responses": {"200": doc_response("PasswordChanged", "Changed; the caller's other sessions ended."),
                      "401": _ERRORS["401"],
                      "422": doc_response("Error", "Wrong current password, or the new one breaks the rules.")},
    }},
    "/api/v1/auth/logout": {"post": {
        "operationId": "logout", "tags": ["auth"],
        "summary": "End this session.",
        "responses": {"204": {"description": "Ended; the token no longer works."},
                      "401": _ERRORS["401"]},
    }},
    "/api/v1/auth/sessions": {"get": {
        "operationId": "listSessions", "tags": ["auth"],
        "summary": "One's live sessions (a security officer: anyone's, by staff_id). Never tokens.",
        "parameters": [{"name": "staff_id", "in": "query", "required": False, "schema": {"type": "string"}}],
        "responses": {"200": doc_response("SessionList", "Live sessions."),
                      "401": _ERRORS["401"], "403": _ERRORS["403"],
                      "404": doc_response("Error", "Another's sessions without sessions:manage."),
                      "422": doc_response("Error", "An unknown or malformed query parameter.")},
    }},
    "/api/v1/auth/sessions/{session_id}": {"delete": {
        "operationId": "endSession", "tags": ["auth"],
        "summary": "End one session: one's own, or anyone's with sessions:manage.",
        "parameters": [{"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"204": {"description": "Ended."},
                      "401": _ERRORS["401"], "403": _ERRORS["403"],
                      "404": doc_response("Error", "No such live session that the caller may end.")},
    }},
}

openapi.register_schemas(SCHEMAS)
openapi.register_operations(OPERATIONS)
