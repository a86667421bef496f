"""Schemas of the customer API: what comes in, and the masked views that go out.

Requests are `StrictSchema`s: unknown fields are refused (mass assignment) and card
security codes, track data or PIN blocks anywhere in a body or query are refused
before anything reads them (R1.7). Responses are dumped through the view schemas,
so only declared fields can ever leave, and the OpenAPI document is generated from
the same classes.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from application.customer_service import DEFAULT_PAGE, MAX_PAGE, SEARCH_FIELDS
from application.policy import PURPOSE_MAX_LENGTH, REVEALABLE_FIELDS
from domain.customer import (
    CUSTOMER_TYPES,
    INTERACTION_KINDS,
    KYC_STATUSES,
    REASON_MAX_LENGTH,
    RISK_RATINGS,
    STATUSES,
)
from web.schemas import PORTFOLIO_PATTERN, AddressSchema, FreeText, PageSchema, StrictSchema

_NOT_BLANK = validate.Regexp(r"\S", error="must not be blank")


# -- requests -----------------------------------------------------------------------------


class CustomerPatchSchema(StrictSchema):
    """The fields a PATCH may change; anything else (id, version, status, cards, ...) is refused."""

    full_name = FreeText(validate=validate.Length(1, 200))
    date_of_birth = fields.Date(allow_none=True)
    national_id = fields.String(allow_none=True, validate=validate.Length(1, 64))
    email = fields.String(allow_none=True, validate=validate.Length(3, 254))
    phone = fields.String(allow_none=True, validate=validate.Length(6, 32))
    address = fields.Nested(AddressSchema)
    portfolio = fields.String(validate=validate.Length(1, 64), metadata={"pattern": PORTFOLIO_PATTERN})
    risk_rating = fields.String(validate=validate.OneOf(RISK_RATINGS))
    kyc_status = fields.String(validate=validate.OneOf(KYC_STATUSES))
    segment = FreeText(allow_none=True, validate=validate.Length(1, 64))

    @validates_schema
    def at_least_one_change(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("name at least one field to change", "_schema")


class RevealRequestSchema(StrictSchema):
    # Loaded as `field_names`: a schema's own `fields` attribute must keep its meaning.
    field_names = fields.List(
        fields.String(validate=validate.OneOf(REVEALABLE_FIELDS)),
        required=True, validate=validate.Length(1, len(REVEALABLE_FIELDS)), data_key="fields",
        metadata={"description": "Masked fields to reveal; each must be revealable (R) for one of your roles."},
    )
    # Only the type is checked here: the policy decides whether a purpose is acceptable,
    # and records the refusal when it is missing or blank (R3.1), which a 422 from this
    # schema would pre-empt. The document still states the rule, for clients to follow.
    purpose = FreeText(
        required=True,
        metadata={"description": "Why you need the plaintext; kept in the audit trail. No personal data.",
                  "minLength": 1, "maxLength": PURPOSE_MAX_LENGTH, "pattern": r"\S"},
    )

    @pre_load
    def missing_purpose_reaches_the_policy(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict) and "purpose" not in data:
            return {**data, "purpose": ""}
        return data


class InteractionCreateSchema(StrictSchema):
    kind = fields.String(required=True, validate=validate.OneOf(INTERACTION_KINDS))
    channel = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9._-]{1,32}$"),
                            metadata={"description": "A short code such as `phone`, `email`, `branch`."})
    # The domain's rule (no control characters but tab and new line, R1.6), stated for
    # clients; the domain applies it and words the refusal.
    notes = FreeText(required=True, validate=validate.Length(0, 10_000),
                          metadata={"pattern": r"^(?:[^\x00-\x08\x0b-\x1f\x7f-\x9f]|\r\n)*$"})


class RevertRequestSchema(StrictSchema):
    to = fields.AwareDateTime(required=True, metadata={"description": "ISO 8601 with a time zone."})
    reason = FreeText(required=True, validate=[validate.Length(1, REASON_MAX_LENGTH), _NOT_BLANK],
                           metadata={"description": "Kept after erasure: no personal data."})


class CustomerQuerySchema(StrictSchema):
    """`GET /customers`: at most one exact-match search field, filters, and paging."""

    email = fields.String(validate=validate.Length(1, 254))
    phone = fields.String(validate=validate.Length(1, 32))
    national_id = fields.String(validate=validate.Length(1, 64))
    pan = fields.String(validate=validate.Length(1, 23))
    # A filter, not a value the domain sees: the schema applies the domain's rule itself,
    # so a code no customer can have is refused (422) as the document says.
    portfolio = fields.String(validate=[validate.Length(1, 64), validate.Regexp(PORTFOLIO_PATTERN)],
                              metadata={"pattern": PORTFOLIO_PATTERN})
    status = fields.String(validate=validate.OneOf(STATUSES))
    limit = fields.Integer(load_default=DEFAULT_PAGE, validate=validate.Range(1, MAX_PAGE))
    cursor = fields.String(validate=validate.Length(1, 200),
                           metadata={"description": "`next_cursor` of the previous page."})

    @validates_schema
    def one_search_field(self, data: dict[str, Any], **_: Any) -> None:
        given = [name for name in SEARCH_FIELDS if name in data]
        if len(given) > 1:
            raise ValidationError("search by one of email, phone, national_id, pan at a time", "_schema")


class AsOfQuerySchema(StrictSchema):
    as_of = fields.AwareDateTime(metadata={"description": "Read the customer as it was at this moment (R4.5)."})


# -- responses ------------------------------------------------------------------------------


class AddressViewSchema(Schema):
    line1 = fields.String(required=True)
    line2 = fields.String(allow_none=True)
    city = fields.String(required=True)
    postcode = fields.String(allow_none=True)
    country = fields.String(required=True)


class CardViewSchema(Schema):
    card_id = fields.String(required=True)
    bin = fields.String(metadata={"description": "Issuer BIN; absent for the auditor (last four only)."})
    last4 = fields.String(required=True)
    expiry_month = fields.String(allow_none=True)
    display = fields.String(required=True, metadata={"description": "BIN + last four, never more (R1.7)."})


class BankAccountViewSchema(Schema):
    account_id = fields.String(required=True)
    iban = fields.String(required=True, metadata={"description": "Masked (`•••• •••• 5432`) unless revealed."})


class CustomerViewSchema(Schema):
    """A customer as the caller may see it (SPEC R2 default field policy)."""

    id = fields.UUID(required=True)
    version = fields.Integer(required=True, metadata={"description": "Also the ETag; send it as If-Match."})
    type = fields.String(required=True, metadata={"enum": list(CUSTOMER_TYPES)})
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    restricted = fields.Boolean(required=True)
    portfolio = fields.String(required=True)
    risk_rating = fields.String(required=True, metadata={"enum": list(RISK_RATINGS)})
    kyc_status = fields.String(required=True, metadata={"enum": list(KYC_STATUSES)})
    segment = fields.String(allow_none=True)
    created_on = fields.String(allow_none=True)
    modified_on = fields.String(allow_none=True)
    full_name = fields.String(metadata={"description": "Shown, or initials only (`A*** P***`) for the auditor."})
    date_of_birth = fields.String(allow_none=True, metadata={"description": "Masked as `****-**-**`."})
    national_id = fields.String(allow_none=True, metadata={"description": "Masked as `•••• •••• 456C`."})
    email = fields.String(allow_none=True, metadata={"description": "Masked as `a***@example.org`."})
    phone = fields.String(allow_none=True, metadata={"description": "Masked as `•••• 0123`."})
    address = fields.Nested(AddressViewSchema, allow_none=True,
                            metadata={"description": "Masked: city and country only."})
    cards = fields.List(fields.Nested(CardViewSchema))
    bank_accounts = fields.List(fields.Nested(BankAccountViewSchema))
    masked = fields.List(fields.String(), required=True, metadata={"description": "Fields masked in this view."})
    revealable = fields.List(fields.String(), required=True,
                             metadata={"description": "Masked fields you may reveal (after a step-up)."})


class CustomerPageSchema(PageSchema):
    items = fields.List(fields.Nested(CustomerViewSchema), required=True)


class RevealResultSchema(Schema):
    id = fields.UUID(required=True)
    version = fields.Integer(required=True)
    revealed = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), required=True,
                           data_key="fields", metadata={"description": "The plaintext of each field asked for."})


class HistoryEventSchema(Schema):
    version = fields.Integer(required=True)
    type = fields.String(required=True, metadata={"description": "Event type, e.g. `ContactChanged`."})
    at = fields.String(required=True, metadata={"description": "When it was recorded (UTC, ISO 8601)."})
    actor_id = fields.String(required=True, allow_none=True)
    via = fields.String(required=True, allow_none=True)
    field_names = fields.List(fields.String(), required=True, data_key="fields",
                              metadata={"description": "Names (never values) of the fields the event carried."})


class HistorySchema(Schema):
    id = fields.UUID(required=True)
    events = fields.List(fields.Nested(HistoryEventSchema), required=True)


class InteractionSchema(Schema):
    interaction_id = fields.String(required=True)
    kind = fields.String(required=True)
    channel = fields.String(required=True, allow_none=True)
    occurred_at = fields.String(required=True)
    notes = fields.String(allow_none=True, metadata={"description": "Masked (`•••`) for the auditor."})


class InteractionPageSchema(PageSchema):
    id = fields.UUID(required=True)
    items = fields.List(fields.Nested(InteractionSchema), required=True)



class AcceptedSchema(Schema):
    """A committed change the read model has not reached yet (a separate projection worker)."""

    code = fields.String(required=True, metadata={"enum": ["accepted"]})
    status = fields.Integer(required=True, metadata={"enum": [202]})
    message = fields.String(required=True)
    id = fields.String(required=True, metadata={"description": "The customer the change is about."})
    position = fields.Integer(required=True, metadata={
        "description": "The change's position in the log; the read model answers once it reaches it."})
