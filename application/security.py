"""The permission vocabulary, the default roles, and who is acting (R2.5).

Permissions are named `resource:action`; roles are sets of them. Least privilege:
`admin` manages staff but reads no customer data; `auditor` reads the audit trail
and reports but never reveals. `application/` decides every authorisation with
these names, so the API, the command line and the workers share one policy (R2.10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Permission(StrEnum):
    CUSTOMERS_READ = "customers:read"
    CUSTOMERS_CREATE = "customers:create"
    CUSTOMERS_UPDATE = "customers:update"
    CUSTOMERS_REVEAL = "customers:reveal"
    CUSTOMERS_EXPORT = "customers:export"
    CUSTOMERS_REVERT = "customers:revert"
    CUSTOMERS_ERASE = "customers:erase"
    INTERACTIONS_READ = "interactions:read"
    INTERACTIONS_CREATE = "interactions:create"
    AUDIT_READ = "audit:read"
    REPORTS_READ = "reports:read"
    STAFF_READ = "staff:read"
    STAFF_MANAGE = "staff:manage"
    SESSIONS_MANAGE = "sessions:manage"
    APPROVALS_DECIDE = "approvals:decide"
    KEYS_MANAGE = "keys:manage"
    BREAK_GLASS = "break_glass:use"
    ALERTS_READ = "alerts:read"
    PRIVACY_MANAGE = "privacy:manage"
    # R2.11: an exact-match search by a field one may not reveal (PAN, or national id
    # for an agent) is an oracle for it; KYC work needs it, nobody else does.
    CUSTOMERS_SEARCH_RESTRICTED = "customers:search_restricted"
    # R2.3 / issue 10 item 8: end a lockout early, with a reason (security officer).
    STAFF_UNLOCK = "staff:unlock"
    # R3.6 / issue 12: close an alert with a note (security officer; others only read).
    ALERTS_ACKNOWLEDGE = "alerts:acknowledge"
    # R5.2, R5.3 (issue 13): record a customer's consent answers; read data-subject requests.
    CONSENTS_RECORD = "consents:record"
    PRIVACY_READ = "privacy:read"
    # R6.4: record someone's security-training completion (admin, compliance officer).
    TRAINING_RECORD = "training:record"
    # R6.2: review one's reports' access in a campaign (supervisor, security officer,
    # admin); start campaigns and decide escalated items (security officer, admin).
    RECERT_REVIEW = "recertification:review"
    RECERT_MANAGE = "recertification:manage"


P = Permission

ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "agent": frozenset({
        P.CUSTOMERS_READ, P.CUSTOMERS_CREATE, P.CUSTOMERS_UPDATE, P.CUSTOMERS_REVEAL,
        P.INTERACTIONS_READ, P.INTERACTIONS_CREATE, P.CONSENTS_RECORD,
    }),
    "supervisor": frozenset({
        P.CUSTOMERS_READ, P.CUSTOMERS_CREATE, P.CUSTOMERS_UPDATE, P.CUSTOMERS_REVEAL,
        P.CUSTOMERS_EXPORT, P.CUSTOMERS_REVERT, P.INTERACTIONS_READ, P.INTERACTIONS_CREATE,
        P.BREAK_GLASS, P.REPORTS_READ, P.CONSENTS_RECORD, P.RECERT_REVIEW,
    }),
    "compliance_officer": frozenset({
        P.CUSTOMERS_READ, P.CUSTOMERS_REVEAL, P.CUSTOMERS_EXPORT, P.INTERACTIONS_READ,
        P.AUDIT_READ, P.REPORTS_READ, P.ALERTS_READ, P.APPROVALS_DECIDE, P.CUSTOMERS_SEARCH_RESTRICTED,
        P.PRIVACY_READ,
        P.TRAINING_RECORD,
    }),
    "dpo": frozenset({
        P.CUSTOMERS_READ, P.CUSTOMERS_REVEAL, P.CUSTOMERS_EXPORT, P.CUSTOMERS_ERASE,
        P.INTERACTIONS_READ, P.REPORTS_READ, P.PRIVACY_MANAGE, P.APPROVALS_DECIDE,
        P.PRIVACY_READ, P.CONSENTS_RECORD,
    }),
    "security_officer": frozenset({
        P.STAFF_READ, P.SESSIONS_MANAGE, P.ALERTS_READ, P.AUDIT_READ, P.REPORTS_READ,
        P.APPROVALS_DECIDE, P.KEYS_MANAGE, P.STAFF_UNLOCK, P.ALERTS_ACKNOWLEDGE, P.RECERT_REVIEW,
        P.RECERT_MANAGE,
    }),
    "auditor": frozenset({P.CUSTOMERS_READ, P.INTERACTIONS_READ, P.AUDIT_READ, P.REPORTS_READ}),
    "admin": frozenset({P.STAFF_READ, P.STAFF_MANAGE, P.APPROVALS_DECIDE, P.TRAINING_RECORD,
                        P.RECERT_REVIEW, P.RECERT_MANAGE}),
}

# Roles whose scope is limited to their portfolios (R2.6); the others see every
# portfolio but only through their own (masked) field policy.
PORTFOLIO_SCOPED_ROLES = frozenset({"agent", "supervisor"})


def permissions_of(roles: frozenset[str] | set[str] | list[str]) -> frozenset[Permission]:
    granted: set[Permission] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS.get(role, frozenset())
    return frozenset(granted)


@dataclass(frozen=True)
class Actor:
    """An authenticated staff member, as the policy sees them."""

    staff_id: str
    username: str
    roles: frozenset[str]
    portfolios: frozenset[str]
    session_id: str | None = None
    stepped_up_at: datetime | None = None
    break_glass_until: datetime | None = None
    # R6.4: when this person last completed security training (None: never). The
    # policy decides, with its own clock, whether that is recent enough for reveal
    # and export; absent means untrained, so an actor built without it reveals nothing.
    trained_at: datetime | None = None
    permissions: frozenset[Permission] = field(default=frozenset())

    def __post_init__(self) -> None:
        if not self.permissions:
            object.__setattr__(self, "permissions", permissions_of(self.roles))

    def has(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def is_portfolio_scoped(self) -> bool:
        """Scoped unless one of the actor's roles reaches every portfolio."""
        readers = {r for r in self.roles if Permission.CUSTOMERS_READ in ROLE_PERMISSIONS.get(r, ())}
        return bool(readers) and readers <= PORTFOLIO_SCOPED_ROLES
