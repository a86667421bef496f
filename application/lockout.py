"""Ending a lockout early (R2.3, issue 10 item 8): a security officer unlocks an
account, with a reason.

The PCI DSS 8.3.4 lock lasts 30 minutes "or until the user's identity is
confirmed": whoever confirms it says why, and that reason is an `Unlocked` event on
the account, committed in the same transaction that clears the lock (one commits
without the other never). The per-address throttle in front of the lock
(`application/throttle.py`) is what keeps an attacker from locking an account
again and again; this is the officer's remedy when one did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from application.errors import ApplicationError
from application.identity import Identity
from application.policy import NotPermitted
from application.security import Actor, Permission
from application.staff_admin import StaffNotFound


class AccountNotLocked(ApplicationError):
    """There is no lock to end (409): the account signs in as it is."""

    def __init__(self, staff_id: object) -> None:
        super().__init__(f"staff member {staff_id} is not locked")


@dataclass
class LockoutAdministration:
    identity: Identity

    def unlock(self, actor: Actor, staff_id: str, reason: str) -> dict[str, Any]:
        """End the account's lock and its failure count; needs `staff:unlock`."""
        if not self.identity.policy.permits(actor, Permission.STAFF_UNLOCK, operation="staff:unlock"):
            raise NotPermitted(str(Permission.STAFF_UNLOCK))
        member = self.identity.staff(staff_id)
        if member is None:
            raise StaffNotFound(staff_id)
        locked_until = self.identity.throttle.locked_until(str(member.id), self.identity.now())
        if locked_until is None:
            raise AccountNotLocked(member.id)
        member.record_unlock(reason)
        with self.identity.acting(actor.staff_id, session_id=actor.session_id, purpose="unlock"):
            self.identity.app._save(member, in_transaction=self.identity.throttle.clearing_failures(str(member.id)))
        return {"id": str(member.id), "unlocked": True, "was_locked_until": locked_until}
