"""Distinct, fictitious customers for benchmarks.

Every value is made from the customer's number and a run token, so no two customers
share an email, phone, national id, card or IBAN (a duplicate would put two rows in
one blind-index bucket on purpose and flatter nothing but would skew the lookups).
The names say "Bench" so that nobody mistakes them for people.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from domain.values import card_bin, card_last4
from infrastructure.readmodel import CustomerRow

_PORTFOLIOS = ("retail", "business", "private")
_RISKS = ("low", "medium", "high")
_BIRTH_EPOCH = date(1950, 1, 1)


def luhn_complete(digits: str) -> str:
    """`digits` followed by its Luhn check digit."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:  # doubled: these sit at odd places once the check digit is added
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return digits + str((10 - total % 10) % 10)


def gb_iban(account: int) -> str:
    """A GB IBAN (bank code BENC, sort code 000000) with correct mod-97 check digits."""
    bban = f"BENC000000{account % 10**8:08d}"
    rearranged = "".join(str(int(c, 36)) for c in bban + "GB00")
    return f"GB{98 - int(rearranged) % 97:02d}{bban}"


class Population:
    """Customer number -> that customer's values, for one run (the token keeps runs apart)."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or uuid.uuid4().hex[:8]

    def email(self, n: int) -> str:
        return f"bench.{self.token}.{n}@example.org"

    def absent_email(self, n: int) -> str:
        return f"absent.{self.token}.{n}@example.org"

    def phone(self, n: int) -> str:
        return f"+4470{n % 10**9:09d}"

    def national_id(self, n: int) -> str:
        return f"BN{self.token.upper()}{n:08d}"

    def pan(self, n: int) -> str:
        return luhn_complete(f"49{int(self.token, 16) % 10**4:04d}{n % 10**9:09d}")

    def date_of_birth(self, n: int) -> str:
        return (_BIRTH_EPOCH + timedelta(days=n % 18_000)).isoformat()

    def address(self, n: int) -> dict[str, Any]:
        return {"line1": f"{n} Bench Street", "line2": None, "city": "London",
                "postcode": "SW1A 1AA", "country": "GB"}

    def fields(self, n: int) -> dict[str, Any]:
        """Input for `Strongroom.register_customer` / `Customer.register`."""
        return {
            "type": "individual",
            "full_name": f"Bench Customer {n}",
            "date_of_birth": self.date_of_birth(n),
            "national_id": self.national_id(n),
            "email": self.email(n),
            "phone": self.phone(n),
            "address": self.address(n),
            "portfolio": _PORTFOLIOS[n % len(_PORTFOLIOS)],
            "risk_rating": _RISKS[n % len(_RISKS)],
            "cards": [{"pan": self.pan(n), "expiry": "12/34"}],
            "bank_accounts": [{"iban": gb_iban(n)}],
        }

    def row(self, n: int, customer_id: str) -> CustomerRow:
        """A read-model row in `Customer.to_record()`'s shape, without an aggregate."""
        now = datetime.now(UTC).isoformat()
        pan, card_id = self.pan(n), str(uuid.uuid4())
        record = {
            "id": customer_id, "version": 1, "created_on": now, "modified_on": now,
            "type": "individual", "status": "active", "restricted": False, "closed_on": None,
            "portfolio": _PORTFOLIOS[n % len(_PORTFOLIOS)], "risk_rating": _RISKS[n % len(_RISKS)],
            "kyc_status": "not_started", "segment": None,
            "full_name": f"Bench Customer {n}", "date_of_birth": self.date_of_birth(n),
            "national_id": self.national_id(n), "email": self.email(n), "phone": self.phone(n),
            "address": self.address(n),
            "cards": [{"card_id": card_id, "bin": card_bin(pan), "last4": card_last4(pan),
                       "expiry_month": "2034-12"}],
            "bank_accounts": [{"account_id": str(uuid.uuid4()), "iban": gb_iban(n)}],
        }
        return CustomerRow(record, {card_id: pan})

    def rows(self, ids: list[str], batch: int) -> Iterator[list[CustomerRow]]:
        for start in range(0, len(ids), batch):
            yield [self.row(n, ids[n]) for n in range(start, min(start + batch, len(ids)))]
