"""Marshmallow schemas: the shape of what comes in (STYLE 8).

Unknown fields are rejected, so a client cannot slip in a field the use case did
not ask for (mass assignment). Messages name the field and rule, never the value.
The domain checks the rules (Luhn, mod-97, KYC states); schemas check shape.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

from domain.customer import CUSTOMER_TYPES, KYC_STATUSES, RISK_RATINGS
from domain.values import COUNTRY_CODES, PORTFOLIO_PATTERN, SENSITIVE_AUTHENTICATION_FIELDS

# domain.values' rule for one line of text: something besides white space, and no control
# character that white-space folding leaves behind. Stated in the document; the domain applies it.
_CONTROL = r"\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f"
TEXT_PATTERN = rf"^[^{_CONTROL}]*[^\s{_CONTROL}][^{_CONTROL}]*$"

_SAD_MESSAGE = "sensitive authentication data is never accepted (PCI DSS 3.3)"


def _find_sensitive(data: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and key.lower().replace("-", "_") in SENSITIVE_AUTHENTICATION_FIELDS:
                found.append(name)
            found.extend(_find_sensitive(value, name))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            found.extend(_find_sensitive(item, f"{path}.{index}"))
    return found


def _is_country_code(value: str) -> None:
    # The document lists the codes in upper case; as the domain does, `gb` is taken as `GB`.
    if value.strip().upper() not in COUNTRY_CODES:
        raise ValidationError("must be an ISO 3166-1 alpha-2 country code")


class WholeNumber(fields.Integer):
    """A JSON number with no fraction: `30` or `30.0` (JSON Schema's `integer` is both),
    never `"30"` or `30.5`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._validated(value)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE

    @pre_load
    def refuse_sensitive_authentication_data(self, data: Any, **_: Any) -> Any:
        # R1.7: a CVV, track data or PIN block is refused before anything reads it,
        # so it can reach no event, log line or error message.
        found = _find_sensitive(data)
        if found:
            raise ValidationError({name: [_SAD_MESSAGE] for name in found})
        return data


class AddressSchema(StrictSchema):
    line1 = fields.String(required=True, validate=validate.Length(1, 200))
    line2 = fields.String(load_default=None, allow_none=True, validate=validate.Length(0, 200))
    city = fields.String(required=True, validate=validate.Length(1, 100))
    postcode = fields.String(load_default=None, allow_none=True, validate=validate.Length(0, 20))
    country = fields.String(required=True, validate=_is_country_code,
                            metadata={"enum": sorted(COUNTRY_CODES), "description": "ISO 3166-1 alpha-2."})


class CardSchema(StrictSchema):
    pan = fields.String(required=True, validate=validate.Length(12, 23))
    expiry = fields.String(required=True, validate=validate.Length(4, 7))


class BankAccountSchema(StrictSchema):
    iban = fields.String(required=True, validate=validate.Length(15, 42))


class CustomerCreateSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(CUSTOMER_TYPES))
    full_name = fields.String(required=True, validate=validate.Length(1, 200))
    date_of_birth = fields.Date(load_default=None, allow_none=True)
    national_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 64))
    email = fields.String(load_default=None, allow_none=True, validate=validate.Length(3, 254))
    phone = fields.String(load_default=None, allow_none=True, validate=validate.Length(6, 32))
    address = fields.Nested(AddressSchema, required=True)
    portfolio = fields.String(required=True, validate=validate.Length(1, 64),
                              metadata={"pattern": PORTFOLIO_PATTERN})
    risk_rating = fields.String(required=True, validate=validate.OneOf(RISK_RATINGS))
    kyc_status = fields.String(
        load_default="not_started",
        validate=validate.OneOf(KYC_STATUSES),
    )
    segment = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 64))
    cards = fields.List(fields.Nested(CardSchema), load_default=list)
    bank_accounts = fields.List(fields.Nested(BankAccountSchema), load_default=list)


class PageSchema(Schema):
    """The one envelope of every collection: `items` (declared by each subclass) and the cursor."""

    next_cursor = fields.String(required=True, allow_none=True,
                                metadata={"description": "Pass as `cursor` for the next page; null at the end."})


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dict as {"cards.0.pan": ["..."]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                flat[name] = list(value)
            else:
                flat.update(flatten_errors(value, name))
    elif isinstance(messages, list):
        flat[prefix or "_schema"] = [str(m) for m in messages]
    return flat
