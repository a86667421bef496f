"""Marshmallow schemas: the shape of what comes in (STYLE 8).

Unknown fields are rejected, so a client cannot slip in a field the use case did
not ask for (mass assignment). Messages name the field and rule, never the value.
The domain checks the rules (Luhn, mod-97, KYC states); schemas check shape.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

from domain.customer import CUSTOMER_TYPES, KYC_STATUSES, RISK_RATINGS
from domain.free_text import card_data_in, hostile_character
from domain.values import COUNTRY_CODES, PORTFOLIO_PATTERN, SENSITIVE_AUTHENTICATION_FIELDS

# domain.values' rule for one line of text: something besides white space, and no control
# character that white-space folding leaves behind. Stated in the document; the domain applies it.
_CONTROL = r"\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f"
TEXT_PATTERN = rf"^[^{_CONTROL}]*[^\s{_CONTROL}][^{_CONTROL}]*$"

_SAD_MESSAGE = "sensitive authentication data is never accepted (PCI DSS 3.3)"
HOSTILE_MESSAGE = "must not contain an unpaired surrogate, a format or bidi control character, or NUL"
CARD_DATA_MESSAGE = ("must not contain card data (a card number, security code or track data; "
                     "PCI DSS 3.3, 3.4): cards have their own field")


def _find_hostile(data: Any, path: str = "") -> list[str]:
    """Where, in a body or query at any depth, a key or a string value holds a
    character `domain.free_text.hostile_character` refuses: named by path, never shown."""
    found: list[str] = []
    if isinstance(data, str):
        if hostile_character(data):
            found.append(path or "_schema")
    elif isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and hostile_character(key):
                found.append(f"{path}._key" if path else "_key")
                continue  # a hostile key is not repeated in the error either
            found.extend(_find_hostile(value, name))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            found.extend(_find_hostile(item, f"{path}.{index}" if path else str(index)))
    return found


def _code_point_class(categories: frozenset[str]) -> str:
    """A regex character class body for every code point of these categories (BMP and
    beyond), as ranges: what the document says the text rule refuses."""
    import sys
    import unicodedata

    ranges: list[tuple[int, int]] = []
    for point in range(sys.maxunicode + 1):
        if unicodedata.category(chr(point)) in categories:
            if ranges and ranges[-1][1] == point - 1:
                ranges[-1] = (ranges[-1][0], point)
            else:
                ranges.append((point, point))
    return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)


@functools.cache
def text_rule_pattern() -> str:
    """The text rule in the OpenAPI document, on every request string with no pattern of
    its own: no NUL and no format/bidi control (Cf). Lone surrogates cannot be written
    in a UTF-8 document; the rule refuses them all the same. Made once, when asked."""
    return "^[^\\x00" + _code_point_class(frozenset({"Cf"})) + "]*$"


@functools.cache
def one_line_text_pattern() -> str:
    """`TEXT_PATTERN` (something besides white space, no control character) with the
    text rule's refusals added (no NUL, no format/bidi control): what the document says
    of a one-line text field, so that nothing it calls valid is refused (schemathesis
    found a reason with a soft hyphen, U+00AD, documented valid and refused)."""
    refused = _CONTROL + _code_point_class(frozenset({"Cf"}))
    return rf"^[^{refused}]*[^\s{refused}][^{refused}]*$"


def text_rule_property(converter: Any, field: fields.Field, **_: Any) -> dict[str, Any]:
    """apispec attribute function: state the text rule on request strings (StrictSchema)."""
    if isinstance(field, fields.String) and field.metadata.get("pattern") == TEXT_PATTERN:
        return {"pattern": one_line_text_pattern()}
    if (isinstance(field, fields.String) and not isinstance(field, fields.Email | fields.UUID)
            and "pattern" not in field.metadata and isinstance(_owner(field), StrictSchema)
            and not any(isinstance(v, validate.OneOf | validate.Regexp) for v in field.validators)):
        return {"pattern": text_rule_pattern()}
    return {}


def _owner(field: Any) -> Any:
    while isinstance(field, fields.Field):
        field = field.parent
    return field


def _no_card_data(value: str) -> None:
    if card_data_in(value) is not None:
        raise ValidationError(CARD_DATA_MESSAGE)


class FreeText(fields.String):
    """A string a person types freely (a note, a name, an address line, a reason): on
    top of every string's rule (StrictSchema), it may hold no card data (PCI DSS 3.3,
    3.4; domain/free_text.py). The refusal names the field, never the value."""

    def __init__(self, *, validate: Any = None, **kwargs: Any) -> None:
        given = [] if validate is None else list(validate) if isinstance(validate, (list, tuple)) else [validate]
        super().__init__(validate=[*given, _no_card_data], **kwargs)


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
    def refuse_hostile_characters(self, data: Any, **_: Any) -> Any:
        # Issue 10 item 5: every string of every request, keys included, in one place,
        # before any field (or the policy, or a store) reads it. A lone surrogate once
        # failed an audit record after its grant was written; bidi controls make a
        # reviewer read something other than what was stored.
        found = _find_hostile(data)
        if found:
            raise ValidationError({name: [HOSTILE_MESSAGE] for name in found})
        return data

    @pre_load
    def refuse_sensitive_authentication_data(self, data: Any, **_: Any) -> Any:
        # R1.7: a CVV, track data or PIN block is refused before anything reads it,
        # so it can reach no event, log line or error message.
        found = _find_sensitive(data)
        if found:
            raise ValidationError({name: [_SAD_MESSAGE] for name in found})
        return data


class AddressSchema(StrictSchema):
    line1 = FreeText(required=True, validate=validate.Length(1, 200))
    line2 = FreeText(load_default=None, allow_none=True, validate=validate.Length(0, 200))
    city = FreeText(required=True, validate=validate.Length(1, 100))
    postcode = FreeText(load_default=None, allow_none=True, validate=validate.Length(0, 20))
    country = fields.String(required=True, validate=_is_country_code,
                            metadata={"enum": sorted(COUNTRY_CODES), "description": "ISO 3166-1 alpha-2."})


class CardSchema(StrictSchema):
    pan = fields.String(required=True, validate=validate.Length(12, 23))
    expiry = fields.String(required=True, validate=validate.Length(4, 7))


class BankAccountSchema(StrictSchema):
    iban = fields.String(required=True, validate=validate.Length(15, 42))


class CustomerCreateSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(CUSTOMER_TYPES))
    full_name = FreeText(required=True, validate=validate.Length(1, 200))
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
    segment = FreeText(load_default=None, allow_none=True, validate=validate.Length(1, 64))
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
