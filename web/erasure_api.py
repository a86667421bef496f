"""Erasure against AML holds over the API (R5.4): erase with a signed certificate,
the restricted KYC read, and the investigation hold.

    POST /api/v1/erasures/{customer_id}        the DPO (`customers:erase`)
    GET  /api/v1/erasures/{customer_id}/kyc    a compliance officer, X-Purpose, step-up
    PUT  /api/v1/aml-holds/{customer_id}       a compliance officer

Not under /api/v1/customers: those routes are the customer operations of the
authorisation matrix (web/customers.py ENDPOINT_OPERATIONS); these have their own
rules in the policy (`require_held_kyc`, `require_aml_decision`, `customers:erase`),
and tests/web/test_erasure_api.py checks them for every role.

Thin resources over `application.erasure_service.ErasureService`, which asks the one
policy (application/policy.py) and records every read and refusal.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask, current_app
from marshmallow import Schema, fields, validate

from application.erasure_service import ErasureService
from domain.customer import REASON_MAX_LENGTH
from web.auth import current_actor, purpose_header
from web.customers import acting
from web.openapi import AUTHENTICATED, WITH_BODY, Api, Blueprint
from web.schemas import FreeText, StrictSchema

blueprint = Blueprint("erasure", __name__, url_prefix="/api/v1",
                      description="Erasure against AML holds, with signed certificates (R5.4).")
_ON_ONE = (*AUTHENTICATED, 404)


class ErasureRequestSchema(StrictSchema):
    reason = FreeText(required=True, validate=validate.Length(1, REASON_MAX_LENGTH),
                      metadata={"description": "Kept after erasure: no personal data (e.g. `DSR-2026-7`)."})


class InvestigationRequestSchema(StrictSchema):
    open = fields.Boolean(required=True, metadata={"description": "true opens the hold, false closes it."})
    reason = FreeText(required=True, validate=validate.Length(1, REASON_MAX_LENGTH),
                      metadata={"description": "The case reference; no personal data."})


class CertificateSchema(Schema):
    format = fields.String(required=True)
    certificate = fields.Dict(required=True, metadata={
        "description": "subject_id, erasure_id, keys_destroyed, keys_kept, hold_until, chain_position, "
                       "erased_at, issued_at, complete_in_backups_by, key_id"})
    signature = fields.String(required=True, metadata={
        "description": "Ed25519 by the audit key; verify offline with `strongroom audit verify-certificate`."})


class ErasureResultSchema(Schema):
    customer_id = fields.String(required=True)
    erasure_id = fields.String(required=True)
    keys_destroyed = fields.List(fields.String(), required=True)
    kept = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True)
    hold_until = fields.String(allow_none=True)
    status = fields.String(required=True)
    recorded_at = fields.String(required=True)
    position = fields.Integer(allow_none=True)
    read_model_purged = fields.Boolean(required=True)
    certificate = fields.Nested(CertificateSchema, required=True)


class HeldKycSchema(Schema):
    id = fields.String(required=True)
    version = fields.Integer(required=True)
    type = fields.String()
    status = fields.String()
    restricted = fields.Boolean(required=True)
    profile = fields.String(required=True)
    portfolio = fields.String()
    risk_rating = fields.String()
    kyc_status = fields.String()
    full_name = fields.String(allow_none=True)
    date_of_birth = fields.String(allow_none=True)
    national_id = fields.String(allow_none=True)
    address = fields.Dict(allow_none=True)
    cards = fields.List(fields.Dict())
    bank_accounts = fields.List(fields.Dict())
    hold = fields.Dict(required=True)


class InvestigationSchema(Schema):
    customer_id = fields.String(required=True)
    under_investigation = fields.Boolean(required=True)
    version = fields.Integer(required=True)
    modified_on = fields.String(required=True)


def erasures() -> ErasureService:
    service: ErasureService = current_app.extensions["strongroom"].erasures
    return service


@blueprint.post("/erasures/<uuid:customer_id>")
@blueprint.arguments(ErasureRequestSchema)
@blueprint.response(200, ErasureResultSchema, description="Erased; the certificate is for the customer.")
@blueprint.errors(*_ON_ONE, *WITH_BODY, e403="Not allowed: `forbidden` (needs `customers:erase`), or "
                                             "`step_up_required` (no step-up in the last 5 minutes: POST "
                                             "/api/v1/auth/step-up).")
def erase(body: dict[str, Any], customer_id: uuid.UUID) -> dict[str, Any]:
    """Erase a customer under R5.4's rules: the profile key goes now; under an AML hold
    the KYC key is kept, restricted, until the hold ends. Answers a signed certificate.
    Repeating it answers the first erasure's outcome."""
    actor = current_actor()
    with acting(actor):
        return erasures().erase(str(customer_id), body["reason"], actor)


@blueprint.get("/erasures/<uuid:customer_id>/kyc")
@blueprint.response(200, HeldKycSchema, description="The KYC part an AML hold keeps; no contact data.")
@blueprint.errors(*_ON_ONE, 422, e403="Not allowed: compliance officers only, after a step-up "
                                      "(`step_up_required`), with current training.",
                  e422="No X-Purpose stated (refused and recorded).")
def held_kyc(customer_id: uuid.UUID) -> dict[str, Any]:
    """The KYC part of an erased customer that an AML hold keeps (R5.4, GDPR Art. 18):
    compliance officers only, for the purpose in `X-Purpose`; each read recorded."""
    actor = current_actor()
    with acting(actor):
        return erasures().held_kyc(actor, str(customer_id), purpose_header())


@blueprint.put("/aml-holds/<uuid:customer_id>")
@blueprint.arguments(InvestigationRequestSchema)
@blueprint.response(200, InvestigationSchema, description="The hold as it now stands.")
@blueprint.errors(*_ON_ONE, *WITH_BODY, e403="Not allowed: compliance officers only.")
def investigation(body: dict[str, Any], customer_id: uuid.UUID) -> dict[str, Any]:
    """Open or close the AML investigation hold: while open, an erasure keeps the KYC key
    and the retention run leaves it (R5.4). A recorded decision."""
    actor = current_actor()
    with acting(actor):
        return erasures().set_investigation(actor, str(customer_id), open_=body["open"], reason=body["reason"])


def install(app: Flask, api: Api) -> None:
    api.register_blueprint(blueprint)
