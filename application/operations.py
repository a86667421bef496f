"""Operator use cases the command line needs beyond the customer and staff ones:
where the log stands, rebuilding and following the read models, and key status.

The command line is a client of the application like the API (STYLE: the house):
it reaches the recorder, the projection and the key store only through these
methods, whose ports are declared here and implemented in `infrastructure/`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class LogPositions(Protocol):
    """What the recorder answers about positions in the log (infrastructure/eventstore/)."""

    def position_at(self, when: datetime) -> int:
        """The greatest log position recorded at or before `when` (0 if none)."""

    def max_notification_id(self) -> int | None:
        """The last position in the log, or None when it is empty."""


class ReadModelProjection(Protocol):
    """Projects the log into the read models (infrastructure/projection.py)."""

    def rebuild(self, app: Any, *, upto: int | None = None, progress: Callable[[int], None] | None = None) -> int:
        """Empty the read models and project the log again; returns the events projected."""

    def run_forever(self, app: Any, *, interval: float = 0.2, stop: Callable[[], bool] = lambda: False) -> None:
        """Follow the log until `stop()` says so."""


class ReadModelPosition(Protocol):
    def position(self) -> int:
        """The log position the read model has reached."""


class KeyInventory(Protocol):
    """The key ring seen from outside: which KEK, how many data keys (R1.4, R5.4)."""

    def kek_id(self) -> str:
        """The id of the KEK that wraps the data keys."""

    def counts(self) -> dict[str, int]:
        """Data keys by state (active, destroyed)."""

    def status(self, subject_id: str) -> dict[str, str]:
        """Each key kind of the subject: "active", "destroyed" or "absent"."""


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
