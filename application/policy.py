"""The authorisation policy (R2.5-R2.8, R2.10): customer data, and through `require`
and `permits` every other resource too (staff administration, sessions, the audit
trail), so that every refusal anywhere is an access record.

One object decides, for the API, the command line and the workers alike:

* **Permission.** Each customer operation needs one permission (`OPERATIONS`).
  Lacking it answers 403 whatever the customer: the answer depends on nothing but
  the caller, so it tells nothing about which customers exist.
* **Training (R6.4).** Reveal and export need security training completed within
  `training_validity` (365 days by default, setting `training_validity_days`): a
  lapsed training, or none yet (a new member of staff), removes `customers:reveal`
  and `customers:export` until it is renewed (403 `training_lapsed`, recorded). The
  decision reads the completion time authentication puts on the actor against this
  policy's clock, so a lapse takes effect on the very next request, in the API and
  the command line alike. The operator (command line) is not staff and holds neither
  permission: its reads go through `require_operator` (below), each recorded.
* **Portfolio scope (R2.6, R2.9).** Agents and supervisors reach only customers of their
  portfolios, whatever else the person holds: each permission is decided per role, with
  that role's own scope (`roles_reaching`), so an unscoped role (an auditor's read)
  never widens what a scoped one grants (an agent's reveal); authentication adds the portfolio of a live break-glass grant to them
  (R2.8), and every access a scoped actor makes while such a window is live is
  flagged `break_glass` in its access record, for review. The precise rule: any request naming an existing customer out of scope raises
  `CustomerNotFound`, the very error an absent id raises, and leaves an access record
  `kind="denied", outcome="not_found"`; the record's `details.reason` (`out_of_scope`
  or `absent`) is visible only in the audit trail. A new customer proposed in a
  portfolio out of scope (create, or moving one there) has nothing to hide and is
  refused with 403 `portfolio_out_of_scope`.
* **Fields (R2.7).** `FIELD_POLICY` is SPEC R2's default table as data: field ->
  class -> per-role treatment. A field or role missing from the table is not returned
  (fails closed). Masked values keep just enough to be useful; see `mask`.
* **Reveal.** Needs `customers:reveal`, current training, the field revealable (R)
  for one of the caller's roles that reaches the customer, a stated purpose (1-200
  characters) and a step-up within the last `STEP_UP_WINDOW`.
* **Step-up (R2.11).** `require_step_up` is the one check of a fresh TOTP code, for
  reveal and for every other use case that needs one (break-glass, approvals, role
  changes, password change).
* **The operator (issue 11, item 5).** The command line acts as `OPERATOR_ROLE`, no
  staff role: it reads whole records and searches, only for a stated purpose, each read
  recorded as a reveal of the fields shown (`require_operator`).
* **Separation of duties (R2.9).** `DUTY_CONFLICTS` declares, as data, which roles one
  person may not hold together; `require_separate_duties` refuses such a set (409).

Every refusal is recorded before the error leaves (PCI DSS 10.2.1.2, R3.2).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from application.clock import Clock, utc_now
from application.context import current_context
from application.errors import ApplicationError, CustomerNotFound, ValidationFailed
from application.ports import AccessRecorder
from application.security import PORTFOLIO_SCOPED_ROLES, ROLE_PERMISSIONS, Actor, Permission
from domain.catalogue import Classification
from domain.free_text import card_data_in, hostile_character

# R2.7: a reveal needs a TOTP code entered this recently. The identity service
# stamps and expires step-ups with this same window: one figure, one place.
STEP_UP_WINDOW = timedelta(minutes=5)
BREAK_GLASS_MAX = timedelta(minutes=60)
PURPOSE_MAX_LENGTH = 200


class Operation(StrEnum):
    """The customer operations, each decided by one permission."""

    CREATE = "create"
    VIEW = "view"
    VIEW_AS_OF = "view_as_of"
    UPDATE = "update"
    SEARCH = "search"
    REVEAL = "reveal"
    HISTORY = "history"
    INTERACTIONS_LIST = "interactions_list"
    INTERACTIONS_CREATE = "interactions_create"
    REVERT = "revert"
    # R5.2 (issue 13): the consent ledger of one customer.
    CONSENTS_LIST = "consents_list"
    CONSENTS_RECORD = "consents_record"


OPERATIONS: Mapping[Operation, Permission] = {
    Operation.CREATE: Permission.CUSTOMERS_CREATE,
    Operation.VIEW: Permission.CUSTOMERS_READ,
    Operation.VIEW_AS_OF: Permission.CUSTOMERS_READ,
    Operation.UPDATE: Permission.CUSTOMERS_UPDATE,
    Operation.SEARCH: Permission.CUSTOMERS_READ,
    Operation.REVEAL: Permission.CUSTOMERS_REVEAL,
    Operation.HISTORY: Permission.CUSTOMERS_READ,
    Operation.INTERACTIONS_LIST: Permission.INTERACTIONS_READ,
    Operation.INTERACTIONS_CREATE: Permission.INTERACTIONS_CREATE,
    Operation.REVERT: Permission.CUSTOMERS_REVERT,
    Operation.CONSENTS_LIST: Permission.CUSTOMERS_READ,
    Operation.CONSENTS_RECORD: Permission.CONSENTS_RECORD,
}

# R6.4: these rights lapse with the training; PCI DSS 12.6.1 asks for it at least yearly.
TRAINING_BOUND = frozenset({Permission.CUSTOMERS_REVEAL, Permission.CUSTOMERS_EXPORT})
TRAINING_VALIDITY = timedelta(days=365)


# -- errors: each answers 403 with its own code ---------------------------------------------


class AccessDenied(ApplicationError):
    """The caller may not do this, whichever customer it names (403)."""

    code = "forbidden"

    def __init__(self, message: str = "not allowed") -> None:
        super().__init__(message)


class NotPermitted(AccessDenied):
    """Outside customer data (staff, approvals, break-glass): the actor lacks the
    permission this use case needs, and the answer names it (403)."""

    code = "forbidden"

    def __init__(self, permission: str) -> None:
        super().__init__(f"not allowed: needs {permission}")
        self.permission = permission


class TrainingLapsed(AccessDenied):
    code = "training_lapsed"

    def __init__(self) -> None:
        super().__init__("security training has lapsed: reveal and export are unavailable until it is renewed")


class StepUpRequired(AccessDenied):
    code = "step_up_required"

    def __init__(self) -> None:
        super().__init__("enter a TOTP code at /api/v1/auth/step-up first (valid 5 minutes)")


class FieldNotRevealable(AccessDenied):
    code = "field_not_revealable"

    def __init__(self, fields: Iterable[str]) -> None:
        self.fields = sorted(set(fields))
        super().__init__("not revealable for your roles: " + ", ".join(self.fields))


class PortfolioOutOfScope(AccessDenied):
    code = "portfolio_out_of_scope"

    def __init__(self) -> None:
        super().__init__("that portfolio is not one of yours")


class DutiesConflict(ApplicationError):
    """R2.9: the roles asked for would give one person duties that must stay apart (409).
    The message names the rule and the roles, never a person."""

    code = "separation_of_duties"

    def __init__(self, rule: str, role: str, others: Iterable[str]) -> None:
        self.rule, self.role, self.others = rule, role, sorted(set(others))
        super().__init__(f"separation of duties ({rule}): {role} cannot be held with " + ", ".join(self.others))


# -- separation of duties (R2.9), as data ------------------------------------------------------


@dataclass(frozen=True)
class DutyConflict:
    """`role` may not be held together with any other role that grants one of `against`."""

    rule: str
    role: str
    against: frozenset[Permission]

    def others(self, roles: Iterable[str]) -> list[str]:
        """The roles among `roles` that conflict with `role` (empty unless `role` is there)."""
        held = set(roles)
        if self.role not in held:
            return []
        return sorted(r for r in held - {self.role} if ROLE_PERMISSIONS.get(r, frozenset()) & self.against)


# What changes data (customers, interactions, staff, keys, sessions) or carries out a
# held change: whoever audits holds none of it, or could cover their own tracks.
DATA_CHANGING = frozenset({
    Permission.CUSTOMERS_CREATE, Permission.CUSTOMERS_UPDATE, Permission.CUSTOMERS_REVERT,
    Permission.CUSTOMERS_ERASE, Permission.INTERACTIONS_CREATE, Permission.PRIVACY_MANAGE,
    Permission.CONSENTS_RECORD,
    Permission.STAFF_MANAGE, Permission.SESSIONS_MANAGE, Permission.KEYS_MANAGE, Permission.APPROVALS_DECIDE,
})
DATA_READING = frozenset({Permission.CUSTOMERS_READ, Permission.INTERACTIONS_READ, Permission.CUSTOMERS_EXPORT})
# Who watches staff (the audit trail, alerts): an account manager who watched too
# could grant, then silence what the grant sets off.
MONITORING = frozenset({Permission.AUDIT_READ, Permission.ALERTS_READ, Permission.ALERTS_ACKNOWLEDGE})

DUTY_CONFLICTS: tuple[DutyConflict, ...] = (
    # R2.9: the auditor checks everyone's changes, so makes (or approves) none.
    DutyConflict("auditor_with_data_changing_role", "auditor", DATA_CHANGING),
    # R2.5, R2.9: admin manages staff and reads no customer data, whatever else it holds
    # (else it would mint itself the reading role: the attack of issue 10, item 3).
    DutyConflict("admin_with_data_reading_role", "admin", DATA_READING),
    # Who manages accounts is not who monitors them.
    DutyConflict("admin_with_monitoring_role", "admin", MONITORING),
)
"""Separation-of-duties conflicts: each, a role and the permissions it may not be
held with. Checked when an account is created and whenever roles are granted."""


def duty_conflict(roles: Iterable[str]) -> DutiesConflict | None:
    """The first conflict the set of `roles` would break, or None."""
    held = list(roles)
    for conflict in DUTY_CONFLICTS:
        others = conflict.others(held)
        if others:
            return DutiesConflict(conflict.rule, conflict.role, others)
    return None


# -- the field policy (SPEC R2, default table) ---------------------------------------------


class Treatment(StrEnum):
    SHOWN = "S"
    REVEALABLE = "R"  # masked, revealable with step-up
    MASKED = "M"
    CARD_BIN_LAST4 = "BIN+last4"
    CARD_LAST4 = "last4"
    HIDDEN = "-"


# Where a caller holds several roles, each field gets the most open of their treatments.
_RANK = {
    Treatment.HIDDEN: 0, Treatment.MASKED: 1, Treatment.REVEALABLE: 2, Treatment.SHOWN: 3,
    Treatment.CARD_LAST4: 1, Treatment.CARD_BIN_LAST4: 2,
}

TABLE_ROLES = ("agent", "supervisor", "compliance_officer", "dpo", "auditor", "admin")


@dataclass(frozen=True)
class FieldRule:
    classification: Classification
    by_role: Mapping[str, Treatment]

    def for_role(self, role: str) -> Treatment:
        return self.by_role.get(role, Treatment.HIDDEN)


def _row(classification: Classification, *treatments: str) -> FieldRule:
    return FieldRule(classification, dict(zip(TABLE_ROLES, map(Treatment, treatments), strict=True)))


_INTERNAL = _row(Classification.INTERNAL, "S", "S", "S", "S", "S", "-")
_CONTACT = _row(Classification.PERSONAL, "R", "R", "R", "R", "M", "-")

FIELD_POLICY: Mapping[str, FieldRule] = {
    # id, type, portfolio, status, kyc_status, risk_rating, segment, timestamps
    **{name: _INTERNAL for name in (
        "id", "type", "portfolio", "status", "kyc_status", "risk_rating", "segment",
        "created_on", "modified_on", "closed_on", "version", "restricted",
    )},
    "full_name": _row(Classification.PERSONAL, "S", "S", "S", "S", "M", "-"),
    "email": _CONTACT,
    "phone": _CONTACT,
    "address": _CONTACT,
    "date_of_birth": _CONTACT,
    "national_id": _row(Classification.RESTRICTED, "M", "R", "R", "R", "M", "-"),
    "bank_accounts": _row(Classification.RESTRICTED, "M", "R", "R", "R", "M", "-"),
    "cards": _row(Classification.CARD, "BIN+last4", "BIN+last4", "BIN+last4", "BIN+last4", "last4", "-"),
    "notes": _row(Classification.PERSONAL, "S", "S", "S", "S", "M", "-"),
}
"""SPEC R2's default field policy. `security_officer` has no row: no customer data."""

REVEALABLE_FIELDS = tuple(name for name, rule in FIELD_POLICY.items()
                          if any(t is Treatment.REVEALABLE for t in rule.by_role.values()))


def treatment(actor: Actor, field: str, roles: Iterable[str] | None = None) -> Treatment:
    """How `field` is shown to `actor`: the most open treatment among their roles, or
    among `roles` only (those that reach the customer in question, R2.9)."""
    rule = FIELD_POLICY.get(field)
    if rule is None:
        return Treatment.HIDDEN
    best = Treatment.HIDDEN
    for role in actor.roles if roles is None else roles:
        candidate = rule.for_role(role)
        if _RANK[candidate] > _RANK[best]:
            best = candidate
    return best


# -- searching by a field (R2.11) -------------------------------------------------------------

SEARCH_MATCHES: Mapping[str, str] = {
    "email": "email", "phone": "phone", "national_id": "national_id", "pan": "cards",
}
"""Each search field -> the policy field its exact match confirms. A search is
allowed when the caller may reveal that field; otherwise only with
`customers:search_restricted` (KYC). No role may reveal a PAN, so searching by
one always needs it: an agent who sees BIN + last four cannot try the middles."""


class SearchNotAllowed(AccessDenied):
    code = "search_not_allowed"

    def __init__(self, field: str) -> None:
        super().__init__(f"searching by {field} needs the right to reveal it, or customers:search_restricted")
        self.field = field


# -- masking: keep just enough to be useful ----------------------------------------------------

MASK = "•••"
DATE_MASK = "****-**-**"


def _last(value: str, keep: int) -> str:
    """'•••• •••• 1234': the last `keep` characters, and only when at least twice as
    many stay hidden (so a short id is not half given away)."""
    compact = "".join(value.split())
    if len(compact) < 2 * keep:
        return "•••• ••••"
    return f"•••• •••• {compact[-keep:]}"


def mask_email(value: str) -> str:
    """`z***@example.org`: enough to confirm "is it your work address?" with the caller."""
    local, _, domain = value.rpartition("@")
    return f"{local[:1]}***@{domain}" if local else MASK


def mask_phone(value: str) -> str:
    """`•••• 0123`: the last four digits, as a customer is asked to confirm them."""
    digits = "".join(ch for ch in value if ch.isdigit())
    return f"•••• {digits[-4:]}" if len(digits) >= 8 else "••••"


def mask_name(value: str) -> str:
    """`A*** P***`: initials only."""
    return " ".join(f"{word[:1]}***" for word in value.split()) or MASK


def mask_address(value: Mapping[str, Any]) -> dict[str, Any]:
    """City and country stay (they route a call and decide the jurisdiction; many
    thousands share them); the street, the rest of the line and the postcode go."""
    return {
        "line1": MASK,
        "line2": MASK if value.get("line2") else None,
        "city": value.get("city"),
        "postcode": MASK if value.get("postcode") else None,
        "country": value.get("country"),
    }


def mask_card(card: Mapping[str, Any], *, with_bin: bool) -> dict[str, Any]:
    """PAN as BIN + last four (R1.7); the auditor sees the last four only."""
    shown = {"card_id": card.get("card_id"), "last4": card.get("last4"), "expiry_month": card.get("expiry_month")}
    if with_bin:
        shown["bin"] = card.get("bin")
        shown["display"] = f"{card.get('bin')}••••••{card.get('last4')}"
    else:
        shown["display"] = f"•••• •••• •••• {card.get('last4')}"
    return shown


def mask(field: str, value: Any) -> Any:
    """The masked form of one field's value (None stays None: nothing is on file)."""
    if value is None:
        return None
    if field == "email":
        return mask_email(str(value))
    if field == "phone":
        return mask_phone(str(value))
    if field == "date_of_birth":
        return DATE_MASK
    if field == "address":
        return mask_address(value)
    if field == "full_name":
        return mask_name(str(value))
    if field == "national_id":
        return _last(str(value), 4)
    if field == "bank_accounts":
        return [{"account_id": a.get("account_id"), "iban": _last(str(a.get("iban", "")), 4)} for a in value]
    if field == "cards":
        return [mask_card(card, with_bin=False) for card in value]
    return MASK


# -- the policy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """An allowed access; `break_glass` when only a live break-glass window reached it."""

    break_glass: bool = False

    def details(self, **more: str) -> dict[str, str]:
        found = dict(more)
        if self.break_glass:
            found["break_glass"] = "true"
        return found


def _ids(candidate: str | None) -> list[str]:
    """A customer id for an access record, only when it is one: whatever a caller typed
    in its place may be personal data, and access records outlive erasure."""
    if not candidate:
        return []
    try:
        return [str(UUID(str(candidate)))]
    except ValueError:
        return []


# -- the operator: whoever runs `strongroom` on the host (issue 11, item 5) ---------------------

OPERATOR_ROLE = "operator"
"""The command line's actor, `operator:<OS user>@<host>`. Not a staff role: it is in neither
ROLE_PERMISSIONS nor the field table, and no account can be granted it (domain/staff.py
DEFAULT_ROLES), so it widens nothing in the API. The operator holds the KEK and could
decrypt every value anyway, so masking for them would protect nothing; what stops an
unseen read is that each one needs a stated purpose and is recorded as a reveal of exactly
the fields shown, in the same shape as an API reveal (R3.2, R2.10)."""

HELD_KYC_ROLES = frozenset({"compliance_officer"})
"""Who reads the KYC part an AML hold keeps, and opens or closes an investigation (R5.4)."""
HELD_KYC_OPERATION = "held_kyc"
AML_DECISION_OPERATION = "aml_investigation"

OPERATOR_READS = frozenset({Operation.VIEW, Operation.SEARCH})
"""What the operator may read through the customer use cases: one record, whole; the ids
matching one exact value."""


CARD_DATA_IN_PURPOSE = "must not contain card data (a card number, security code or track data; PCI DSS 3.3, 3.4)"


def stated_purpose(purpose: str | None) -> str:
    """A purpose as a record may carry it, stripped: 1 to 200 printable characters, none
    hostile (a bidi override would make the auditor read another reason), no card data
    (PCI DSS 3.3, 3.4). The API's X-Purpose rule (web/auth.py); raises ValidationFailed."""
    stated = (purpose or "").strip()
    if not stated or len(stated) > PURPOSE_MAX_LENGTH or hostile_character(stated) or any(
            ch < " " or ch == "\x7f" for ch in stated):
        raise ValidationFailed({"purpose": [f"state why, in 1 to {PURPOSE_MAX_LENGTH} printable characters"]})
    if card_data_in(stated) is not None:
        raise ValidationFailed({"purpose": [CARD_DATA_IN_PURPOSE]})
    return stated


def _operator_at_console(actor: Actor) -> bool:
    """The operator at the command line (e.g. the DPO's desk, `cli/requests.py`): not
    staff, so R6.4's training does not bind it (docs/operations.md): whoever runs the
    command line holds the KEK, and a training rule there would stop nothing. Only a
    `cli` context counts, which the API never sets, so no session escapes the rule."""
    context = current_context()
    return OPERATOR_ROLE in actor.roles and context is not None and context.via == "cli"


class Policy:
    """Decides every access (customer data, staff administration, the audit trail);
    records every refusal."""

    def __init__(self, access_log: AccessRecorder, clock: Clock = utc_now,
                 training_validity: timedelta = TRAINING_VALIDITY) -> None:
        self.access_log = access_log
        self.clock = clock
        self.training_validity = training_validity

    # -- training (R6.4) ------------------------------------------------------------------

    def training_current(self, actor: Actor) -> bool:
        """Whether the actor's last training is recent enough for reveal and export now.
        A completion dated in the future (beyond clock skew) counts for nothing: it
        would otherwise stretch the validity by however far ahead it was dated."""
        trained = actor.trained_at
        if trained is None:
            return False
        now = self.clock()
        return trained <= now + timedelta(minutes=5) and now < trained + self.training_validity

    def training_valid_until(self, trained_at: datetime | None) -> datetime | None:
        return None if trained_at is None else trained_at + self.training_validity

    # -- scope ------------------------------------------------------------------------

    def break_glass_live(self, actor: Actor) -> bool:
        """Whether a break-glass window is open now (it lasts at most 60 minutes)."""
        until = actor.break_glass_until
        if until is None:
            return False
        now = self.clock()
        return now < until <= now + BREAK_GLASS_MAX

    @staticmethod
    def roles_reaching(actor: Actor, portfolio: str, permission: Permission | None = None) -> frozenset[str]:
        """The actor's roles that reach `portfolio` (and grant `permission`, when given).

        Each role keeps its own scope (R2.6, R2.9): a portfolio-scoped role reaches only
        the person's portfolios (with a live break-glass one, which authentication adds),
        whatever unscoped role the person also holds. So an auditor who is also an agent
        in A reads B as an auditor, masked, and reveals nothing there.
        """
        reaching = set()
        for role in actor.roles:
            granted = ROLE_PERMISSIONS.get(role, frozenset())
            if permission is not None and permission not in granted:
                continue
            if role in PORTFOLIO_SCOPED_ROLES and portfolio not in actor.portfolios:
                continue
            reaching.add(role)
        return frozenset(reaching)

    def reaches(self, actor: Actor, portfolio: str,
                permission: Permission = Permission.CUSTOMERS_READ) -> Decision | None:
        """How the actor reaches a portfolio for `permission`, or None when no role that
        grants it reaches there (out of scope).

        The break-glass portfolio is among `actor.portfolios` while its grant lasts
        (authentication puts it there), so scope itself needs no second rule; what a
        scoped role does inside a live window is flagged for the break-glass review.
        """
        roles = self.roles_reaching(actor, portfolio, permission)
        if not roles:
            return None
        if roles <= PORTFOLIO_SCOPED_ROLES:
            return Decision(break_glass=self.break_glass_live(actor))
        return Decision()

    def portfolios_in_scope(self, actor: Actor,
                            permission: Permission = Permission.CUSTOMERS_READ) -> frozenset[str] | None:
        """The portfolios a listing may cover; None means every portfolio."""
        granting = {r for r in actor.roles if permission in ROLE_PERMISSIONS.get(r, frozenset())}
        if granting and granting <= PORTFOLIO_SCOPED_ROLES:
            return actor.portfolios
        return None if granting else frozenset()

    # -- deciding -----------------------------------------------------------------------

    def permits(self, actor: Actor, permission: Permission, *, operation: str,
                roles: Collection[str] | None = None, customer_ids: Sequence[str] = ()) -> bool:
        """Whether `actor` holds `permission` (and, when `roles` is given, one of those
        roles too). A no is recorded before it is returned: a caller that answers
        "not found" rather than 403 (someone else's session) still leaves a trace."""
        if not actor.has(permission):
            self.refuse(operation, "permission", customer_ids)
            return False
        if roles is not None and not actor.roles & set(roles):
            self.refuse(operation, "role", customer_ids)
            return False
        return True

    def require(self, actor: Actor, permission: Permission, customer: Mapping[str, Any] | None = None,
                *, operation: str | None = None, about: str | None = None,
                roles: Collection[str] | None = None,
                denied: Callable[[], AccessDenied] = AccessDenied) -> Decision:
        """Allow `permission` on `customer` (a record with at least `portfolio`, and `id`
        once it exists) or raise: AccessDenied (403) or CustomerNotFound (404).

        `about` names the customer a refusal concerns when the record is not loaded
        yet (the permission is checked first, so a 403 says nothing about existence).
        `roles` narrows the permission to holders of one of those roles; `denied`
        makes the 403 a use case's own (it still says nothing about any record).
        """
        op = operation or str(permission)
        if customer is not None and customer.get("id"):
            customer_ids = [str(customer["id"])]
        else:
            customer_ids = _ids(about)
        if not self.permits(actor, permission, operation=op, roles=roles, customer_ids=customer_ids):
            raise denied()
        if permission in TRAINING_BOUND and not _operator_at_console(actor) and not self.training_current(actor):
            self.refuse(op, "training_lapsed", customer_ids)
            raise TrainingLapsed()
        if customer is None:
            return Decision()
        decision = self.reaches(actor, str(customer.get("portfolio")), permission)
        if decision is not None:
            return decision
        if customer_ids:
            # R2.6: out of scope is answered exactly as absent, and recorded.
            self.not_found(op, customer_ids[0], reason="out_of_scope")
            raise CustomerNotFound(customer_ids[0])
        self.refuse(op, "portfolio_out_of_scope", [])
        raise PortfolioOutOfScope()

    def require_operation(self, actor: Actor, operation: Operation,
                          customer: Mapping[str, Any] | None = None, *, about: str | None = None) -> Decision:
        return self.require(actor, OPERATIONS[operation], customer, operation=str(operation), about=about)

    def require_operator(self, actor: Actor, operation: Operation, purpose: str | None,
                         *, about: str | None = None) -> str:
        """The operator may do `operation` (one of OPERATOR_READS) for a stated purpose;
        returns the purpose as it will be recorded. A refusal is recorded like any other."""
        ids = _ids(about)
        if OPERATOR_ROLE not in actor.roles or operation not in OPERATOR_READS:
            self.refuse(str(operation), "permission", ids)
            raise AccessDenied()
        try:
            return stated_purpose(purpose)
        except ValidationFailed:
            self.refuse(str(operation), "purpose_missing", ids)
            raise

    def require_held_kyc(self, actor: Actor, purpose: str | None, *, about: str | None = None) -> str:
        """Reading the KYC part an AML hold keeps after an erasure (R5.4, GDPR Art. 18):
        a compliance officer only (whatever else a role may reveal), with current
        training, a stated purpose and a fresh step-up; returns the purpose as it will
        be recorded. The operator is refused too: the hold restricts processing to
        the AML purpose, and the command line's reads are not that."""
        op = HELD_KYC_OPERATION
        self.require(actor, Permission.CUSTOMERS_REVEAL, operation=op, about=about, roles=HELD_KYC_ROLES)
        ids = _ids(about)
        try:
            stated = stated_purpose(purpose)
        except ValidationFailed:
            self.refuse(op, "purpose_missing", ids)
            raise
        self.require_step_up(actor, op, ids)
        return stated

    def require_aml_decision(self, actor: Actor, *, about: str | None = None) -> None:
        """Opening or closing an AML investigation hold is a compliance officer's
        recorded decision (R5.4); anyone else is refused, and the refusal recorded."""
        self.require(actor, Permission.CUSTOMERS_READ, operation=AML_DECISION_OPERATION, about=about,
                     roles=HELD_KYC_ROLES)

    def require_reveal(self, actor: Actor, fields: Iterable[str], purpose: str | None,
                       *, about: str | None = None) -> None:
        """Everything a reveal needs that does not depend on the customer (so none of it
        can tell whether a customer exists): permission, training, a purpose, fields
        revealable for one of the caller's roles, and a fresh step-up."""
        wanted = sorted(set(fields))
        op = str(Operation.REVEAL)
        self.require(actor, Permission.CUSTOMERS_REVEAL, operation=op, about=about)
        ids = _ids(about)
        stated = (purpose or "").strip()
        if not stated or len(stated) > PURPOSE_MAX_LENGTH:
            self.refuse(op, "purpose_missing", ids, wanted)
            raise ValidationFailed({"purpose": [f"state why, in 1 to {PURPOSE_MAX_LENGTH} characters"]})
        if not wanted:
            raise ValidationFailed({"fields": ["name at least one field"]})
        refused = [f for f in wanted if treatment(actor, f) is not Treatment.REVEALABLE]
        if refused:
            self.refuse(op, "field_not_revealable", ids, wanted)
            raise FieldNotRevealable(refused)
        self.require_step_up(actor, op, ids, wanted)

    def require_revealable_in(self, actor: Actor, fields: Iterable[str], customer: Mapping[str, Any]) -> None:
        """Each field revealable for a role that reveals in this customer's portfolio
        (R2.9): the customer is already known to be within reach, so this says nothing
        about its existence."""
        wanted = sorted(set(fields))
        roles = self.roles_reaching(actor, str(customer.get("portfolio")), Permission.CUSTOMERS_REVEAL)
        refused = [f for f in wanted if treatment(actor, f, roles) is not Treatment.REVEALABLE]
        if refused:
            self.refuse(str(Operation.REVEAL), "field_not_revealable", _ids(customer.get("id")), wanted)
            raise FieldNotRevealable(refused)

    def require_step_up(self, actor: Actor, operation: str, customer_ids: Sequence[str] = (),
                        fields: Iterable[str] = ()) -> None:
        """A TOTP code entered within the last `STEP_UP_WINDOW` (R2.7, R2.11), or
        StepUpRequired (403), recorded: a stolen session alone reveals nothing, opens
        no break-glass, approves nothing, changes no role and no password."""
        stepped_up = actor.stepped_up_at
        now = self.clock()
        if stepped_up is None or not (now - STEP_UP_WINDOW <= stepped_up <= now + timedelta(seconds=5)):
            self.refuse(operation, "step_up_required", customer_ids, fields)
            raise StepUpRequired()

    def require_step_up_in_session(self, actor: Actor, operation: str, customer_ids: Sequence[str] = ()) -> None:
        """`require_step_up` for a staff session; the operator at the console is not
        asked (it has no session and no TOTP, and already holds the KEK)."""
        if not _operator_at_console(actor):
            self.require_step_up(actor, operation, customer_ids)

    def require_search_by(self, actor: Actor, field: str) -> None:
        """Searching by `field` confirms its value: allowed to those who may reveal the
        field, or who hold `customers:search_restricted`; refused (and recorded) else."""
        matched = SEARCH_MATCHES.get(field)
        if matched is None:
            raise ValidationFailed({field: ["is not searchable"]})
        if matched in self.revealable(actor) or actor.has(Permission.CUSTOMERS_SEARCH_RESTRICTED):
            return
        self.refuse(str(Operation.SEARCH), "search_field_not_allowed", fields=[matched])
        raise SearchNotAllowed(field)

    def require_separate_duties(self, operation: str, roles: Iterable[str]) -> None:
        """Refuse (409, recorded) a set of roles one person may not hold (R2.9,
        `DUTY_CONFLICTS`): checked on the roles an account would have after the change."""
        conflict = duty_conflict(roles)
        if conflict is not None:
            self.refuse(operation, "separation_of_duties")
            raise conflict

    # -- views ----------------------------------------------------------------------------

    def revealable(self, actor: Actor, portfolio: str | None = None) -> list[str]:
        """Fields this actor could reveal (after a step-up), now: anywhere, or in
        `portfolio` (through the roles that reveal there)."""
        if not actor.has(Permission.CUSTOMERS_REVEAL) or not self.training_current(actor):
            return []
        roles = None if portfolio is None else self.roles_reaching(actor, portfolio, Permission.CUSTOMERS_REVEAL)
        return [f for f in REVEALABLE_FIELDS if treatment(actor, f, roles) is Treatment.REVEALABLE]

    def view(self, actor: Actor, record: Mapping[str, Any]) -> dict[str, Any]:
        """The record as this actor may see it: each field shown, masked or left out,
        by the roles that reach its portfolio (R2.9: another role's wider treatment
        does not travel out of that role's scope).

        Adds `masked` (fields masked here) and `revealable` (those the actor may reveal).
        """
        portfolio = str(record.get("portfolio"))
        readers = self.roles_reaching(actor, portfolio, Permission.CUSTOMERS_READ)
        shown: dict[str, Any] = {}
        masked: list[str] = []
        for field, value in record.items():
            how = treatment(actor, field, readers)
            if how is Treatment.HIDDEN:
                continue
            if how is Treatment.SHOWN:
                shown[field] = value
            elif how is Treatment.CARD_BIN_LAST4:
                shown[field] = [mask_card(card, with_bin=True) for card in value or []]
            else:
                shown[field] = mask(field, value)
                if value is not None and how is not Treatment.CARD_LAST4:
                    masked.append(field)
        revealable = set(self.revealable(actor, portfolio))
        shown["masked"] = sorted(masked)
        shown["revealable"] = sorted(f for f in masked if f in revealable)
        return shown

    def interaction_view(self, actor: Actor, interaction: Mapping[str, Any], portfolio: str) -> dict[str, Any]:
        """One interaction of a customer in `portfolio`, its notes as the roles that read
        interactions there may see them."""
        how = treatment(actor, "notes", self.roles_reaching(actor, portfolio, Permission.INTERACTIONS_READ))
        item = {k: v for k, v in interaction.items() if k != "notes"}
        if how is Treatment.SHOWN:
            item["notes"] = interaction.get("notes")
        elif how is not Treatment.HIDDEN:
            item["notes"] = mask("notes", interaction.get("notes"))
        return item

    @staticmethod
    def returned_fields(view: Mapping[str, Any]) -> list[str]:
        """The customer-data field names a view carries (for the access record)."""
        return sorted(k for k in view if k not in ("masked", "revealable"))

    # -- recording refusals ------------------------------------------------------------------

    def not_found(self, operation: str, customer_id: str, *, reason: str) -> None:
        """Record a request for a customer the caller cannot reach (absent, out of scope,
        erased); the caller sees the same 404 (or 410) either way."""
        self.access_log.record(
            kind="denied", outcome="not_found", customer_ids=_ids(customer_id),
            details={"operation": operation, "reason": reason},
        )

    def refuse(self, operation: str, reason: str, customer_ids: Sequence[str] = (),
               fields: Iterable[str] = ()) -> None:
        """Record a refusal decided here or by a use case's own rule (separation of
        duties, say); `reason` comes from a closed vocabulary, never free text."""
        self.access_log.record(
            kind="denied", outcome="denied", customer_ids=list(customer_ids), fields=list(fields),
            details={"operation": operation, "reason": reason},
        )


RESTRICTED_READERS = frozenset({"compliance_officer", "dpo"})
"""R5.6: a restricted customer is left out of searches and listings, except for these
roles, whose work (an investigation, the data-subject request itself) requires them."""


def sees_restricted(actor: Actor) -> bool:
    """Whether searches and listings by `actor` include restricted customers (R5.6)."""
    return bool(actor.roles & RESTRICTED_READERS)


def reads_customer_data(role: str) -> bool:
    """Whether `role` reaches any customer data: a customer permission that reads, or
    any field of the table not hidden from it. Granting such a role waits for a second
    approver (R2.9), decided from this data rather than a list of role names."""
    reading = {OPERATIONS[op] for op in (Operation.VIEW, Operation.SEARCH, Operation.REVEAL,
                                         Operation.HISTORY, Operation.INTERACTIONS_LIST)} | TRAINING_BOUND
    if ROLE_PERMISSIONS.get(role, frozenset()) & reading:
        return True
    return any(rule.for_role(role) is not Treatment.HIDDEN for rule in FIELD_POLICY.values())


def role_treatments() -> dict[str, dict[str, str]]:
    """The field policy as {field: {role: treatment}} for every default role (reports, docs)."""
    roles = tuple(ROLE_PERMISSIONS)
    return {field: {role: str(rule.for_role(role)) for role in roles} for field, rule in FIELD_POLICY.items()}
