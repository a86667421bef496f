"""Security training (R6.4, PCI DSS 12.6): completions recorded, and read back.

A completion is a `TrainingCompleted` event on the member's own stream (who, which
course and version, when, an evidence reference, recorded by whom), in the same
chained, encrypted log as everything else: the access review reads it back from
there (R6.1), and so does authentication, which puts the latest completion on the
actor; `application/policy.py` decides from it whether reveal and export are open.

Who may record: holders of `training:record` (admin, compliance officer), and the
operator on the command line (the bootstrap, as for `strongroom staff add`). Nobody
records their own training: a member whose training lapsed would otherwise give
their reveal right back to themselves (refused 403 `self_training_record`, recorded).
Recording needs a fresh step-up through the API (R2.11): it reopens reveal rights,
as a role grant opens them.

Reading: the member themselves, and whoever holds `training:record`, `staff:read` or
`audit:read` (not a supervisor's `reports:read`: colleagues' records are not theirs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from application.context import current_context
from application.errors import ValidationFailed
from application.identity import Identity
from application.policy import OPERATOR_ROLE, AccessDenied, NotPermitted, Policy
from application.security import Actor, Permission
from application.staff_admin import StaffNotFound
from domain.staff import StaffMember

# A completion may not be dated ahead of the server's clock by more than this skew:
# one dated next year would keep reveal open for two.
FUTURE_SKEW = timedelta(minutes=5)
_READERS = (Permission.TRAINING_RECORD, Permission.STAFF_READ, Permission.AUDIT_READ)


class SelfTrainingRecord(AccessDenied):
    """R6.4: nobody records their own training (it would reopen their own reveal)."""

    code = "self_training_record"

    def __init__(self) -> None:
        super().__init__("nobody may record their own training")


@dataclass
class TrainingRecords:
    """Record and list security-training completions (R6.4)."""

    identity: Identity
    policy: Policy

    def _is_operator(self, actor: Actor) -> bool:
        context = current_context()
        return OPERATOR_ROLE in actor.roles and context is not None and context.via == "cli"

    def _member(self, staff_id: str) -> StaffMember:
        member = self.identity.staff(staff_id)
        if member is None:
            raise StaffNotFound(staff_id)
        return member

    def record(self, actor: Actor, staff_id: str, *, course: str, course_version: str,
               completed_at: datetime | str, evidence_ref: str) -> dict[str, Any]:
        """Record a completion for `staff_id`; returns the member's training state."""
        operation = "training:record"
        if not self._is_operator(actor):
            if not self.policy.permits(actor, Permission.TRAINING_RECORD, operation=operation):
                raise NotPermitted(str(Permission.TRAINING_RECORD))
            if str(staff_id) == actor.staff_id:
                self.policy.refuse(operation, "self_training_record")
                raise SelfTrainingRecord()
            self.policy.require_step_up(actor, operation)
        member = self._member(staff_id)
        member.record_training(course=course, course_version=course_version, completed_at=str(
            completed_at.isoformat() if isinstance(completed_at, datetime) else completed_at),
            evidence_ref=evidence_ref, recorded_by=actor.staff_id)
        last = member.completions()[-1]
        if datetime.fromisoformat(last["completed_at"]) > self.identity.now() + FUTURE_SKEW:
            raise ValidationFailed({"completed_at": ["must not be in the future"]})
        with self.identity.acting(actor.staff_id, session_id=actor.session_id, purpose="training recorded"):
            self.identity.app._save(member)
        return self.state(member)

    def list(self, actor: Actor, staff_id: str) -> dict[str, Any]:
        """A member's completions and whether their training is current now."""
        someone_else = str(staff_id) != actor.staff_id and not self._is_operator(actor)
        if someone_else and not any(actor.has(p) for p in _READERS):
            self.policy.refuse("training:list", "permission")
            raise NotPermitted(str(Permission.TRAINING_RECORD))
        return self.state(self._member(staff_id))

    def state(self, member: StaffMember) -> dict[str, Any]:
        """The training state the access review shows (R6.1): completions, the latest,
        until when it holds, and whether it is current now."""
        trained_at = member.last_trained_at()
        probe = Actor(staff_id=str(member.id), username=member.username, roles=frozenset(),
                      portfolios=frozenset(), trained_at=trained_at)
        return {
            "staff_id": str(member.id),
            "username": member.username,
            "completions": member.completions(),
            "last_completed_at": trained_at,
            "valid_until": self.policy.training_valid_until(trained_at),
            "current": self.policy.training_current(probe),
        }
