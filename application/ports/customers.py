"""The customer side's ports: the subjects' keys, the projected read model, and the
projection that keeps it in step with the log (R1.3, R5.4).

`infrastructure/crypto/keyring.py`, `infrastructure/readmodel.py` and
`infrastructure/projection.py` implement them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from domain.customer import Customer
from domain.erasure import HoldDecision


class SubjectKeys(Protocol):
    """A data subject's keys: the crypto-shredding primitive (R5.4)."""

    def destroy(self, subject_id: str, kinds: list[str]) -> list[str]:
        """Destroy these keys of the subject for good; returns the kinds destroyed."""

    def status(self, subject_id: str) -> dict[str, str]:
        """Each key kind of the subject: "active", "destroyed" or "absent"."""

    def reserve_subject(self) -> UUID:
        """A new random subject id whose keys are already durable (issue 15): the
        new record's first commit is then its events' alone."""

    def release_subject(self, subject_id: UUID) -> None:
        """Give back a reserved id that no event was written under."""

    def steady(self) -> AbstractContextManager[None]:
        """One unit of work (a save) that looks at the erasure ledger once, on entry,
        rather than before every use of a cached key (issue 15)."""


class CustomerReadModel(Protocol):
    """Queries over the projected customer directory (R1.3)."""

    def get(self, customer_id: str) -> dict[str, Any] | None:
        """The projected record, decrypted, or None."""

    def find(self, field: str, value: str, *, limit: int = 50) -> list[str]:
        """Ids of customers whose `field` equals `value` exactly (blind index)."""

    def find_records(self, field: str, value: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The records `get` would return for `find`'s ids, fetched with the search."""

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
"""Called with the recorder's cursor and the new positions, inside the transaction
that stores the events (the library's `in_transaction` hook)."""


class Projection(Protocol):
    """Keeps read models in step with the log."""

    def inline(self, aggregates: Sequence[Any]) -> InTransactionHook | None:
        """A hook run inside the transaction that stores these aggregates' events,
        so the read model commits with them (read-your-writes); None when a
        separate worker projects instead."""

    def projected(self, aggregates: Sequence[Any]) -> list[str]:
        """Ids of the read-model records these aggregates' events change (empty when
        the read models do not depend on them, e.g. staff accounts)."""

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """True once the read model has reached `position`; False if it has not
        within `timeout` seconds."""


class RetentionPolicy(Protocol):
    """Which keys an erasure destroys now and which an AML hold keeps (R5.4)."""

    def decide(self, customer: Customer | None, *, under_investigation: bool, now: datetime) -> HoldDecision:
        """The keys to destroy now for this customer (None when its keys are already
        gone and only the record of the erasure is missing), and any hold."""
