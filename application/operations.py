"""Operator use cases the command line needs beyond the customer and staff ones:
where the log stands, rebuilding and following the read models, and key status.

The command line is a client of the application like the API (STYLE: the house):
it reaches the recorder, the projection and the key store only through these
methods, whose ports are in `application/ports/operations.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from application.ports import KeyInventory, LogPositions, ReadModelPosition, ReadModelProjection


@dataclass(frozen=True)
class Rebuilt:
    events: int  # events projected
    position: int  # the log position the read models reached


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
                            progress: Callable[[int], None] | None = None) -> Rebuilt:
        """Empty the read models and project the log again, up to `upto` if given."""
        events = self.projection.rebuild(self.app, upto=upto, progress=progress)
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
