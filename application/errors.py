"""The application's own errors: what use cases raise, whatever the store or cipher.

`web/errors.py` maps each to one HTTP status; the command line maps them to exit
codes. Messages name ids, fields and rules, never personal values.
"""

from __future__ import annotations


class ApplicationError(Exception):
    """Base of every error a use case raises on purpose."""


class AnonymousWrite(ApplicationError):
    """A write was attempted with no actor in context (R3.1): it fails closed."""

    def __init__(self) -> None:
        super().__init__("no actor in context: every change must say who made it")


class CustomerNotFound(ApplicationError):
    """Absent, or out of the caller's scope: the two look the same (R2.6)."""

    def __init__(self, customer_id: object) -> None:
        super().__init__(f"customer {customer_id} not found")
        self.customer_id = str(customer_id)


class SubjectErased(ApplicationError):
    """The subject's key was destroyed: their data is gone for good (R5.4)."""

    def __init__(self, subject_id: object, kind: str = "profile") -> None:
        super().__init__(f"subject {subject_id} has been erased ({kind} key destroyed)")
        self.subject_id = str(subject_id)
        self.kind = kind


class CustomerErased(SubjectErased):
    """Reading an erased customer: the API answers 410 Gone."""


class ValidationFailed(ApplicationError):
    """Input broke a rule; `errors` maps field names to reasons (never values)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{field}: {', '.join(msgs)}" for field, msgs in errors.items()))
        self.errors = errors


class ProjectionLagging(ApplicationError):
    """A write is committed but the read model has not reached it within the bound.

    Not a failure: the change is in the log at `position` and a worker will project
    it (R7.4). The API answers 202 Accepted with the position and where to poll;
    repeating the command would change the record twice, so nothing retries it.
    """

    def __init__(self, position: int, subject_ids: list[str]) -> None:
        super().__init__(f"accepted at log position {position}; the read model is catching up")
        self.position = position
        self.subject_ids = subject_ids


class StoreUnavailable(ApplicationError):
    """The database cannot be reached: answer 503, lose nothing."""


class VersionConflict(ApplicationError):
    """The record changed since the caller read it (stale If-Match: 412)."""

    def __init__(self, record_id: object, current_version: int) -> None:
        # A customer's or a staff member's record: both are saved the same way.
        super().__init__(f"record {record_id} is at version {current_version}")
        self.current_version = current_version
