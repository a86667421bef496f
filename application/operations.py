"""Operator use cases the command line needs beyond the customer and staff ones:
where the log stands, rebuilding and following the read models, and key status.

The command line is a client of the application like the API (STYLE: the house):
it reaches the recorder, the projection and the key store only through these
methods, whose ports are in `application/ports/operations.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from application.clock import utc_now
from application.ports import (
    KeyInventory,
    LogPositions,
    ReadModelPosition,
    ReadModelProjection,
)
from domain.catalogue import KeyKind


@dataclass(frozen=True)
class Rebuilt:
    events: int  # events projected
    position: int  # the log position the read models reached


def _made_for_an_aggregate(kinds: list[str]) -> bool:
    # infrastructure/crypto/envelope.py makes these two (at least) for every new
    # aggregate with personal data; a sealed read-model row gets a single kind.
    return {str(KeyKind.PROFILE), str(KeyKind.KYC)} <= set(kinds)


# Keys younger than this are never swept: their subject's first events may still be
# on the way to the store (a request's deadline is seconds; this is a day).
ORPHAN_GRACE = timedelta(hours=24)


class OrphanSweepRefused(Exception):
    """The sweep would remove keys from a store whose event log looks wrong (empty)."""


@dataclass(frozen=True)
class OrphanSweep:
    examined: int  # subjects with keys older than the grace period
    orphans: dict[str, list[str]]  # subject -> key kinds, with no event in the log
    removed: bool  # False on a dry run


@dataclass
class Operations:
    """Operator use cases over the log, the read models and the keys."""

    app: Any  # the Strongroom application, which the projection reads the log through
    projection: ReadModelProjection
    read_model: ReadModelPosition
    keys: KeyInventory
    log: LogPositions = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.app.recorder  # the timed recorders (infrastructure/eventstore/)

    def position_at(self, when: datetime) -> int:
        """The log position at time `when`: what "rebuild to T" or "restore to T" means."""
        return self.log.position_at(when)

    def log_head(self) -> int:
        """The last position in the log (0 when empty)."""
        return self.log.max_notification_id() or 0

    def read_model_position(self) -> int:
        """How far the read models have projected the log."""
        return self.read_model.position()

    def rebuild_read_models(self, upto: int | None = None,
                            progress: Callable[[int], None] | None = None, jobs: int | None = None) -> Rebuilt:
        """Empty the read models and project the log again, up to `upto` if given; with
        `jobs`, over that many processes, the log partitioned by customer (issue 15)."""
        events = self.projection.rebuild(self.app, upto=upto, progress=progress, jobs=jobs)
        return Rebuilt(events, self.read_model.position())

    def follow_log(self, stop: Callable[[], bool]) -> None:
        """The projection worker: keep the read models in step until `stop()`."""
        self.projection.run_forever(self.app, stop=stop)

    def key_status(self, customer: str | None = None) -> dict[str, Any]:
        """The KEK in use and the data keys by state; with `customer`, that subject's keys."""
        status: dict[str, Any] = {"kek_id": self.keys.kek_id(), "data_keys": self.keys.counts()}
        if customer:
            status["customer"] = {"id": customer, **self.keys.status(customer)}
        return status

    def sweep_orphan_keys(self, grace: timedelta = ORPHAN_GRACE, *, dry_run: bool = False) -> OrphanSweep:
        """Remove the keys of subjects that have no event in the log (issue 9).

        A subject's keys are made in their own transaction on the keys database
        before its first events commit; a process killed in between leaves keys
        for a subject that never existed. Keys older than `grace` whose subject has
        no event are destroyed and entered in the erasure ledger (the record of
        what went, and a guard that they never come back). Only key sets the event
        mapper makes for a new aggregate (profile and KYC together) are considered:
        a key made for a read-model row of its own (a pending approval's payload)
        has no events by design. A log with no events at
        all is refused: it is more likely the wrong database than a store of orphans.
        """
        candidates = self.keys.subjects_older_than(utc_now() - grace)
        if candidates and not self.log.max_notification_id():
            raise OrphanSweepRefused(
                f"the event log is empty but {len(candidates)} subject(s) have keys: "
                "is the database URL right? nothing was removed")
        orphans = {subject: kinds for subject, kinds in candidates.items()
                   if _made_for_an_aggregate(kinds) and not self._has_events(subject)}
        if not dry_run:
            for subject, kinds in orphans.items():
                self.keys.destroy(subject, kinds)
        return OrphanSweep(len(candidates), orphans, removed=not dry_run)

    def _has_events(self, subject: str) -> bool:
        try:
            stream = UUID(subject)
        except ValueError:
            return True  # not an aggregate's id: not ours to judge
        return bool(self.app.recorder.select_events(stream, limit=1))
