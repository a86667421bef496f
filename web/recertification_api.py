"""`/api/v1/recertifications` (R6.2): access recertification campaigns.

Thin views over `application/recertification.py`, which decides who may (reviewers,
security officers, admins), applies revokes and records every refusal.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flask import Flask
from flask_smorest import Api
from marshmallow import Schema, fields, validate

from domain.staff import DEFAULT_ROLES
from web.app import components
from web.auth import current_actor
from web.openapi import AUTHENTICATED, WITH_BODY, Blueprint
from web.schemas import PORTFOLIO_PATTERN, StrictSchema

blueprint = Blueprint("recertifications", __name__, url_prefix="/api/v1",
                      description="Access recertification (R6.2): reviewers confirm or revoke each member's access.")

_ROLE = fields.String(validate=validate.Length(1, 64), metadata={"enum": list(DEFAULT_ROLES)})
_PORTFOLIO = fields.String(validate=validate.Length(1, 64), metadata={"pattern": PORTFOLIO_PATTERN})


class DecisionSchema(StrictSchema):
    decision = fields.String(required=True, validate=validate.OneOf(("confirm", "revoke")))
    roles = fields.List(_ROLE, load_default=None, validate=validate.Length(0, len(DEFAULT_ROLES)), metadata={
        "description": "With `revoke`: the roles to take away (with `portfolios` absent too: everything)."})
    portfolios = fields.List(_PORTFOLIO, load_default=None, validate=validate.Length(0, 256),
                             metadata={"description": "With `revoke`: the portfolios to take away."})


class ItemSchema(Schema):
    staff_id = fields.String(required=True)
    username = fields.String(required=True)
    roles = fields.List(fields.String(), required=True)
    portfolios = fields.List(fields.String(), required=True)
    reviewers = fields.List(fields.String(), required=True)
    state = fields.String(required=True, metadata={"enum": ["pending", "escalated", "confirmed", "revoked"]})
    decided_by = fields.String(allow_none=True)
    decided_at = fields.String(allow_none=True)
    revoked_roles = fields.List(fields.String())
    revoked_portfolios = fields.List(fields.String())
    held_approval = fields.String(allow_none=True, metadata={
        "description": "The four-eyes request carrying out the revoke of privileged roles (R2.9)."})
    escalated_at = fields.String(allow_none=True)
    alerted = fields.Boolean()
    alert_id = fields.String(allow_none=True)


class CampaignSchema(Schema):
    id = fields.String(required=True)
    started_at = fields.String(required=True)
    due_at = fields.String(required=True)
    escalate_until = fields.String(required=True)
    started_by = fields.String(required=True)
    complete = fields.Boolean(required=True)
    items = fields.List(fields.Nested(ItemSchema), required=True)
    summary = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    overdue_alerts = fields.Integer(required=True)


class CampaignPageSchema(Schema):
    items = fields.List(fields.Nested(CampaignSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class CheckSchema(Schema):
    escalated = fields.Integer(required=True)
    alerted = fields.Integer(required=True)
    started = fields.String(allow_none=True, required=True)


_FORBIDDEN = "Needs recertification:manage (security officer, admin) (`forbidden`)."


@blueprint.post("/recertifications")
@blueprint.response(201, CampaignSchema, description="Started: one item per active member with a role.")
@blueprint.errors(*AUTHENTICATED, e409="Code `campaign_open`: a campaign is still open.")
def start_campaign() -> Any:
    """Start a campaign (recertification:manage)."""
    return components().recertification.start(current_actor())


@blueprint.get("/recertifications")
@blueprint.response(200, CampaignPageSchema, description="Campaigns (one page: `next_cursor` is null).")
@blueprint.errors(*AUTHENTICATED)
def list_campaigns() -> Any:
    """Campaigns: a reviewer sees the items they decide; managers, auditors and compliance officers all."""
    return {"items": components().recertification.list(current_actor()), "next_cursor": None}


@blueprint.post("/recertifications/check")
@blueprint.response(200, CheckSchema, description="What was escalated, alerted and started.")
@blueprint.errors(*AUTHENTICATED)
def check_campaigns() -> Any:
    """Escalate due items, alert overdue ones, start the next campaign when due (recertification:manage)."""
    return components().recertification.check(current_actor())


# Campaign ids are UUIDs: the converter keeps `/recertifications/check` (POST) from also
# matching this GET route, which advertised a method `check` does not have.
@blueprint.get("/recertifications/<uuid:campaign_id>")
@blueprint.response(200, CampaignSchema, description="The campaign's outcome (R6.2).")
@blueprint.errors(*AUTHENTICATED, 404)
def campaign_report(campaign_id: UUID) -> Any:
    """The campaign and its outcome (recertification:manage or audit:read)."""
    return components().recertification.report(current_actor(), str(campaign_id))


@blueprint.post("/recertifications/<uuid:campaign_id>/items/<staff_id>/decision")
@blueprint.arguments(DecisionSchema)
@blueprint.response(200, CampaignSchema, description="Decided; a revoke has taken effect (privileged roles: held).")
@blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, e403=(
    "Not the item's reviewer, or one's own access (`not_your_review`); a revoke needs a step-up "
    "(`step_up_required`)."), e409="Code `already_decided`.")
def decide_item(body: dict[str, Any], campaign_id: UUID, staff_id: str) -> Any:
    """Confirm or revoke a member's roles and portfolios (their reviewer; once escalated, a manager)."""
    return components().recertification.decide(current_actor(), str(campaign_id), staff_id, **body)


def install(app: Flask, api: Api) -> None:
    api.register_blueprint(blueprint)
