"""Which keys an erasure destroys (R5.4): the default `RetentionPolicy`.

Today every erasure destroys both keys. The AML rule (keep KYC evidence for five
years after the relationship ends, restricted, and destroy its key then) plugs in
as another `application.ports.RetentionPolicy` without touching the erasure use case.
"""

from __future__ import annotations

from domain.catalogue import KeyKind
from domain.customer import Customer


class DestroyAllKeys:
    """No legal hold: an erasure destroys the profile and the KYC key."""

    def keys_to_destroy(self, customer: Customer | None) -> list[str]:
        return [str(KeyKind.PROFILE), str(KeyKind.KYC)]
