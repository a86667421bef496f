"""The erasure side's ports (R5.4, R5.5): signing certificates, reading the KYC part
an AML hold keeps, and finding customers whose retention has ended.

`infrastructure/audit/erasure_certificate.py`, `infrastructure/held_kyc.py` and
`infrastructure/retention_candidates.py` implement them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol


class CertificateIssuer(Protocol):
    """Signs an erasure certificate with the instance's audit key."""

    def issue(self, body: dict[str, Any]) -> dict[str, Any]:
        """The signed document for `body` (ids, key kinds, hold codes, times only)."""


class HeldKyc(Protocol):
    """The KYC part of an erased customer's stream, read without the profile key."""

    def read(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's KYC and system fields, or None when it is no customer."""


class RetentionCandidates(Protocol):
    """Customers whose relationship ended and who were last in contact before a time."""

    def last_contact_before(self, cutoff: datetime) -> list[str]:
        """Ids of closed customers, not erased, with no change and no interaction
        since `cutoff`, in id order."""
