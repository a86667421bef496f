"""`/api/v1/auth`: login with password then TOTP, step-up, password change, logout,
and one's sessions (R2.1-R2.4). Thin views: parse, call one use case, dump."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Response

from web.auth import activation, current_actor, identity, unauthenticated
from web.openapi import AUTHENTICATED, WITH_BODY, Blueprint
from web.schemas_auth import (
    ActivateSchema,
    LoginSchema,
    LoginStartedSchema,
    MfaSchema,
    PasswordChangedSchema,
    PasswordChangeSchema,
    SessionPageSchema,
    SessionsQuerySchema,
    SessionOpenedSchema,
    StepUpResultSchema,
    StepUpSchema,
)

blueprint = Blueprint("auth", __name__, url_prefix="/api/v1/auth",
                      description="Login (password, then TOTP), step-up, password change, sessions.")

# One answer for every login failure, whatever its cause (R2.3).
_FAILED = ("Code `invalid_credentials`: the same answer for an unknown user, a wrong password or code, "
           "and a locked account.")


def _present(value: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(value).items() if v is not None}


@blueprint.post("/login")
@blueprint.public
@blueprint.arguments(LoginSchema)
@blueprint.response(200, LoginStartedSchema, description="Password accepted; second factor needed.")
@blueprint.errors(*WITH_BODY, 429, e401=_FAILED,
                  e503="Every password check is busy (code `busy`), or the database is unavailable; "
                       "`Retry-After` says when to try again.")
def login(body: dict[str, Any]) -> dict[str, Any]:
    """Password step: returns a single-use challenge for /auth/mfa (and a TOTP URI at first login)."""
    with unauthenticated():
        return _present(identity().login(body["username"], body["password"]))


@blueprint.post("/activate")
@blueprint.public
@blueprint.arguments(ActivateSchema)
@blueprint.response(200, LoginStartedSchema, description="Code accepted and password set; enrol TOTP next.")
@blueprint.errors(*WITH_BODY, 503, e401=_FAILED + " Also a wrong, used or expired activation code.",
                  e422="The new password breaks the rules (the code is not spent).")
def activate(body: dict[str, Any]) -> dict[str, Any]:
    """First sign-in of an account made through the API (R2.9): the activation code
    mailed to the person, and their own new password; answers like /auth/login, with
    the TOTP URI to enrol at /auth/mfa."""
    with unauthenticated():
        return _present(activation().activate(body["username"], body["code"], body["new_password"]))


@blueprint.post("/mfa")
@blueprint.public
@blueprint.arguments(MfaSchema)
@blueprint.response(200, SessionOpenedSchema, description="A new session.")
@blueprint.errors(*WITH_BODY, 503, e401=_FAILED)
def mfa(body: dict[str, Any]) -> dict[str, Any]:
    """Second factor: a TOTP code (each accepted once) or a recovery code opens a session."""
    with unauthenticated():
        return _present(identity().complete_mfa(body["challenge"], body["code"]))


@blueprint.post("/step-up")
@blueprint.arguments(StepUpSchema)
@blueprint.response(200, StepUpResultSchema, description="Stepped up.")
@blueprint.errors(*AUTHENTICATED, *WITH_BODY, e403="Code `step_up_failed`, or `password_change_required`.")
def step_up(body: dict[str, Any]) -> dict[str, Any]:
    """A fresh TOTP code allows, for 5 minutes, reveals, break-glass, approvals, role
    changes and a password change."""
    return {"stepped_up_until": identity().step_up(current_actor(), body["code"])}


@blueprint.post("/password")
@blueprint.arguments(PasswordChangeSchema)
@blueprint.response(200, PasswordChangedSchema, description="Changed; the caller's other sessions ended.")
@blueprint.errors(*AUTHENTICATED, *WITH_BODY,
                  e403="Code `step_up_required`: no step-up (POST /api/v1/auth/step-up) in the last 5 minutes; "
                       "a password change needs one (R2.11).",
                  e422="Wrong current password, or the new one breaks the rules; `errors` names the field.")
def change_password(body: dict[str, Any]) -> dict[str, Any]:
    """Change one's password (step-up first; required first of all after a one-time password)."""
    identity().change_password(current_actor(), body["current_password"], body["new_password"])
    return {"password_changed": True}  # nosec B105 - a flag, not a password


@blueprint.post("/logout")
@blueprint.response(204, description="Ended; the token no longer works.")
@blueprint.errors(*AUTHENTICATED)
def logout() -> Response:
    """End this session."""
    identity().logout(current_actor())
    return Response(status=204)


@blueprint.get("/sessions")
@blueprint.arguments(SessionsQuerySchema, location="query")
@blueprint.response(200, SessionPageSchema, description="Live sessions (one page: `next_cursor` is null).")
@blueprint.errors(*AUTHENTICATED, 400, 422, e404="Another's sessions without sessions:manage.")
def list_sessions(query: dict[str, Any]) -> dict[str, Any]:
    """One's live sessions (a security officer: anyone's, by staff_id). Never tokens."""
    sessions = identity().list_sessions(current_actor(), query.get("staff_id"))
    return {"items": sessions, "next_cursor": None}


@blueprint.delete("/sessions/<session_id>")
@blueprint.response(204, description="Ended.")
@blueprint.errors(*AUTHENTICATED, e404="No such live session that the caller may end.")
def end_session(session_id: str) -> Response:
    """End one session: one's own, or anyone's with sessions:manage."""
    identity().end_session(current_actor(), session_id)
    return Response(status=204)
