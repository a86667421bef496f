"""The access log (R3.2): every response carrying customer data, and every refusal,
leaves a durable record before the response leaves.

`record()` returns only once the record is committed. This first version commits
one transaction per record; group commit (many requests' records in one
transaction, each caller waiting for its group) replaces the inside of `record()`
without changing its contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from application.context import require_context
from domain.audit import AccessRecord


class AccessLog:
    """Durable access records in the event log, stamped with the acting context."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def record(
        self,
        *,
        kind: str,
        outcome: str = "allowed",
        customer_ids: Iterable[str] = (),
        fields: Iterable[str] = (),
        details: Mapping[str, str] | None = None,
    ) -> None:
        """Commit one access record; raises if it could not be made durable.

        `details` must hold no personal data (ids, counts, reasons from a closed
        vocabulary): it is readable after erasure.
        """
        require_context()
        record = AccessRecord(
            kind=kind,
            outcome=outcome,
            customer_ids=sorted({str(c) for c in customer_ids}),
            fields=sorted(set(fields)),
            details=dict(details or {}),
        )
        self.app.save(record)
