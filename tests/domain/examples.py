"""Example customers and staff for domain stories. All data is fictitious; card numbers
are the card schemes' published test PANs and the IBANs the registry's examples."""

from __future__ import annotations

from typing import Any

from domain.customer import Customer
from domain.staff import StaffMember

VISA_TEST_PAN = "4111111111111111"
MASTERCARD_TEST_PAN = "5555555555554444"
GB_IBAN = "GB82WEST12345698765432"
DE_IBAN = "DE89370400440532013000"


def register_ada(**overrides: Any) -> Customer:
    fields: dict[str, Any] = {
        "type": "individual",
        "full_name": "Ada Lovelace",
        "date_of_birth": "1985-12-10",
        "national_id": "QQ 12 34 56 C",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0000",
        "address": {"line1": "12 St James's Square", "city": "London", "postcode": "SW1Y 4JH", "country": "GB"},
        "portfolio": "uk-retail",
        "risk_rating": "low",
    }
    fields.update(overrides)
    return Customer.register(**fields)


def enrol_alice(**overrides: Any) -> StaffMember:
    fields: dict[str, Any] = {
        "username": "alice",
        "display_name": "Alice Agent",
        "roles": ["agent"],
        "portfolios": ["uk-retail"],
        "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    }
    fields.update(overrides)
    return StaffMember.enrol(**fields)
