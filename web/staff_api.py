"""`/api/v1/staff`, `/api/v1/approvals`, `/api/v1/break-glass` (R2.5, R2.8, R2.9).

Thin views: parse strictly, call one use case of `StaffAdministration` (which
decides who may), dump. A change held for a second approver answers 202 with the
approval's id and where to find it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from application.staff_admin import PendingApproval
from web import openapi
from web.auth import current_actor, staff_admin
from web.auth_api import doc_body, doc_response, dump, load
from web.schemas_auth import (
    ApprovalExecutedSchema,
    ApprovalListSchema,
    ApprovalPendingSchema,
    BreakGlassGrantSchema,
    BreakGlassListSchema,
    BreakGlassSchema,
    RoleChangeSchema,
    StaffCreatedSchema,
    StaffCreateSchema,
    StaffListSchema,
    StaffSchema,
)

blueprint = Blueprint("staff_api", __name__, url_prefix="/api/v1")


def _pending(pending: PendingApproval) -> Response:
    return dump(ApprovalPendingSchema, {"approval_id": pending.approval_id, "status": "pending"}, 202)


@blueprint.post("/staff")
def create_staff() -> Response:
    body = load(StaffCreateSchema)
    result = staff_admin().create_staff(current_actor(), **body)
    if isinstance(result, PendingApproval):
        return _pending(result)
    return dump(StaffCreatedSchema, {"id": result.staff_id, "username": result.username,
                                     "one_time_password": result.one_time_password}, 201)


@blueprint.get("/staff")
def list_staff() -> Response:
    return dump(StaffListSchema, {"staff": staff_admin().list_staff(current_actor())})


@blueprint.post("/staff/<staff_id>/roles")
def change_roles(staff_id: str) -> Response:
    body = load(RoleChangeSchema)
    result = staff_admin().change_roles(current_actor(), staff_id, grant=body["grant"], revoke=body["revoke"])
    if isinstance(result, PendingApproval):
        return _pending(result)
    return dump(StaffSchema, result)


@blueprint.get("/approvals")
def list_approvals() -> Response:
    return dump(ApprovalListSchema, {"approvals": staff_admin().pending_approvals(current_actor())})


@blueprint.post("/approvals/<approval_id>/approve")
def approve(approval_id: str) -> Response:
    return dump(ApprovalExecutedSchema, staff_admin().approve(current_actor(), approval_id))


@blueprint.post("/break-glass")
def start_break_glass() -> Response:
    body = load(BreakGlassSchema)
    return dump(BreakGlassGrantSchema, staff_admin().start_break_glass(current_actor(), **body), 201)


@blueprint.get("/break-glass")
def list_break_glass() -> Response:
    return dump(BreakGlassListSchema, {"grants": staff_admin().break_glass_grants(current_actor())})


# -- the OpenAPI description ------------------------------------------------------------------

_E401 = doc_response("Error", "No live session.")
_E403 = doc_response("Error", "Not allowed (codes `forbidden`, `self_role_change`, `self_approval`, "
                       "`password_change_required`).")
_E404 = doc_response("Error", "No such record.")
_E422 = doc_response("Error", "The body is not valid (unknown fields are refused: no mass assignment).")
_PENDING = doc_response("ApprovalPending", "Held for a second, different approver (R2.9).")


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


OPERATIONS: dict[str, dict[str, Any]] = {
    "/api/v1/staff": {
        "post": {
            "operationId": "createStaff", "tags": ["staff"],
            "summary": "Create an account with a one-time password (staff:manage); privileged roles wait for approval.",
            "requestBody": doc_body("StaffCreate"),
            "responses": {"201": doc_response("StaffCreated", "Created."), "202": _PENDING, "401": _E401,
                          "403": _E403, "409": doc_response("Error", "The username is taken."), "422": _E422},
        },
        "get": {
            "operationId": "listStaff", "tags": ["staff"],
            "summary": "Every account, without secrets (staff:read).",
            "responses": {"200": doc_response("StaffList", "Accounts."), "401": _E401, "403": _E403},
        },
    },
    "/api/v1/staff/{staff_id}/roles": {"post": {
        "operationId": "changeRoles", "tags": ["staff"],
        "summary": "Grant and revoke roles (staff:manage); never one's own; privileged grants wait for approval.",
        "parameters": [_path_param("staff_id")],
        "requestBody": doc_body("RoleChange"),
        "responses": {"200": doc_response("Staff", "Changed."), "202": _PENDING, "401": _E401, "403": _E403,
                      "404": _E404, "422": _E422},
    }},
    "/api/v1/approvals": {"get": {
        "operationId": "listApprovals", "tags": ["approvals"],
        "summary": "Pending requests (approvals:decide).",
        "responses": {"200": doc_response("ApprovalList", "Pending requests."), "401": _E401, "403": _E403},
    }},
    "/api/v1/approvals/{approval_id}/approve": {"post": {
        "operationId": "approve", "tags": ["approvals"],
        "summary": "Approve and carry out a request; the requester (or its subject) cannot.",
        "parameters": [_path_param("approval_id")],
        "responses": {"200": doc_response("ApprovalExecuted", "Approved and carried out."), "401": _E401,
                      "403": _E403, "404": _E404,
                      "409": doc_response("Error", "Already decided, or the username was taken meanwhile.")},
    }},
    "/api/v1/break-glass": {
        "post": {
            "operationId": "startBreakGlass", "tags": ["break-glass"],
            "summary": "Emergency access to a portfolio for at most 60 minutes, with a reason (break_glass:use).",
            "requestBody": doc_body("BreakGlass"),
            "responses": {"201": doc_response("BreakGlassGrant", "Granted and recorded."), "401": _E401,
                          "403": _E403, "422": _E422},
        },
        "get": {
            "operationId": "listBreakGlass", "tags": ["break-glass"],
            "summary": "Every break-glass grant, newest first, for review.",
            "responses": {"200": doc_response("BreakGlassList", "Grants."), "401": _E401, "403": _E403},
        },
    },
}

openapi.register_operations(OPERATIONS)
