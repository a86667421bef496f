"""Privacy over the API: the consent ledger (R5.2), data-subject requests (R5.3) and
lifting a restriction (R5.6).

    GET|POST /api/v1/customers/{id}/consents
    POST     /api/v1/restrictions/{customer_id}/lift
    GET|POST /api/v1/requests                 GET /api/v1/requests/{id}
    POST     /api/v1/requests/{id}/verify | extend | complete | reject | export

Thin resources over `application.consent.ConsentLedger` and
`application.privacy_requests.PrivacyRequests`, which decide who may (R2.10): the
ledger is read by whoever reads the customer and written by agents, supervisors and the
DPO; requests are handled by the `dpo` role and read by compliance officers too.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from flask import Flask, current_app
from marshmallow import Schema, fields, validate

from application.consent import ConsentLedger
from application.ports import ExportRecipient
from application.privacy_requests import PrivacyRequests
from domain.consent import CHANNELS, CONSENT_PURPOSES, SOURCES
from domain.privacy_requests import JURISDICTIONS, KINDS, STATUSES, VERIFICATION_METHODS
from web.auth import current_actor
from web.customers import acting
from web.openapi import AUTHENTICATED, WITH_BODY, Api, Blueprint
from web.schemas import PageSchema, StrictSchema

consents_blueprint = Blueprint("consents", __name__, url_prefix="/api/v1/customers",
                               description="The consent ledger (R5.2).")
restrictions_blueprint = Blueprint("restrictions", __name__, url_prefix="/api/v1/restrictions",
                                   description="Lifting a restriction of processing (R5.6).")
requests_blueprint = Blueprint("requests", __name__, url_prefix="/api/v1/requests",
                               description="Data-subject requests (R5.3): access and portability, "
                                           "rectification, erasure, restriction, objection, opt-out.")

_REASON = validate.Length(min=1, max=500)
_NO_PERSONAL = "No personal data: kept in the audit trail after an erasure."
_CLOSED = ("The request is closed (`validation_failed` with field `status`), not verified yet, already "
           "extended, or the customer is restricted (`restricted`).")


def ledger() -> ConsentLedger:
    found: ConsentLedger = current_app.extensions["strongroom"].consents
    return found


def privacy() -> PrivacyRequests:
    found: PrivacyRequests = current_app.extensions["strongroom"].privacy
    return found


# -- schemas ---------------------------------------------------------------------------------

class ConsentCreateSchema(StrictSchema):
    purpose = fields.String(required=True, validate=validate.OneOf(tuple(CONSENT_PURPOSES)))
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    granted = fields.Boolean(required=True, metadata={"description": "true: granted; false: withdrawn."})
    notice_version = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9._-]{1,32}$"),
                                   metadata={"description": "The privacy notice the customer was shown."})
    source = fields.String(required=True, validate=validate.OneOf(SOURCES))


class ConsentSchema(Schema):
    consent_id = fields.String(required=True)
    purpose = fields.String(required=True)
    channel = fields.String(required=True)
    granted = fields.Boolean(required=True)
    notice_version = fields.String(required=True)
    source = fields.String(required=True)
    recorded_at = fields.String(required=True)
    actor_id = fields.String(required=True, metadata={"description": "Who recorded it."})


class InForceSchema(Schema):
    purpose = fields.String(required=True)
    channel = fields.String(required=True)
    granted = fields.Boolean(required=True)
    may_process = fields.Boolean(required=True, metadata={"description": "What processing is told now "
                                                                        "(false too when restricted or closed)."})
    recorded_at = fields.String(allow_none=True)
    notice_version = fields.String(allow_none=True)


class ConsentPageSchema(PageSchema):
    id = fields.String(required=True)
    items = fields.List(fields.Nested(ConsentSchema), required=True, metadata={"description": "Oldest first."})
    in_force = fields.List(fields.Nested(InForceSchema), required=True)


class ReasonSchema(StrictSchema):
    reason = fields.String(required=True, validate=_REASON, metadata={"description": _NO_PERSONAL})


class RestrictionSchema(Schema):
    id = fields.String(required=True)
    restricted = fields.Boolean(required=True)
    version = fields.Integer(required=True)


class RequestCreateSchema(StrictSchema):
    customer_id = fields.UUID(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    jurisdiction = fields.String(required=True, validate=validate.OneOf(JURISDICTIONS),
                                 metadata={"description": "gdpr: one month (+2 once); ccpa: 45 days (+45 once)."})
    received_at = fields.AwareDateTime(metadata={"description": "When it arrived (default now); the deadline "
                                                               "runs from it."})


class RequestQuerySchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    customer_id = fields.UUID()
    overdue = fields.Boolean()


class VerifySchema(StrictSchema):
    method = fields.String(required=True, validate=validate.OneOf(VERIFICATION_METHODS))
    note = fields.String(validate=_REASON, metadata={"description": _NO_PERSONAL})


class CompleteSchema(StrictSchema):
    changes = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True),
                          metadata={"description": "Rectification only: the fields and their correct values "
                                                   "(email, phone, address, full_name, date_of_birth, national_id)."})


class ExportSchema(StrictSchema):
    passphrase = fields.String(validate=validate.Length(min=12, max=1024),
                               metadata={"description": "Encrypt to this passphrase (scrypt + AES-256-GCM)."})
    public_key = fields.String(validate=validate.Length(min=1, max=8192),
                               metadata={"description": "Or to this X25519 or RSA public key (PEM)."})


class RequestSchema(Schema):
    id = fields.String(required=True)
    customer_id = fields.String(required=True)
    kind = fields.String(required=True, metadata={"enum": list(KINDS)})
    jurisdiction = fields.String(required=True, metadata={"enum": list(JURISDICTIONS)})
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    received_at = fields.String(required=True)
    deadline = fields.String(required=True)
    overdue = fields.Boolean(required=True)
    verification = fields.Dict(allow_none=True, metadata={"description": "by, method, at, note."})
    extension = fields.Dict(allow_none=True, metadata={"description": "by, reason, at, previous_deadline."})
    completion = fields.Dict(allow_none=True, metadata={"description": "by, at, result (ids and codes)."})
    rejection = fields.Dict(allow_none=True)
    exports = fields.List(fields.Dict(), required=True, metadata={"description": "sha256 and time of each export."})
    version = fields.Integer(required=True)


class RequestPageSchema(PageSchema):
    items = fields.List(fields.Nested(RequestSchema), required=True)


class ExportResultSchema(Schema):
    request = fields.Nested(RequestSchema, required=True)
    file_name = fields.String(required=True)
    sha256 = fields.String(required=True)
    content_base64 = fields.String(required=True, metadata={
        "description": "The sealed export: open it with `strongroom requests open-export` (docs/privacy.md)."})


# -- consents ------------------------------------------------------------------------------------

@consents_blueprint.get("/<uuid:customer_id>/consents")
@consents_blueprint.response(200, ConsentPageSchema, description="The ledger and what is in force.")
@consents_blueprint.errors(*AUTHENTICATED, 404, 410)
def list_consents(customer_id: uuid.UUID) -> dict[str, Any]:
    """Every consent answer the customer gave (purpose, channel, notice, source, time, who recorded it)."""
    actor = current_actor()
    with acting(actor):
        return {**ledger().consents(actor, str(customer_id)), "next_cursor": None}


@consents_blueprint.post("/<uuid:customer_id>/consents")
@consents_blueprint.arguments(ConsentCreateSchema)
@consents_blueprint.response(201, ConsentSchema, description="Recorded.")
@consents_blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, 409, 410,
                           e409="A grant on a restricted (`restricted`) or closed record; a withdrawal "
                                "is always accepted.")
def record_consent(body: dict[str, Any], customer_id: uuid.UUID) -> Any:
    """Record a grant or a withdrawal for one purpose and channel."""
    actor = current_actor()
    with acting(actor):
        return ledger().record(actor, str(customer_id), **body), 201


@restrictions_blueprint.post("/<uuid:customer_id>/lift")
@restrictions_blueprint.arguments(ReasonSchema)
@restrictions_blueprint.response(200, RestrictionSchema, description="Lifted: who and why are in the log.")
@restrictions_blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, 410,
                           e422="Validation failed, or the customer is not restricted.")
def lift_restriction(body: dict[str, Any], customer_id: uuid.UUID) -> Any:
    """Lift a restriction of processing (R5.6); the DPO's decision, with a reason."""
    actor = current_actor()
    with acting(actor):
        return privacy().lift_restriction(actor, str(customer_id), reason=body["reason"])


# -- requests ----------------------------------------------------------------------------------

@requests_blueprint.get("")
@requests_blueprint.arguments(RequestQuerySchema, location="query")
@requests_blueprint.response(200, RequestPageSchema, description="The requests, oldest first (one page).")
@requests_blueprint.errors(*AUTHENTICATED, 400, 422)
def list_requests(query: dict[str, Any]) -> dict[str, Any]:
    """Data-subject requests, filtered by status, customer or `overdue`."""
    actor = current_actor()
    if "customer_id" in query:
        query["customer_id"] = str(query["customer_id"])
    with acting(actor):
        return {"items": privacy().list_requests(actor, **query), "next_cursor": None}


@requests_blueprint.post("")
@requests_blueprint.arguments(RequestCreateSchema)
@requests_blueprint.response(201, RequestSchema, description="Received; the deadline is set.")
@requests_blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, 410)
def create_request(body: dict[str, Any]) -> Any:
    """Record a request as received (the DPO)."""
    actor = current_actor()
    body["customer_id"] = str(body["customer_id"])
    with acting(actor):
        return privacy().receive(actor, **body), 201


@requests_blueprint.get("/<uuid:request_id>")
@requests_blueprint.response(200, RequestSchema)
@requests_blueprint.errors(*AUTHENTICATED, 404)
def get_request(request_id: uuid.UUID) -> Any:
    actor = current_actor()
    with acting(actor):
        return privacy().get(actor, str(request_id))


@requests_blueprint.post("/<uuid:request_id>/verify")
@requests_blueprint.arguments(VerifySchema)
@requests_blueprint.response(200, RequestSchema, description="Verified, by you, by `method`.")
@requests_blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, 409, e409=_CLOSED)
def verify_request(body: dict[str, Any], request_id: uuid.UUID) -> Any:
    """Record that the requester's identity was verified, and how."""
    actor = current_actor()
    with acting(actor):
        return privacy().verify(actor, str(request_id), **body)


@requests_blueprint.post("/<uuid:request_id>/extend")
@requests_blueprint.arguments(ReasonSchema)
@requests_blueprint.response(200, RequestSchema, description="Extended once.")
@requests_blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, 409, e409=_CLOSED)
def extend_request(body: dict[str, Any], request_id: uuid.UUID) -> Any:
    """Extend the deadline once (GDPR +2 months, CCPA +45 days), before it passes, with a reason."""
    actor = current_actor()
    with acting(actor):
        return privacy().extend(actor, str(request_id), reason=body["reason"])


@requests_blueprint.post("/<uuid:request_id>/reject")
@requests_blueprint.arguments(ReasonSchema)
@requests_blueprint.response(200, RequestSchema, description="Rejected.")
@requests_blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, 409, e409=_CLOSED)
def reject_request(body: dict[str, Any], request_id: uuid.UUID) -> Any:
    actor = current_actor()
    with acting(actor):
        return privacy().reject(actor, str(request_id), reason=body["reason"])


@requests_blueprint.post("/<uuid:request_id>/complete")
@requests_blueprint.arguments(CompleteSchema)
@requests_blueprint.response(200, RequestSchema, description="Carried out and completed.")
@requests_blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, 409, 410, e409=_CLOSED)
def complete_request(body: dict[str, Any], request_id: uuid.UUID) -> Any:
    """Carry the request out (erase, rectify, restrict, withdraw consents) and complete it."""
    actor = current_actor()
    with acting(actor):
        return privacy().complete(actor, str(request_id), changes=body.get("changes"))


@requests_blueprint.post("/<uuid:request_id>/export")
@requests_blueprint.arguments(ExportSchema)
@requests_blueprint.response(200, ExportResultSchema, description="The sealed export.")
@requests_blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, 409, 410, e409=_CLOSED)
def run_export(body: dict[str, Any], request_id: uuid.UUID) -> Any:
    """Everything held about the subject (and who accessed it), signed with the audit key and
    encrypted to the passphrase or public key given here (never stored)."""
    actor = current_actor()
    recipient = ExportRecipient(passphrase=body.get("passphrase"), public_key_pem=body.get("public_key"))
    with acting(actor):
        sealed, shown = privacy().export(actor, str(request_id), recipient)
    digest = shown["exports"][-1]["sha256"]
    return {"request": shown, "file_name": f"subject-export-{request_id}.srx", "sha256": digest,
            "content_base64": base64.b64encode(sealed).decode("ascii")}


def install(app: Flask, api: Api) -> None:
    api.register_blueprint(consents_blueprint)
    api.register_blueprint(restrictions_blueprint)
    api.register_blueprint(requests_blueprint)
