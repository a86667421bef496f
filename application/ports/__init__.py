"""Ports: what the use cases need from the outside, as Protocols, one module per concern.

* `customers`: the subjects' keys, the customer read model, the projection and the
  retention policy.
* `event_log`: positions and times of the log, and what the mapper keeps readable
  (the acting context) whatever keys were destroyed.
* `audit`: access records, chain verification, and the application the audit trail reads.
* `operations`: what the operator's use cases read: log positions, the projection,
  the key ring's inventory.
* `idempotency`: the stored outcomes of writes, for their retries (R7.6).
* `throttle`: rate-limit counters shared by every API process (R2.11).
* `identity`: staff sessions, challenges, lockout, TOTP steps, directory,
  approvals, break-glass.
* `activation`: activation codes of new accounts and the channel that delivers them.
* `alerts`: the alerts read model (R3.6).
* `privacy`: sealing a data-subject export (signed, encrypted to the requester).

`infrastructure/` implements them and `infrastructure/composition.py` wires the
implementations in; tests may pass simple fakes for logic-only tests, never as the
proof that a feature works. Every port is importable from `application.ports`.
"""

from __future__ import annotations

from application.ports.activation import (
    ActivationChannel,
    ActivationCodeSpent,
    ActivationMessage,
    ActivationRecord,
    ActivationStore,
)
from application.ports.alerts import AlertDeliveries, AlertQuery, AlertRecords
from application.ports.audit import AccessRecorder, AuditedApplication, ChainReport, ChainVerification
from application.ports.customers import (
    CustomerReadModel,
    InTransactionHook,
    Projection,
    RetentionPolicy,
    SubjectKeys,
)
from application.ports.erasure import CertificateIssuer, HeldKyc, RetentionCandidates
from application.ports.event_log import (
    EventAppender,
    EventMetadata,
    EventOpener,
    EventSealer,
    EventStore,
    SealedEvent,
    TimedLog,
    TimedNotification,
)
from application.ports.idempotency import IdempotencyStore, IdempotentOutcome
from application.ports.privacy import ExportRecipient, ExportSealer
from application.ports.identity import (
    ApprovalRecord,
    ApprovalStore,
    BreakGlassGrant,
    BreakGlassStore,
    ChallengeStore,
    LoginChallenge,
    LoginThrottle,
    NoLongerPending,
    PasswordHasher,
    SessionRecord,
    SessionStanding,
    SessionStore,
    StaffDirectory,
    TotpSteps,
)
from application.ports.operations import KeyInventory, LogPositions, ReadModelPosition, ReadModelProjection
from application.ports.throttle import Limit, RateLimiter

__all__ = [
    "AccessRecorder", "ActivationChannel", "ActivationCodeSpent", "ActivationMessage", "ActivationRecord",
    "ActivationStore", "CertificateIssuer", "ExportRecipient", "ExportSealer", "HeldKyc", "RetentionCandidates",
    "ApprovalRecord", "ApprovalStore", "AuditedApplication", "BreakGlassGrant",
    "BreakGlassStore", "ChainReport", "ChainVerification", "ChallengeStore", "CustomerReadModel",
    "EventAppender", "EventMetadata", "EventOpener", "EventSealer", "EventStore", "IdempotencyStore",
    "IdempotentOutcome",
    "AlertDeliveries", "AlertQuery", "AlertRecords",
    "InTransactionHook", "KeyInventory", "Limit", "RateLimiter", "LogPositions", "LoginChallenge", "LoginThrottle",
    "NoLongerPending",
    "PasswordHasher", "Projection", "ReadModelPosition", "ReadModelProjection", "RetentionPolicy",
    "SealedEvent", "SessionRecord", "SessionStanding", "SessionStore", "StaffDirectory", "SubjectKeys", "TimedLog",
    "TimedNotification", "TotpSteps",
]
