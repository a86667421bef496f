"""Restore-side use cases: one customer at a point in time (R4.5), and the record of
backups and drills (R4.1, R4.3).

Event timestamps are sealed inside the ciphertext, so "as of T" cannot be answered
by decrypting and filtering; the recorders keep a plaintext `recorded_at` per row and
answer which version of a stream existed at T. Reading that version back goes
through the ordinary repository (and its cipher), so a destroyed key still means
"erased", whatever the time asked for (R4.6).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, cast

from eventsourcing.application import AggregateNotFoundError

from application.context import require_context
from application.errors import ValidationFailed
from domain.operations import RECOVERY_LOG_ID, RecoveryLog

if TYPE_CHECKING:  # customers.py imports this module: the class is for annotations only
    from application.customers import Strongroom


def as_utc(when: datetime, field: str = "as_of") -> datetime:
    """`when` in UTC; a naive time is refused, because its zone would be a guess
    and an operator reverting "to 12:00" must not land an hour off."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValidationFailed({field: ["must carry a timezone, e.g. 2026-11-29T12:00:00+00:00"]})
    return when.astimezone(timezone.utc)


class RecoveryRecords:
    """Backups taken and drills run, as events in the log (R4.1, R4.3).

    The infrastructure that writes backups and runs drills reports here; the
    monitoring issue's overdue alert reads `status()`. Like the access log, this
    saves outside a customer's unit of work: it is an operator's act of its own.
    """

    def __init__(self, app: Strongroom) -> None:
        self.app = app

    def _log(self) -> RecoveryLog:
        try:
            log: Any = self.app.repository.get(RECOVERY_LOG_ID)
        except AggregateNotFoundError:
            return RecoveryLog.open()
        return cast(RecoveryLog, log)

    def record_backup(self, target: str, backup_id: str, position: int) -> None:
        """A complete backup reached `target`; recorded with who ran it."""
        require_context()
        log = self._log()
        log.record_backup(target, backup_id, position)
        self.app.save(log)

    def record_drill(
        self, *, target: str, backup_id: str, position: int, rpo_seconds: float,
        rto_seconds: float, outcome: str, failures: list[str],
    ) -> None:
        """A drill's RPO, RTO and outcome, as an audit event (R4.3)."""
        require_context()
        log = self._log()
        log.record_drill(
            target=target, backup_id=backup_id, position=position, rpo_seconds=rpo_seconds,
            rto_seconds=rto_seconds, outcome=outcome, failures=failures,
        )
        self.app.save(log)

    def status(self) -> dict[str, Any]:
        """Last backup per target, last drill and last good drill (times in UTC)."""
        return self._log().to_record()
