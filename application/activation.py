"""Account activation (R2.9): credentials never pass through another person.

An account made through the API (by one admin, or by one admin and an approver)
gets a password nobody knows and no second factor. Its activation code goes out of
band, through the configured `ActivationChannel`, to the person's own work address;
neither the requester nor the approver ever sees anything to sign in with. The
first sign-in proves the code, sets the person's own password, and goes on into the
usual TOTP enrolment (`Identity.second_factor_challenge`, then /auth/mfa).

The code carries 128 random bits and is kept only as a keyed hash (HMAC-SHA256 under
a key of the installation, so a copy of the table alone cannot even test a guess);
it is compared with `hmac.compare_digest`, works once (spent in the transaction that
saves the new password) and expires. Every failure answers as a failed login does
and counts towards the account's lockout (R2.3).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from application.errors import ApplicationError
from application.identity import Identity, LoginStarted, _text
from application.ports import (
    ActivationChannel,
    ActivationCodeSpent,
    ActivationMessage,
    ActivationRecord,
    ActivationStore,
    InTransactionHook,
)
from domain.errors import DomainError
from domain.staff import StaffMember, normalise_username

ACTIVATION_TTL = timedelta(hours=24)


class ActivationUnavailable(ApplicationError):
    """The channel could not take the activation now (or none is configured): 503,
    and nothing was created, so the same request can simply be made again."""

    code = "activation_unavailable"

    def __init__(self, cause: str = "") -> None:
        super().__init__("the activation code could not be sent to the new member of staff; "
                         "nothing was changed, try again later")
        self.cause = cause  # an exception type's name, for the operator's log


def normalise_code(code: str) -> str:
    """Codes are read from a mail and typed: case, spaces and dashes do not matter."""
    return "".join(ch for ch in _text(code).lower() if ch not in " -\t")


def new_code() -> str:
    """128 random bits as four groups of eight hex digits."""
    raw = secrets.token_hex(16)
    return "-".join(raw[i:i + 8] for i in range(0, 32, 8))


@dataclass
class Activation:
    """Issue activation codes to new accounts, and activate with one."""

    identity: Identity
    store: ActivationStore
    channel: ActivationChannel | None
    code_hash: Callable[[str], str]
    ttl: timedelta = ACTIVATION_TTL

    def issue(self, member: StaffMember, email: str) -> InTransactionHook:
        """Send a fresh code to `email` now; return the hook that stores its hash in the
        transaction that saves the account (or the resend's record). Sent first: a
        channel that is down leaves nothing behind, and a code whose account then
        fails to save opens nothing."""
        if self.channel is None:
            raise ActivationUnavailable("no activation channel configured")
        code = new_code()
        expires = self.identity.now() + self.ttl
        self.channel.send_activation(ActivationMessage(to=email, username=member.username, code=code,
                                                       expires_at=expires))
        return self.store.issue_activation(ActivationRecord(str(member.id), self.code_hash(normalise_code(code)),
                                                            expires))

    def activate(self, username: str, code: str, new_password: str) -> LoginStarted:
        """Prove the code, set one's own password, and start the TOTP enrolment.

        Raises InvalidCredentials (identically for an unknown user, a wrong, used or
        expired code, a disabled or locked account) or WeakPassword (422; the code is
        not spent, so the person can try another password)."""
        identity = self.identity
        try:
            name: str | None = normalise_username(_text(username))
        except DomainError:
            name = None
        staff_id = identity.directory.staff_id_for(name) if name else None
        member = identity.staff(staff_id) if staff_id else None
        record = self.store.activation(str(member.id)) if member is not None else None
        digest = self.code_hash(normalise_code(code))
        # Compared whoever asks, so an unknown account costs what a wrong code does.
        matches = hmac.compare_digest(digest, record.code_hash if record is not None else "0" * len(digest))
        now = identity.now()
        if member is None:
            raise identity._fail("activation_failed", "unknown_account", None, "activation")
        member_id = str(member.id)
        if identity.throttle.locked_until(member_id, now) is not None:
            raise identity._fail("activation_failed", "locked", member_id, "activation")
        if member.status != "active":
            raise identity._fail("activation_failed", "disabled", member_id, "activation")
        if record is None or not matches:
            raise identity._fail("activation_failed", "wrong_code", member_id, "activation")
        if record.used_at is not None:
            raise identity._fail("activation_failed", "used_code", member_id, "activation")
        if record.expires_at <= now:
            raise identity._fail("activation_failed", "expired_code", member_id, "activation")
        identity.check_password_rules(new_password, username=member.username)
        member.change_password(identity.hasher.hash(new_password), must_change_password=False)
        try:
            with identity.acting(member_id, purpose="account activation"):
                identity.app._save(member, in_transaction=self.store.spend_activation(member_id, record.code_hash, now))
        except ActivationCodeSpent:
            # Another request spent it between our read and our write.
            raise identity._fail("activation_failed", "used_code", member_id, "activation") from None
        identity._record(member_id, "activation", "succeeded")
        return identity.second_factor_challenge(member)
