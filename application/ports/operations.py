"""The operator's ports (application/operations.py): positions in the log, rebuilding
and following the read models, and the key ring seen from outside (R1.4, R4.4, R7.4).
"""

from __future__ import annotations

from collections.abc import Callable
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

    def rebuild(self, app: Any, *, upto: int | None = None, progress: Callable[[int], None] | None = None,
                jobs: int | None = None) -> int:
        """Empty the read models and project the log again; returns the events projected.
        `jobs`: that many worker processes, the log partitioned by customer (issue 15)."""

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

    def subjects_older_than(self, cutoff: datetime) -> dict[str, list[str]]:
        """Subjects (not the system's) with a key made before `cutoff`, and their key kinds."""

    def destroy(self, subject_id: str, kinds: list[str]) -> list[str]:
        """Delete the subject's keys of these kinds and enter them in the erasure ledger."""
