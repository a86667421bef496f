"""Account activation's ports (R2.9: credentials never pass through another person).

A new account made through the API gets no password anyone knows. An activation
code goes out of band to the person's own work address (`ActivationChannel`; SMTP in
`infrastructure/mail.py`), and only its keyed hash is kept (`ActivationStore`, in
`infrastructure/identity_store.py`): single use, with an expiry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from application.ports.customers import InTransactionHook


class ActivationCodeSpent(Exception):
    """Raised inside the transaction when the code was used meanwhile: it rolls back."""


@dataclass(frozen=True)
class ActivationMessage:
    """What the channel delivers to the new member of staff, and only to them."""

    to: str  # their work email address
    username: str
    code: str
    expires_at: datetime


class ActivationChannel(Protocol):
    """Delivers an activation code to its person (R2.9)."""

    def send_activation(self, message: ActivationMessage) -> None:
        """Hand the message to the channel; raise `ActivationUnavailable`
        (application/activation.py) when it cannot be delivered now."""


@dataclass(frozen=True)
class ActivationRecord:
    """An issued activation code, kept only as its keyed hash."""

    staff_id: str
    code_hash: str
    expires_at: datetime
    used_at: datetime | None = None


class ActivationStore(Protocol):
    """Activation codes' hashes, one live code per account."""

    def activation(self, staff_id: str) -> ActivationRecord | None:
        """The account's latest activation code, used or not."""

    def issue_activation(self, record: ActivationRecord) -> InTransactionHook:
        """A hook that stores `record` (replacing any earlier code of the account)
        inside the transaction that saves the account's events."""

    def spend_activation(self, staff_id: str, code_hash: str, at: datetime) -> InTransactionHook:
        """A hook that marks the code used inside the transaction that saves the new
        password; it raises `ActivationCodeSpent` (rolling everything back) when the
        code was used meanwhile, so a code works once even under a race."""
