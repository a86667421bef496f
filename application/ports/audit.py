"""The audit side's ports: durable access records (R3.2) and chain verification (R3.3).

`application/audit.py:AccessLog` is the access recorder; the chain's checkpointing
and verification live in `infrastructure/audit/tamper_evidence.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from application.ports.event_log import EventOpener, TimedLog


class AccessRecorder(Protocol):
    """Commits access records (who saw which customers' which fields, and every
    refusal) before the response leaves (R3.2, PCI DSS 10.2)."""

    def record(
        self, *, kind: str, outcome: str = "allowed", customer_ids: Iterable[str] = (),
        fields: Iterable[str] = (), details: Mapping[str, str] | None = None,
    ) -> None:
        """Commit one access record; returns once it is durable, raises if it is not."""


class ChainReport(Protocol):
    """The outcome of recomputing the hash chain."""

    def as_json(self) -> dict[str, Any]:
        """The report as plain data: `intact`, the head, and any problems found."""


class ChainVerification(Protocol):
    """Recomputes the tamper-evident hash chain and checks its signed checkpoints."""

    def verify(self, *, from_checkpoint: bool = False) -> ChainReport:
        """Verify from the first row, or from the latest valid checkpoint."""


class AuditedApplication(Protocol):
    """The application whose log is read: its timed recorder, its mapper (as a reader)
    and its access log."""

    @property
    def recorder(self) -> TimedLog: ...

    @property
    def mapper(self) -> EventOpener: ...

    @property
    def access_log(self) -> AccessRecorder: ...
