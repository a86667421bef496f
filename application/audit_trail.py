"""Reading the audit trail (R3.5): who did what to which customer, and who saw what.

The event log is the audit trail: changes are the customers' (and staff members')
own events, access records are `AccessRecord` events, and each carries its acting
context (actor, session, request, address, purpose) in the part sealed under the
system key, which is never destroyed. So an erased customer's history still says
who did what and when; only the values are gone, and the entry says "erased".

Two readers: the operator's `strongroom audit replay`, who holds the instance's
keys and sees values (PANs at most as BIN + last four, staff secrets never), and
`GET /api/v1/audit/events`, for auditors and compliance officers, which names
fields but carries no values: an auditor never reveals (R2.5). Every read of the
trail through the API is itself recorded (PCI DSS 10.2.1.3).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from application.errors import ApplicationError, ValidationFailed
from application.policy import AccessDenied, Policy
from application.ports import AuditedApplication, ChainVerification, TimedNotification
from application.security import Actor, Permission
from domain.audit import AccessRecord
from domain.catalogue import CATALOGUE, Classification

# SPEC R3.5 and the interface contract name these two roles, and no one else. The
# default role table also gives `audit:read` to security_officer (for alerts and
# reports), so the trail asks for the permission *and* one of these roles.
AUDIT_TRAIL_ROLES = frozenset({"auditor", "compliance_officer"})
KINDS = ("change", "access")
PAGE = 500
MAX_LIMIT = 500
SCAN_LIMIT = 20_000  # rows one API page may scan before answering with a cursor
ERASED = "erased"

_BOOKKEEPING = frozenset({"originator_id", "originator_version", "originator_topic", "timestamp"})
_SECRET_WORDS = ("password", "totp", "recovery", "secret")
_ACCESS_TOPIC_PREFIX = f"{AccessRecord.__module__}:{AccessRecord.__qualname__}."


class AuditTrailDenied(AccessDenied):
    """Only auditors and compliance officers read the audit trail (403)."""

    def __init__(self) -> None:
        super().__init__("the audit trail is open to auditors and compliance officers only")


@dataclass(frozen=True)
class AuditFilter:
    customer: str | None = None
    actor: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.kind is not None and self.kind not in KINDS:
            errors["kind"] = ["must be change or access"]
        for name in ("since", "until"):
            when = getattr(self, name)
            if when is not None and when.tzinfo is None:
                errors[name] = ["must be an ISO-8601 time with a zone, e.g. 2026-11-29T12:00:00+00:00"]
        if not errors and self.since and self.until and self.since > self.until:
            errors["since"] = ["must not be after until"]
        if errors:
            raise ValidationFailed(errors)


_NO_FILTER = AuditFilter()  # frozen: one for every row the monitor reads


@dataclass
class AuditEntry:
    """One line of the trail: a change or an access, with who, when and why."""

    position: int
    recorded_at: datetime
    kind: str  # "change" or "access"
    event: str  # "Customer.ContactChanged", or the access kind ("view", "reveal", ...)
    subject: str  # "customer", "staff", "erasure", "access"
    stream_id: str
    customer_ids: list[str]
    actor_id: str | None
    via: str | None
    session_id: str | None
    request_id: str | None
    client_addr: str | None
    purpose: str | None
    outcome: str | None = None
    fields: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    erased: bool = False
    values: dict[str, Any] | str | None = None

    def as_json(self, *, with_values: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "position": self.position,
            "recorded_at": self.recorded_at.isoformat(),
            "kind": self.kind,
            "event": self.event,
            "subject": self.subject,
            "stream_id": self.stream_id,
            "customer_ids": list(self.customer_ids),
            "actor_id": self.actor_id,
            "via": self.via,
            "session_id": self.session_id,
            "request_id": self.request_id,
            "client_addr": self.client_addr,
            "purpose": self.purpose,
            "outcome": self.outcome,
            "fields": list(self.fields),
            "details": dict(self.details),
            "erased": self.erased,
        }
        if with_values:
            body["values"] = self.values
        return body


@dataclass(frozen=True)
class Page:
    items: list[AuditEntry]
    next_cursor: str | None


def mask_pan(pan: str) -> str:
    """BIN + last four, the most anyone is shown of a card number (R1.7)."""
    digits = "".join(ch for ch in str(pan) if ch.isdigit())
    if len(digits) < 13:
        return "*" * len(digits)
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def _is_secret(name: str) -> bool:
    spec = CATALOGUE.get(name)
    if spec is not None and spec.classification is Classification.SECRET:
        return True
    return any(word in name for word in _SECRET_WORDS)


def presentable(name: str, value: Any) -> Any:
    """A value as the replay may print it: card numbers masked, staff secrets withheld."""
    if _is_secret(name):
        return "[withheld]"
    if name == "pan" and isinstance(value, str):
        return mask_pan(value)
    if isinstance(value, Mapping):
        return {str(k): presentable(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [presentable(name, v) for v in value]
    return value


def _subject_of(topic: str) -> str:
    qualname = topic.partition(":")[2]
    owner = qualname.split(".")[0] if "." in qualname else qualname
    return {"Customer": "customer", "StaffMember": "staff", "CustomerErasure": "erasure"}.get(
        owner, owner.lower() or "unknown"
    )


def _event_name(topic: str) -> str:
    return topic.partition(":")[2] or topic


def _attributes(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in _BOOKKEEPING and not k.startswith("_")}


class AuditTrail:
    """Queries over the log as an audit trail; see the module docstring."""

    def __init__(self, app: AuditedApplication, verification: ChainVerification | None = None,
                 *, policy: Policy | None = None) -> None:
        self.app = app
        self.log = app.recorder
        self.mapper = app.mapper
        self.verification = verification
        self.policy = policy or Policy(app.access_log)

    # -- who may read it ----------------------------------------------------------------

    def authorise(self, actor: Actor, operation: str) -> None:
        """Auditors and compliance officers only; the policy records a refusal like any
        other, so someone probing the trail shows up in it."""
        self.policy.require(actor, Permission.AUDIT_READ, operation=f"audit:{operation}",
                            roles=AUDIT_TRAIL_ROLES, denied=AuditTrailDenied)

    # -- the API's reads -----------------------------------------------------------------

    def events(self, actor: Actor, filters: AuditFilter, *, limit: int = 100, cursor: str | None = None) -> Page:
        """A page of entries (no values) for an auditor; the read itself is recorded."""
        self.authorise(actor, "events")
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationFailed({"limit": [f"must be between 1 and {MAX_LIMIT}"]})
        after = self._cursor_position(cursor)
        items: list[AuditEntry] = []
        start, stop = self._window(filters)
        start = max(start, after + 1)
        last_scanned = start - 1
        scanned = 0
        for entry, position in self._scan(filters, start, stop, with_values=False):
            last_scanned, scanned = position, scanned + 1
            if entry is not None:
                items.append(entry)
            if len(items) == limit or scanned >= SCAN_LIMIT:
                break
        more = last_scanned < stop
        details = {"operation": "audit:events", "returned": str(len(items))}
        details.update({k: str(v) for k, v in (("customer", filters.customer), ("actor", filters.actor),
                                                ("kind", filters.kind)) if v})
        self.app.access_log.record(
            kind="audit_read", customer_ids=sorted({c for e in items for c in e.customer_ids}),
            details=details,
        )
        return Page(items, str(last_scanned) if more else None)

    def verify(self, actor: Actor, *, from_checkpoint: bool = False) -> dict[str, Any]:
        """The chain verification report, for an auditor (recorded like any read)."""
        self.authorise(actor, "verify")
        if self.verification is None:
            raise ApplicationError("chain verification is not configured")
        report = self.verification.verify(from_checkpoint=from_checkpoint)
        result: dict[str, Any] = report.as_json()
        self.app.access_log.record(
            kind="audit_read",
            details={"operation": "audit:verify", "intact": str(result.get("intact")).lower()},
        )
        return result

    # -- the operator's replay ------------------------------------------------------------

    def replay(self, filters: AuditFilter, *, with_values: bool = True) -> Iterator[AuditEntry]:
        """Every matching entry in position order (values decrypted where the keys live)."""
        start, stop = self._window(filters)
        for entry, _ in self._scan(filters, start, stop, with_values=with_values):
            if entry is not None:
                yield entry

    def operator_replay(self, filters: AuditFilter, *, with_values: bool = True) -> list[AuditEntry]:
        """`strongroom audit replay`: every matching entry; reading the trail is itself
        recorded (PCI DSS 10.2.1.3), before anything is shown."""
        entries = list(self.replay(filters, with_values=with_values))
        shown = sorted({c for e in entries if e.values not in (None, "erased") for c in e.customer_ids})
        self.app.access_log.record(
            kind="audit_read", customer_ids=shown,
            details={"operation": "audit:replay", "entries": str(len(entries)),
                     "values": str(with_values).lower(),
                     **{k: v for k, v in (("customer", filters.customer), ("actor", filters.actor),
                                          ("kind", filters.kind)) if v}},
        )
        return entries

    def record_verification(self, *, intact: bool, problems: int) -> None:
        """`strongroom audit verify` ran over the store: its outcome, recorded like the
        API's verify, so the monitor sees a failed verification (R3.6) in the log."""
        self.app.access_log.record(kind="audit_read", details={
            "operation": "audit:verify", "intact": str(intact).lower(), "problems": str(problems)})

    def record_export(self, rows: int) -> None:
        """An evidence bundle of `rows` rows was written: a read of the trail, recorded."""
        self.app.access_log.record(kind="audit_read", details={"operation": "audit:export", "rows": str(rows)})

    def entry(self, notification: TimedNotification, *, with_values: bool = False) -> AuditEntry:
        """One log row as an entry of the trail: the one decoder of the acting context
        (sealed under the system key) that the monitor shares (application/monitoring.py)."""
        decoded = self._entry(notification, _NO_FILTER, with_values)
        assert decoded is not None  # nosec B101 - no filter, so nothing is filtered out
        return decoded

    # -- scanning -------------------------------------------------------------------------

    def _window(self, filters: AuditFilter) -> tuple[int, int]:
        start = 1
        if filters.since is not None:
            start = self.log.position_at(filters.since - timedelta(microseconds=1)) + 1
        stop = self.log.max_notification_id() or 0
        if filters.until is not None:
            stop = min(stop, self.log.position_at(filters.until))
        return start, stop

    @staticmethod
    def _cursor_position(cursor: str | None) -> int:
        if cursor is None:
            return 0
        if not cursor.isdigit() or len(cursor) > 19:
            raise ValidationFailed({"cursor": ["is not a cursor this API gave out"]})
        return int(cursor)

    def _scan(
        self, filters: AuditFilter, start: int, stop: int, *, with_values: bool
    ) -> Iterator[tuple[AuditEntry | None, int]]:
        """(entry or None when filtered out, position) for each row scanned."""
        while start <= stop:
            page = self.log.select_timed_notifications(start, PAGE, stop)
            if not page:
                return
            for notification in page:
                yield self._entry(notification, filters, with_values), notification.id
            start = page[-1].id + 1

    def _entry(self, notification: TimedNotification, filters: AuditFilter, with_values: bool) -> AuditEntry | None:
        topic = notification.topic
        is_access = topic.startswith(_ACCESS_TOPIC_PREFIX)
        kind = "access" if is_access else "change"
        if filters.kind is not None and filters.kind != kind:
            return None
        stream_id = str(notification.originator_id)
        subject = "access" if is_access else _subject_of(topic)
        if filters.customer is not None and subject not in ("access", "erasure") and stream_id != filters.customer:
            return None  # decided from clear columns, without decrypting anything
        if filters.actor is not None and self.mapper.metadata(notification).get("actor_id") != filters.actor:
            return None  # decided from the system part alone, the customer's parts left sealed
        # One opening per row: each sealed part decrypted and decoded once (the
        # monitor reads every access record through here).
        opened = self.mapper.open_event(notification)
        meta = opened.meta
        entry = AuditEntry(
            position=notification.id, recorded_at=notification.recorded_at, kind=kind,
            event=_event_name(topic), subject=subject, stream_id=stream_id,
            customer_ids=[stream_id] if subject == "customer" else [],
            actor_id=meta.get("actor_id"), via=meta.get("via"), session_id=meta.get("session_id"),
            request_id=meta.get("request_id"), client_addr=meta.get("client_addr"),
            purpose=meta.get("purpose"),
        )
        attributes = _attributes(opened.attributes)
        entry.erased = opened.erased
        if is_access:
            self._describe_access(entry, attributes)
        else:
            self._describe_change(entry, attributes, with_values)
        if filters.customer is not None and filters.customer not in entry.customer_ids:
            return None
        return entry

    @staticmethod
    def _describe_access(entry: AuditEntry, attributes: Mapping[str, Any]) -> None:
        entry.event = str(attributes.get("kind", entry.event))
        entry.outcome = attributes.get("outcome")
        entry.customer_ids = [str(c) for c in attributes.get("customer_ids", [])]
        entry.fields = [str(f) for f in attributes.get("fields", [])]
        entry.details = dict(attributes.get("details", {}))

    @staticmethod
    def _describe_change(entry: AuditEntry, attributes: Mapping[str, Any], with_values: bool) -> None:
        if entry.subject == "erasure" and attributes.get("customer_id"):
            entry.customer_ids = [str(attributes["customer_id"])]
        entry.fields = sorted(attributes)
        if not with_values:
            return
        if entry.erased:
            entry.values = ERASED
        else:
            entry.values = {name: presentable(name, value) for name, value in sorted(attributes.items())}
