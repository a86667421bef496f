"""The audit trail over the API (R3.5): `GET /api/v1/audit/events` and `/audit/verify`.

Thin resources over `application.audit_trail.AuditTrail`, which decides who may read
(auditors and compliance officers only, R2.10) and records each read. Entries name
fields and customer ids but carry no values: an auditor never reveals (R2.5).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app
from marshmallow import Schema, fields, validate

from application.audit_trail import KINDS, MAX_LIMIT, AuditFilter, AuditTrail
from web.auth import current_actor
from web.openapi import AUTHENTICATED, Api, Blueprint
from web.schemas import PageSchema, StrictSchema

PREFIX = "/api/v1/audit"
blueprint = Blueprint("audit", __name__, url_prefix=PREFIX,
                      description="The audit trail: who did what, who saw what, and whether the chain holds.")


class AuditEventsQuerySchema(StrictSchema):
    customer = fields.UUID(metadata={"description": "Changes to, and accesses of, this customer."})
    actor = fields.String(validate=validate.Length(min=1, max=200),
                          metadata={"description": "What this staff member (or operator) did or saw."})
    kind = fields.String(validate=validate.OneOf(KINDS))
    since = fields.AwareDateTime(metadata={"description": "ISO-8601 with a zone."})
    until = fields.AwareDateTime(metadata={"description": "ISO-8601 with a zone."})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(validate=validate.Length(min=1, max=20),
                           metadata={"description": "`next_cursor` of the previous page."})


class VerifyQuerySchema(StrictSchema):
    start = fields.String(load_default="first_row", validate=validate.OneOf(("first_row", "checkpoint")),
                          metadata={"description": "Recompute from the first row, or from the latest "
                                                   "valid checkpoint."})


class AuditEventSchema(Schema):
    position = fields.Integer(required=True)
    recorded_at = fields.String(required=True)
    kind = fields.String(required=True, metadata={"enum": list(KINDS)})
    event = fields.String(required=True, metadata={"description": "The change (e.g. Customer.ContactChanged) "
                                                                  "or the access kind (view, reveal, ...)."})
    subject = fields.String(required=True)
    stream_id = fields.String(required=True)
    customer_ids = fields.List(fields.String(), required=True)
    actor_id = fields.String(allow_none=True)
    via = fields.String(allow_none=True)
    session_id = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    client_addr = fields.String(allow_none=True)
    purpose = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    fields_ = fields.List(fields.String(), data_key="fields", attribute="fields", required=True)
    details = fields.Dict(keys=fields.String(), values=fields.String())
    erased = fields.Boolean(required=True)


class AuditEventPageSchema(PageSchema):
    items = fields.List(fields.Nested(AuditEventSchema), required=True)


class ChainProblemSchema(Schema):
    position = fields.Integer(required=True)
    what = fields.String(required=True)


class ChainReportSchema(Schema):
    intact = fields.Boolean(required=True)
    rows_checked = fields.Integer(required=True)
    started_from = fields.String(required=True)
    first_position = fields.Integer(allow_none=True)
    head = fields.Dict(allow_none=True)
    checkpoints_verified = fields.Integer(required=True)
    latest_checkpoint = fields.Dict(allow_none=True)
    first_bad_position = fields.Integer(allow_none=True)
    problems = fields.List(fields.Nested(ChainProblemSchema), required=True)
    notes = fields.List(fields.String(), required=True)


def trail() -> AuditTrail:
    """The audit trail use cases, built once by the composition root."""
    trail: AuditTrail = current_app.extensions["strongroom"].audit_trail
    return trail


@blueprint.get("/events")
@blueprint.arguments(AuditEventsQuerySchema, location="query")
@blueprint.response(200, AuditEventPageSchema, description="A page of entries; follow next_cursor for more.")
@blueprint.errors(*AUTHENTICATED, 400, e403="Not an auditor or compliance officer.",
                  e422="A query parameter is not valid, or `since` is after `until`.")
def audit_events(query: dict[str, Any]) -> dict[str, Any]:
    """Who did what to which customer, when and why, and who saw what (R3.5).

    Changes and access records in log order, with field names but no values. Auditors and
    compliance officers only; each read is itself recorded."""
    filters = AuditFilter(
        customer=str(query["customer"]) if "customer" in query else None,
        actor=query.get("actor"), kind=query.get("kind"),
        since=query.get("since"), until=query.get("until"),
    )
    page = trail().events(current_actor(), filters, limit=query["limit"], cursor=query.get("cursor"))
    return {"items": [entry.as_json(with_values=False) for entry in page.items], "next_cursor": page.next_cursor}


@blueprint.get("/verify")
@blueprint.arguments(VerifyQuerySchema, location="query")
@blueprint.response(200, ChainReportSchema, description="The verification report.")
@blueprint.errors(*AUTHENTICATED, 400, 422, e403="Not an auditor or compliance officer.")
def audit_verify(query: dict[str, Any]) -> Any:
    """Recompute the tamper-evident hash chain and check every signed checkpoint (R3.3).

    `intact: false` names the first bad position and what is wrong."""
    return trail().verify(current_actor(), from_checkpoint=query["start"] == "checkpoint")


def install(app: Flask, api: Api) -> None:
    api.register_blueprint(blueprint)
