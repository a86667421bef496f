"""`/api/v1/staff/{id}/training` (R6.4): record and list security-training completions.

Thin views over `application/training.py`, which decides who may (training:record,
never for oneself, step-up) and records every refusal.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api
from marshmallow import Schema, fields, validate

from web.app import components
from web.auth import current_actor
from web.openapi import AUTHENTICATED, WITH_BODY, Blueprint
from web.schemas import TEXT_PATTERN, FreeText, StrictSchema

blueprint = Blueprint("training", __name__, url_prefix="/api/v1",
                      description="Security training completions (R6.4): a lapse removes reveal and export.")


class TrainingRecordSchema(StrictSchema):
    course = FreeText(required=True, validate=validate.Length(1, 100),
                      metadata={"description": "The course's name.", "pattern": TEXT_PATTERN})
    course_version = FreeText(required=True, validate=validate.Length(1, 32),
                              metadata={"description": "The course's version.", "pattern": TEXT_PATTERN})
    completed_at = fields.AwareDateTime(required=True, metadata={
        "description": "When it was completed (with a zone; not in the future)."})
    evidence_ref = FreeText(required=True, validate=validate.Length(1, 200), metadata={
        "description": "Where the evidence is (a certificate or LMS record id): a reference, "
                       "no personal data.", "pattern": TEXT_PATTERN})


class CompletionSchema(Schema):
    course = fields.String(required=True)
    course_version = fields.String(required=True)
    completed_at = fields.String(required=True)
    evidence_ref = fields.String(required=True)
    recorded_by = fields.String(required=True)


class TrainingStateSchema(Schema):
    staff_id = fields.String(required=True)
    username = fields.String(required=True)
    completions = fields.List(fields.Nested(CompletionSchema), required=True)
    last_completed_at = fields.DateTime(allow_none=True, required=True)
    valid_until = fields.DateTime(allow_none=True, required=True)
    current = fields.Boolean(required=True, metadata={
        "description": "Whether reveal and export are open to this member now (R6.4)."})


@blueprint.post("/staff/<staff_id>/training")
@blueprint.arguments(TrainingRecordSchema)
@blueprint.response(201, TrainingStateSchema, description="Recorded; the member's training state.")
@blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, e403=(
    "Needs training:record (`forbidden`); never one's own (`self_training_record`); a step-up in the "
    "last 5 minutes (`step_up_required`)."))
def record_training(body: dict[str, Any], staff_id: str) -> Any:
    """Record a completed security-training course for a member of staff (training:record, step-up)."""
    return components().training.record(current_actor(), staff_id, **body)


@blueprint.get("/staff/<staff_id>/training")
@blueprint.response(200, TrainingStateSchema, description="The member's completions and whether training is current.")
@blueprint.errors(*AUTHENTICATED, 404)
def list_training(staff_id: str) -> Any:
    """A member's training (their own; or training:record, staff:read or audit:read)."""
    return components().training.list(current_actor(), staff_id)


def install(app: Flask, api: Api) -> None:
    api.register_blueprint(blueprint)
