"""Schemas of the alerts resources (R3.6): the query of a listing, an acknowledgement,
and an alert as answered. Fields are those of `domain.alerts.Alert.to_record`."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from application.alerts import MAX_LIMIT, RULE_ID_MAX
from domain.alerts import NOTE_MAX, SEVERITIES, STATUSES
from web.schemas import TEXT_PATTERN, FreeText, PageSchema, StrictSchema


class AlertsQuerySchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    severity = fields.String(validate=validate.OneOf(SEVERITIES))
    rule_id = fields.String(validate=validate.Length(min=1, max=RULE_ID_MAX),
                            metadata={"description": "Alerts of this rule (see `strongroom monitor rules`)."})
    actor = fields.String(validate=validate.Length(min=1, max=RULE_ID_MAX),
                          metadata={"description": "Alerts about this staff member (their id)."})
    since = fields.AwareDateTime(metadata={"description": "Raised at or after; ISO-8601 with a zone."})
    until = fields.AwareDateTime(metadata={"description": "Raised at or before; ISO-8601 with a zone."})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(validate=validate.Length(min=1, max=200),
                           metadata={"description": "`next_cursor` of the previous page."})


class AcknowledgeSchema(StrictSchema):
    note = FreeText(required=True, validate=validate.Length(1, NOTE_MAX),
                    metadata={"description": "What was found or done (kept, sealed, in the audit trail).",
                              "pattern": TEXT_PATTERN})


class AlertSchema(Schema):
    id = fields.String(required=True)
    rule_id = fields.String(required=True)
    severity = fields.String(required=True, metadata={"enum": list(SEVERITIES)})
    summary = fields.String(required=True)
    actor_id = fields.String(allow_none=True, metadata={"description": "The staff member the alert is about."})
    client_addr = fields.String(allow_none=True)
    customer_ids = fields.List(fields.String(), required=True)
    positions = fields.List(fields.Integer(), required=True,
                            metadata={"description": "Log positions of the events that set it off."})
    details = fields.Dict(keys=fields.String(), values=fields.String())
    responses = fields.List(fields.String(), required=True)
    applied = fields.Dict(keys=fields.String(), values=fields.String(),
                          metadata={"description": "Responses applied, and how each went."})
    raised_at = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    acknowledged_by = fields.String(allow_none=True)
    acknowledged_at = fields.String(allow_none=True)
    note = fields.String(allow_none=True)


class AlertPageSchema(PageSchema):
    items = fields.List(fields.Nested(AlertSchema), required=True)
