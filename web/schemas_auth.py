"""Schemas for the identity, staff and approval endpoints (STYLE 8).

Requests are strict: an unknown field is refused with 422, so nobody can slip
`"id"`, `"is_admin"` or `"must_change_password"` into a body (mass assignment).
Lengths here only bound the input; the rules themselves (password policy, role
names, portfolio codes) are applied by the use cases.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from application.staff_admin import BREAK_GLASS_MAX_MINUTES
from domain.staff import DEFAULT_ROLES, STAFF_STATUSES
from web.schemas import PORTFOLIO_PATTERN, TEXT_PATTERN, FreeText, PageSchema, StrictSchema, WholeNumber

_SECRET = validate.Length(1, 1024)  # bounded so a megabyte "password" costs nothing to refuse
# The domain refuses an unknown role in its own words; the document states the list.
_ROLE = fields.String(validate=validate.Length(1, 64), metadata={"enum": list(DEFAULT_ROLES)})
_PORTFOLIO = fields.String(validate=validate.Length(1, 64), metadata={"pattern": PORTFOLIO_PATTERN})


# -- requests --------------------------------------------------------------------------------


class LoginSchema(StrictSchema):
    username = fields.String(required=True, validate=validate.Length(1, 256))
    password = fields.String(required=True, validate=_SECRET, metadata={"format": "password"})


class MfaSchema(StrictSchema):
    challenge = fields.String(required=True, validate=validate.Length(1, 256))
    code = fields.String(required=True, validate=validate.Length(1, 64), metadata={
        "description": "A 6-digit TOTP code, or one of the account's recovery codes."})


class StepUpSchema(StrictSchema):
    code = fields.String(required=True, validate=validate.Length(1, 64),
                         metadata={"description": "A fresh 6-digit TOTP code."})


class PasswordChangeSchema(StrictSchema):
    current_password = fields.String(required=True, validate=_SECRET, metadata={"format": "password"})
    new_password = fields.String(required=True, validate=_SECRET, metadata={
        "format": "password",
        "description": "12 to 128 characters, not a common password; no composition rules."})


class ActivateSchema(StrictSchema):
    username = fields.String(required=True, validate=validate.Length(1, 256))
    code = fields.String(required=True, validate=validate.Length(1, 128), metadata={
        "description": "The activation code mailed to the person's work address (R2.9)."})
    new_password = fields.String(required=True, validate=_SECRET, metadata={
        "format": "password",
        "description": "12 to 128 characters, not a common password; no composition rules."})


class StaffCreateSchema(StrictSchema):
    username = fields.String(required=True, validate=validate.Length(1, 64))
    display_name = FreeText(required=True, validate=validate.Length(1, 200))
    email = fields.String(required=True, validate=validate.Length(3, 254), metadata={
        "format": "email", "description": "The person's work address: the activation code goes there, "
                                          "and only there (R2.9)."})
    roles = fields.List(_ROLE, required=True, validate=validate.Length(1, len(DEFAULT_ROLES)))
    portfolios = fields.List(_PORTFOLIO, load_default=list, validate=validate.Length(0, 100))


class RoleChangeSchema(StrictSchema):
    grant = fields.List(_ROLE, load_default=list, validate=validate.Length(0, len(DEFAULT_ROLES)))
    revoke = fields.List(_ROLE, load_default=list, validate=validate.Length(0, len(DEFAULT_ROLES)))

    @validates_schema
    def some_change(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("grant") and not data.get("revoke"):
            raise ValidationError("grant or revoke at least one role", field_name="grant")


class BreakGlassSchema(StrictSchema):
    portfolio = fields.String(required=True, validate=validate.Length(1, 64), metadata={"pattern": PORTFOLIO_PATTERN})
    reason = FreeText(required=True, validate=validate.Length(1, 500),
                           metadata={"description": "Why (kept, sealed, in the audit trail). Mandatory.",
                                     "pattern": TEXT_PATTERN})
    minutes = WholeNumber(required=True, validate=validate.Range(1, BREAK_GLASS_MAX_MINUTES))


class SessionsQuerySchema(StrictSchema):
    staff_id = fields.String(validate=validate.Length(1, 64), metadata={
        "description": "Whose sessions (needs sessions:manage); the caller's own when absent."})


# -- responses (dumped, and described in the OpenAPI document) ------------------------------------


class LoginStartedSchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["mfa_required", "mfa_enrollment_required"]})
    challenge = fields.String(required=True, metadata={"description": "Opaque, single use, valid 5 minutes."})
    expires_at = fields.DateTime(required=True)
    totp_uri = fields.String(metadata={"description": "otpauth:// URI to enrol, at first login only."})


class SessionOpenedSchema(Schema):
    token = fields.String(required=True, metadata={"description": "Bearer token; send as `Authorization: Bearer`."})
    session_id = fields.String(required=True)
    expires_at = fields.DateTime(required=True, metadata={"description": "Absolute limit (12 hours)."})
    idle_timeout_seconds = fields.Integer(required=True)
    must_change_password = fields.Boolean(required=True)
    recovery_codes = fields.List(fields.String(), metadata={
        "description": "Ten one-time recovery codes (XXXX-XXXX-XXXX-XXXX, 80 bits each), shown once: at "
                       "enrolment, and when a code of the old format was used (the whole set is then replaced)."})


class StepUpResultSchema(Schema):
    stepped_up_until = fields.DateTime(required=True)


class PasswordChangedSchema(Schema):
    password_changed = fields.Boolean(required=True)


class SessionSchema(Schema):
    id = fields.String(required=True)
    staff_id = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    last_seen_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True, metadata={"description": "When it ends unless used again."})
    client_addr = fields.String(allow_none=True)
    current = fields.Boolean(required=True)


class SessionPageSchema(PageSchema):
    items = fields.List(fields.Nested(SessionSchema), required=True)


class StaffSchema(Schema):
    id = fields.String(required=True)
    version = fields.Integer(required=True)
    created_on = fields.String(required=True)
    modified_on = fields.String(required=True)
    username = fields.String(required=True)
    display_name = fields.String(required=True)
    roles = fields.List(fields.String(), required=True)
    portfolios = fields.List(fields.String(), required=True)
    status = fields.String(required=True, metadata={"enum": list(STAFF_STATUSES)})
    must_change_password = fields.Boolean(required=True)
    mfa_enrolled = fields.Boolean(required=True)
    recovery_codes_left = fields.Integer(required=True)
    locked_until = fields.DateTime(allow_none=True)


class StaffPageSchema(PageSchema):
    items = fields.List(fields.Nested(StaffSchema), required=True)


class StaffCreatedSchema(Schema):
    id = fields.String(required=True)
    username = fields.String(required=True)
    activation = fields.String(required=True, metadata={
        "enum": ["sent"], "description": "The activation code went to the person's work address; "
                                         "no credential is returned to the caller (R2.9)."})


class ApprovalRejectSchema(StrictSchema):
    reason = FreeText(required=True, validate=validate.Length(1, 500),
                      metadata={"description": "Why (kept, sealed, in the audit trail).", "pattern": TEXT_PATTERN})


class ApprovalPendingSchema(Schema):
    approval_id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["pending"]})


class ApprovalSchema(Schema):
    id = fields.String(required=True)
    kind = fields.String(required=True, metadata={"enum": ["create_staff", "change_roles"]})
    status = fields.String(required=True)
    requested_by = fields.String(required=True)
    requested_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True, metadata={"description": "Undecided by then, it lapses."})
    subject_staff_id = fields.String(allow_none=True)
    summary = fields.Dict(required=True)
    decided_by = fields.String(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)


class ApprovalPageSchema(PageSchema):
    items = fields.List(fields.Nested(ApprovalSchema), required=True)


class ApprovalExecutedSchema(Schema):
    approval_id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["executed"]})
    kind = fields.String(required=True)
    result = fields.Dict(required=True, metadata={
        "description": "The created account (`activation: sent`, no credential) or the changed account."})


class BreakGlassGrantSchema(Schema):
    id = fields.String(required=True)
    staff_id = fields.String(required=True)
    portfolio = fields.String(required=True)
    reason = fields.String(required=True)
    started_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True)
    active = fields.Boolean(required=True)


class BreakGlassPageSchema(PageSchema):
    items = fields.List(fields.Nested(BreakGlassGrantSchema), required=True)


class UnlockSchema(StrictSchema):
    reason = FreeText(required=True, validate=validate.Length(1, 500),
                      metadata={"description": "Why the lock ends early (kept in the audit trail).",
                                "pattern": TEXT_PATTERN})


class UnlockedSchema(Schema):
    id = fields.String(required=True)
    unlocked = fields.Boolean(required=True)
    was_locked_until = fields.DateTime(required=True)
