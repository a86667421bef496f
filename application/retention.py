"""Which keys an erasure destroys (R5.4): the hook for AML holds.

Today every erasure destroys both keys. The AML rule (keep KYC evidence for five
years after the relationship ends, restricted, and destroy its key then) plugs in
here without touching the erasure use case.
"""

from __future__ import annotations

from typing import Any, Protocol

from domain.catalogue import KeyKind


class RetentionPolicy(Protocol):
    def keys_to_destroy(self, customer: Any) -> list[str]:
        """Key kinds an erasure request destroys now for this customer."""


class DestroyAllKeys:
    """No legal hold: an erasure destroys the profile and the KYC key."""

    def keys_to_destroy(self, customer: Any) -> list[str]:
        return [str(KeyKind.PROFILE), str(KeyKind.KYC)]
