"""The field catalogue (SPEC R5.1): what every field is, why we hold it, and
which key protects it.

One table drives three things: the record of processing activities printed by
`strongroom compliance inventory`, the choice of data key per field when an event
is encrypted (R1.2), and masking by role (R2.7). A field that is not listed here
is treated as personal data under the profile key: failing closed means an
unlisted field is erased with the profile, never left readable after erasure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class KeyKind(StrEnum):
    """Which data key encrypts a field.

    SYSTEM is the installation's own data key, never destroyed: it protects
    non-personal fields and event metadata so that the audit trail of an erased
    customer keeps its who/when/what (R3.5). PROFILE is destroyed on an erasure
    request; KYC when the AML retention period ends (R1.2, R5.4).
    """

    SYSTEM = "system"
    PROFILE = "profile"
    KYC = "kyc"


class Classification(StrEnum):
    INTERNAL = "internal"
    PERSONAL = "personal"
    RESTRICTED = "restricted"
    CARD = "card"
    SECRET = "secret"  # nosec B105


@dataclass(frozen=True)
class FieldSpec:
    name: str
    classification: Classification
    purpose: str
    legal_basis: str
    retention: str
    key: KeyKind
    searchable: bool = False  # has a blind index (R1.3)


_CONTRACT = "contract (GDPR Art. 6(1)(b))"
_AML = "legal obligation: AML/CTF customer due diligence (GDPR Art. 6(1)(c))"
_LEGIT = "legitimate interest: running the service (GDPR Art. 6(1)(f))"
_CONSENT = "legal obligation: demonstrate consent (GDPR Art. 7(1), Art. 6(1)(c))"
_PCI = "contract; PCI DSS v4.0.1 3.3-3.5 governs storage"
_WHILE = "while the relationship lasts; erased on request"
_AML_5Y = "5 years after the relationship ends (AML), then key destroyed"
_FOREVER = "kept: not personal data"

_INTERNAL = (Classification.INTERNAL, "operating the record", _LEGIT, _FOREVER, KeyKind.SYSTEM)

FIELDS: tuple[FieldSpec, ...] = (
    # Identity evidence: needed for customer due diligence, kept under AML retention.
    FieldSpec("full_name", Classification.PERSONAL, "identify the customer", _AML, _AML_5Y, KeyKind.KYC),
    FieldSpec("date_of_birth", Classification.PERSONAL, "identity verification (KYC)", _AML, _AML_5Y, KeyKind.KYC),
    FieldSpec("national_id", Classification.RESTRICTED, "identity verification (KYC)", _AML, _AML_5Y, KeyKind.KYC, True),
    FieldSpec("address", Classification.PERSONAL, "identity verification and correspondence", _AML, _AML_5Y, KeyKind.KYC),
    FieldSpec("cards", Classification.CARD, "payment instruments", _PCI, _AML_5Y, KeyKind.KYC),
    FieldSpec("pan", Classification.CARD, "payment instrument number", _PCI, _AML_5Y, KeyKind.KYC, True),
    FieldSpec("bank_accounts", Classification.RESTRICTED, "settlement and payouts", _CONTRACT, _AML_5Y, KeyKind.KYC),
    # Contact data, notes and preferences: erased on request.
    FieldSpec("email", Classification.PERSONAL, "contact the customer", _CONTRACT, _WHILE, KeyKind.PROFILE, True),
    FieldSpec("phone", Classification.PERSONAL, "contact the customer", _CONTRACT, _WHILE, KeyKind.PROFILE, True),
    FieldSpec("interactions", Classification.PERSONAL, "customer service history", _CONTRACT, _WHILE, KeyKind.PROFILE),
    FieldSpec("notes", Classification.PERSONAL, "customer service history", _CONTRACT, _WHILE, KeyKind.PROFILE),
    FieldSpec("preferences", Classification.PERSONAL, "honour the customer's choices", _CONTRACT, _WHILE, KeyKind.PROFILE),
    # The consent ledger (R5.2, domain/consent.py): each entry and the ledger as kept.
    FieldSpec("consent", Classification.PERSONAL, "record the customer's consent", _CONSENT, _WHILE, KeyKind.PROFILE),
    FieldSpec("consents", Classification.PERSONAL, "record the customer's consent", _CONSENT, _WHILE, KeyKind.PROFILE),
    # Staff secrets: never shown; kept under the staff member's own key.
    FieldSpec("password_hash", Classification.SECRET, "authenticate staff", _LEGIT, "while the account exists", KeyKind.PROFILE),
    FieldSpec("totp_secret", Classification.SECRET, "second factor for staff", _LEGIT, "while the account exists", KeyKind.PROFILE),
    FieldSpec("recovery_codes", Classification.SECRET, "second factor recovery", _LEGIT, "while the account exists", KeyKind.PROFILE),
    FieldSpec("display_name", Classification.PERSONAL, "name staff in the audit trail", _LEGIT, "while the account exists", KeyKind.PROFILE),
    # Internal, non-personal fields: readable after erasure so the audit trail holds.
    *(
        FieldSpec(name, *_INTERNAL)
        for name in (
            "id", "type", "portfolio", "status", "kyc_status", "risk_rating", "segment",
            "timestamp", "originator_topic", "created_on", "modified_on", "closed_on",
            "reason", "customer_id", "interaction_id", "card_id", "account_id", "kind",
            "channel", "occurred_at", "expiry_month", "username", "roles", "portfolios",
            "must_change_password", "keys_destroyed", "restricted", "version",
            "grant", "revoke", "outcome", "customer_ids", "fields", "details", "purpose",
            # Backups and restore drills (domain/operations.py): operational, no personal data.
            "target", "backup_id", "position", "rpo_seconds", "rto_seconds", "failures",
            "last_backups", "last_drill", "last_good_drill",
            # Alerts (domain/alerts.py, R3.6): rule ids, ids, positions, the staff
            # member's address as in every access record's metadata, and notes about staff.
            "rule_id", "severity", "summary", "actor_id", "client_addr", "positions",
            "responses", "response", "raised_at", "acknowledged_by", "acknowledged_at", "note", "applied",
            # Data-subject requests (domain/privacy_requests.py, R5.3): codes, ids, times and
            # reasons without personal data, kept after an erasure as proof it was handled.
            "jurisdiction", "received_at", "deadline", "verification", "extension", "completion",
            "rejection", "export", "exports",
            # Erasure holds and retention (issue 13, R5.4, R5.5): key kinds, hold codes, dates.
            "kept", "hold_until", "under_investigation",
            # Security training (domain/staff.py, R6.4): a course, its version, when, an
            # evidence reference (a certificate id, no document) and who recorded it.
            "trainings", "course", "course_version", "completed_at", "evidence_ref", "recorded_by",
            # Access recertification (domain/recertification.py, R6.2): ids, usernames,
            # role names, portfolio codes, times and decisions.
            "campaigns", "campaign_id", "started_at", "due_at", "escalate_until", "started_by", "items",
            "staff_id", "staff_ids", "decision", "decided_by", "decided_at", "revoked_roles",
            "revoked_portfolios", "escalated_at", "alert_ids", "held_approval",
        )
    ),
)

CATALOGUE: dict[str, FieldSpec] = {spec.name: spec for spec in FIELDS}

# Library bookkeeping inside events and snapshots, never personal data.
BOOKKEEPING = frozenset({"originator_topic", "timestamp", "topic", "class_version"})


def key_for(field_name: str) -> KeyKind:
    """The key that protects `field_name`; unlisted fields fail closed to PROFILE."""
    name = field_name.lstrip("_")
    if name in BOOKKEEPING:
        return KeyKind.SYSTEM
    spec = CATALOGUE.get(name)
    return spec.key if spec is not None else KeyKind.PROFILE


def searchable_fields() -> tuple[str, ...]:
    """Fields with a blind index for exact-match search (R1.3)."""
    return tuple(spec.name for spec in FIELDS if spec.searchable)
