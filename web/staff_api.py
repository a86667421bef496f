"""`/api/v1/staff`, `/api/v1/approvals`, `/api/v1/break-glass` (R2.5, R2.8, R2.9).

Thin views: parse strictly, call one use case of `StaffAdministration` (which
decides who may), dump. A change held for a second approver answers 202 with the
approval's id and where to find it.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from application.staff_admin import PendingApproval
from web.app import components
from web.auth import current_actor, staff_admin
from web.openapi import AUTHENTICATED, WITH_BODY, Blueprint
from web.schemas_auth import (
    ApprovalExecutedSchema,
    ApprovalPageSchema,
    ApprovalPendingSchema,
    ApprovalRejectSchema,
    ApprovalSchema,
    BreakGlassGrantSchema,
    BreakGlassPageSchema,
    BreakGlassSchema,
    RoleChangeSchema,
    StaffCreatedSchema,
    StaffCreateSchema,
    StaffPageSchema,
    StaffSchema,
    UnlockedSchema,
    UnlockSchema,
)

blueprint = Blueprint("staff", __name__, url_prefix="/api/v1",
                      description="Staff accounts, approvals (separation of duties) and break-glass access.")

_FORBIDDEN = ("Not allowed (codes `forbidden`, `self_role_change`, `self_approval`, "
              "`password_change_required`).")
# R2.11: these changes need a TOTP code entered at /auth/step-up within the last 5 minutes.
_STEP_UP = (" Code `step_up_required`: no step-up (POST /api/v1/auth/step-up) in the last 5 minutes; "
            "this operation needs one.")
_CONFLICT = ("Code `separation_of_duties`: one person may not hold these roles together (R2.9); "
             "the message names the rule and the roles.")
_PENDING = "Held for a second, different approver (R2.9)."
_NO_CHANNEL = "Code `activation_unavailable`: the activation could not be sent; nothing was changed."


def _pending(pending: PendingApproval) -> Response:
    # A finished answer: the view's own schema describes the change carried out, not the wait.
    response = jsonify(ApprovalPendingSchema().dump({"approval_id": pending.approval_id, "status": "pending"}))
    response.status_code = 202
    return response


@blueprint.post("/staff")
@blueprint.arguments(StaffCreateSchema)
@blueprint.response(201, StaffCreatedSchema, description="Created.")
@blueprint.alt_response(202, schema=ApprovalPendingSchema, description=_PENDING, success=True)
@blueprint.errors(*AUTHENTICATED, *WITH_BODY, e403=_FORBIDDEN + _STEP_UP,
                  e409="Code `username_taken`: the username is taken; or " + _CONFLICT, e503=_NO_CHANNEL)
def create_staff(body: dict[str, Any]) -> Any:
    """Create an account (staff:manage, step-up): its activation code goes to the
    person's work address, never to the caller; roles that are privileged or read
    customer data wait for a second approver."""
    result = staff_admin().create_staff(current_actor(), **body)
    if isinstance(result, PendingApproval):
        return _pending(result)
    return {"id": result.staff_id, "username": result.username, "activation": "sent"}


@blueprint.post("/staff/<staff_id>/activation")
@blueprint.response(200, StaffCreatedSchema, description="A new code was sent; the earlier one no longer works.")
@blueprint.errors(*AUTHENTICATED, 404, e403=_FORBIDDEN, e409="Code `already_activated`.", e503=_NO_CHANNEL)
def resend_activation(staff_id: str) -> Any:
    """Send a new activation code to the address on record (staff:manage), for an
    account not activated yet."""
    return staff_admin().resend_activation(current_actor(), staff_id)


@blueprint.get("/staff")
@blueprint.response(200, StaffPageSchema, description="Accounts (one page: `next_cursor` is null).")
@blueprint.errors(*AUTHENTICATED)
def list_staff() -> dict[str, Any]:
    """Every account, without secrets (staff:read)."""
    return {"items": staff_admin().list_staff(current_actor()), "next_cursor": None}


@blueprint.post("/staff/<staff_id>/roles")
@blueprint.arguments(RoleChangeSchema)
@blueprint.response(200, StaffSchema, description="Changed.")
@blueprint.alt_response(202, schema=ApprovalPendingSchema, description=_PENDING, success=True)
@blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, e403=_FORBIDDEN + _STEP_UP, e409=_CONFLICT)
def change_roles(body: dict[str, Any], staff_id: str) -> Any:
    """Grant and revoke roles (staff:manage, step-up); never one's own; privileged grants wait for approval."""
    result = staff_admin().change_roles(current_actor(), staff_id, grant=body["grant"], revoke=body["revoke"])
    if isinstance(result, PendingApproval):
        return _pending(result)
    return result


@blueprint.get("/approvals")
@blueprint.response(200, ApprovalPageSchema, description="Pending requests (one page: `next_cursor` is null).")
@blueprint.errors(*AUTHENTICATED)
def list_approvals() -> dict[str, Any]:
    """Pending requests (approvals:decide)."""
    return {"items": staff_admin().pending_approvals(current_actor()), "next_cursor": None}


@blueprint.post("/approvals/<approval_id>/approve")
@blueprint.response(200, ApprovalExecutedSchema, description="Approved and carried out.")
@blueprint.errors(*AUTHENTICATED, 404, e403=_FORBIDDEN + _STEP_UP,
                  e409="Already decided (`already_decided`), expired (`approval_expired`), the username "
                       "was taken meanwhile, or " + _CONFLICT, e503=_NO_CHANNEL)
def approve(approval_id: str) -> Any:
    """Approve and carry out a request (step-up); the requester (or its subject) cannot."""
    return staff_admin().approve(current_actor(), approval_id)


@blueprint.post("/approvals/<approval_id>/reject")
@blueprint.arguments(ApprovalRejectSchema)
@blueprint.response(200, ApprovalSchema, description="Rejected; it can never be approved.")
@blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, e403=_FORBIDDEN,
                  e409="Already decided (`already_decided`) or expired (`approval_expired`).")
def reject(body: dict[str, Any], approval_id: str) -> Any:
    """Reject a request with a reason (approvals:decide); its subject cannot."""
    return staff_admin().reject(current_actor(), approval_id, reason=body["reason"])


@blueprint.post("/break-glass")
@blueprint.arguments(BreakGlassSchema)
@blueprint.response(201, BreakGlassGrantSchema, description="Granted and recorded.")
@blueprint.errors(*AUTHENTICATED, *WITH_BODY, e403="Not allowed (code `forbidden`)." + _STEP_UP)
def start_break_glass(body: dict[str, Any]) -> Any:
    """Emergency access to a portfolio for at most 60 minutes, with a reason (break_glass:use, step-up)."""
    return staff_admin().start_break_glass(current_actor(), **body)


@blueprint.get("/break-glass")
@blueprint.response(200, BreakGlassPageSchema, description="Grants, newest first (one page: `next_cursor` is null).")
@blueprint.errors(*AUTHENTICATED)
def list_break_glass() -> dict[str, Any]:
    """Every break-glass grant, newest first, for review."""
    return {"items": staff_admin().break_glass_grants(current_actor()), "next_cursor": None}


@blueprint.post("/staff/<staff_id>/unlock")
@blueprint.arguments(UnlockSchema)
@blueprint.response(200, UnlockedSchema, description="Unlocked; the reason is in the audit trail.")
@blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, e403="Needs staff:unlock (security officer).",
                  e409="The account is not locked.")
def unlock_staff(body: dict[str, Any], staff_id: str) -> Any:
    """End an account's lockout early, with a reason (staff:unlock); recorded with the change."""
    return components().lockouts.unlock(current_actor(), staff_id, body["reason"])
