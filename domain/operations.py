"""The installation's recovery record (R4.1, R4.3): backups taken and restore drills run.

One aggregate per installation, at a fixed id, so "when did the last good backup and
the last drill happen" is one read (the monitoring issue's overdue alert asks it),
and each entry is an event in the same tamper-evident log as everything else, with
who ran it. Every field is operational (target names, positions, seconds, outcomes),
never personal data, so all of it lives under the system key.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidField

RECOVERY_LOG_ID = UUID("3f8e4c1a-6b2d-4e7f-9a10-5c2b7d9e0f41")
DRILL_OUTCOMES = ("succeeded", "failed")
FAILURES_MAX = 50


class RecoveryLog(Aggregate):
    """Backups and drills of one installation. Create with `RecoveryLog.open()`."""

    @classmethod
    def open(cls) -> RecoveryLog:
        return cls._create(cls.Opened, id=RECOVERY_LOG_ID)

    class Opened(Aggregate.Created):
        pass

    @event(Opened)
    def __init__(self) -> None:
        self.last_backups: dict[str, dict[str, Any]] = {}
        self.last_drill: dict[str, Any] | None = None
        self.last_good_drill: dict[str, Any] | None = None

    def record_backup(self, target: str, backup_id: str, position: int) -> None:
        """A complete backup (manifest written) reached `target` up to `position`."""
        self._record_backup(target=_name(target, "target"), backup_id=_name(backup_id, "backup_id"),
                            position=_position(position), occurred_at=_now())

    @event("BackupTaken")
    def _record_backup(self, target: str, backup_id: str, position: int, occurred_at: str) -> None:
        self.last_backups = {
            **self.last_backups,
            target: {"backup_id": backup_id, "position": position, "at": occurred_at},
        }

    def record_drill(
        self, *, target: str, backup_id: str, position: int, rpo_seconds: float,
        rto_seconds: float, outcome: str, failures: list[str],
    ) -> None:
        """A restore drill's result: RPO (age of the newest backed-up event), RTO
        (seconds to a usable restored store), and what failed, if anything."""
        if outcome not in DRILL_OUTCOMES:
            raise InvalidField("outcome", "must be succeeded or failed")
        if rpo_seconds < 0 or rto_seconds < 0:
            raise InvalidField("rto_seconds", "must not be negative")
        self._record_drill(
            target=_name(target, "target"), backup_id=_name(backup_id, "backup_id"),
            position=_position(position), rpo_seconds=round(float(rpo_seconds), 3),
            rto_seconds=round(float(rto_seconds), 3), outcome=outcome,
            failures=[str(f)[:300] for f in failures[:FAILURES_MAX]], occurred_at=_now(),
        )

    @event("Drilled")
    def _record_drill(
        self, target: str, backup_id: str, position: int, rpo_seconds: float,
        rto_seconds: float, outcome: str, failures: list[str], occurred_at: str,
    ) -> None:
        drill = {
            "target": target, "backup_id": backup_id, "position": position,
            "rpo_seconds": rpo_seconds, "rto_seconds": rto_seconds, "outcome": outcome,
            "failures": list(failures), "at": occurred_at,
        }
        self.last_drill = drill
        if outcome == "succeeded":
            self.last_good_drill = drill

    def to_record(self) -> dict[str, Any]:
        """When the last backup reached each target, and the last (good) drill."""
        return {
            "last_backups": {name: dict(entry) for name, entry in self.last_backups.items()},
            "last_drill": None if self.last_drill is None else dict(self.last_drill),
            "last_good_drill": None if self.last_good_drill is None else dict(self.last_good_drill),
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 100:
        raise InvalidField(field, "must be a name of 1 to 100 characters")
    return value


def _position(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidField("position", "must be a non-negative log position")
    return value
