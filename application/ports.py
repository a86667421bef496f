"""Ports: what the use cases need from the outside, as Protocols.

`infrastructure/` implements them (keys, read models, projection); tests may pass
simple fakes for logic-only tests, never as the proof that a feature works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from eventsourcing.persistence import Mapper


class SubjectKeys(Protocol):
    """A data subject's keys: the crypto-shredding primitive (R5.4)."""

    def destroy(self, subject_id: str, kinds: list[str]) -> list[str]:
        """Destroy these keys of the subject for good; returns the kinds destroyed."""

    def status(self, subject_id: str) -> dict[str, str]:
        """Each key kind of the subject: "active", "destroyed" or "absent"."""


class CustomerReadModel(Protocol):
    """Queries over the projected customer directory (R1.3)."""

    def get(self, customer_id: str) -> dict[str, Any] | None:
        """The projected record, decrypted, or None."""

    def find(self, field: str, value: str, *, limit: int = 50) -> list[str]:
        """Ids of customers whose `field` equals `value` exactly (blind index)."""

    def page(
        self, *, portfolio: str | None = None, status: str | None = None,
        after: str | None = None, limit: int = 50,
    ) -> list[str]:
        """Ids in id order, filtered on clear columns, for cursor paging."""

    def interactions(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's interactions, oldest first."""

    def position(self) -> int:
        """The log position the read model has reached."""


InTransactionHook = Callable[[Any, Sequence[int]], None]


class Projection(Protocol):
    """Keeps read models in step with the log."""

    def inline(self, aggregates: Sequence[Any]) -> InTransactionHook | None:
        """A hook run inside the transaction that stores these aggregates' events,
        so the read model commits with them (read-your-writes); None when a
        separate worker projects instead."""

    def wait_for(self, position: int, timeout: float = 5.0) -> None:
        """Return once the read model has reached `position`."""


MapperFactory = Callable[[Any], Mapper[Any]]
