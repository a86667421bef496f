"""A staff member: who may sign in, with which second factor, holding which roles.

Secrets are opaque here: the application hashes passwords (argon2id) and recovery
codes and generates the TOTP secret; the domain only keeps what it is given and
enforces the rules around it. Secrets live under catalogue names of class SECRET
(`password_hash`, `totp_secret`, `recovery_codes`), never in a view.

Separation of duties (nobody changes their own roles; a second approver for
privileged grants, R2.9) needs to know who acts, so it is decided in `application/`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    InvalidField,
    MfaAlreadyEnrolled,
    RecoveryCodeNotAccepted,
    StaffDisabled,
    StaffNotDisabled,
    UnknownRole,
)
from domain.values import normalise_email, normalise_portfolio, normalise_required_text

DEFAULT_ROLES = ("agent", "supervisor", "compliance_officer", "dpo", "security_officer", "auditor", "admin")
PRIVILEGED_ROLES = ("admin", "dpo", "security_officer", "auditor", "compliance_officer")
STAFF_STATUSES = ("active", "disabled")

_USERNAME = re.compile(r"^[a-z0-9._-]{3,64}$")
_SECRET_MAX_LENGTH = 1024


def normalise_username(value: object) -> str:
    """Lower-case, 3 to 64 of a-z 0-9 . _ -: one spelling per person, so "Alice" cannot
    be enrolled beside "alice" and pass for her in the audit trail."""
    if not isinstance(value, str) or not _USERNAME.match(value.strip().lower()):
        raise InvalidField("username", "must be 3 to 64 of a-z, 0-9, . _ -")
    return value.strip().lower()


def normalise_work_email(value: object) -> str:
    """A staff member's work address: a valid address (as for customers), in ASCII, so
    that it goes into a mail header as it is, with no encoding to smuggle a second
    header or recipient through."""
    email = normalise_email(value)
    if not email.isascii():
        raise InvalidField("email", "must be an ASCII address")
    return email


def _role_names(values: Iterable[object]) -> list[str]:
    if isinstance(values, str):
        raise InvalidField("roles", "must be a list of role names")
    names = []
    for value in values:
        if not isinstance(value, str):
            raise InvalidField("roles", "must be a list of role names")
        names.append(value.strip())
    return sorted(set(names))


def _portfolios(values: Iterable[object]) -> list[str]:
    if isinstance(values, str):
        raise InvalidField("portfolios", "must be a list of portfolio codes")
    try:
        return sorted({normalise_portfolio(value) for value in values})
    except InvalidField:
        raise InvalidField("portfolios", "each must be a short code of 1 to 32 letters, digits, . _ -") from None


def _reason(value: object) -> str:
    # Reasons are kept under the SYSTEM key, never destroyed: they must hold no personal data.
    return normalise_required_text(value, "reason", max_length=500)


def _instant(value: object, field: str) -> str:
    """An ISO 8601 time with its zone, in UTC: one spelling, so the latest completion
    is found by comparing times, not strings written in different zones."""
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            raise InvalidField(field, "must be an ISO 8601 time with a zone") from None
    if when.tzinfo is None:
        raise InvalidField(field, "must be an ISO 8601 time with a zone")
    return when.astimezone(UTC).isoformat()


def _opaque_secret(value: object, field: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _SECRET_MAX_LENGTH:
        raise InvalidField(field, f"must be a non-empty string of at most {_SECRET_MAX_LENGTH} characters")
    return value


class StaffMember(Aggregate):
    """A staff account. Create with `StaffMember.enrol(...)`."""

    @classmethod
    def enrol(
        cls,
        *,
        username: str,
        display_name: str,
        roles: Iterable[str],
        portfolios: Iterable[str] = (),
        password_hash: str,
        must_change_password: bool = True,
        email: str | None = None,
    ) -> StaffMember:
        """A new account; by default its (one-time) password must be changed at first use.

        `email` is the person's work address, where an activation code goes (R2.9);
        the operator's bootstrap accounts may have none."""
        return cls(
            username=normalise_username(username),
            display_name=normalise_required_text(display_name, "display_name", max_length=200),
            roles=_role_names(roles),
            portfolios=_portfolios(portfolios),
            password_hash=_opaque_secret(password_hash, "password_hash"),
            must_change_password=must_change_password,
            email=None if email is None else normalise_work_email(email),
        )

    @event("Enrolled")
    def __init__(
        self,
        username: str,
        display_name: str,
        roles: list[str],
        portfolios: list[str],
        password_hash: str,
        must_change_password: bool,
        email: str | None = None,  # absent from accounts enrolled before R2.9's activation
    ) -> None:
        if not _USERNAME.match(username):
            raise InvalidField("username", "must be 3 to 64 of a-z, 0-9, . _ -")
        self.check_known_roles(roles)
        self.check_flag(must_change_password, "must_change_password")
        self.username = username
        self.display_name = display_name
        self.roles: list[str] = list(roles)
        self.portfolios: list[str] = list(portfolios)
        self.password_hash = password_hash
        self.must_change_password = must_change_password
        self.email = email
        self.totp_secret: str | None = None
        self.recovery_codes: list[str] = []
        self.status = "active"
        self.trainings: list[dict[str, str]] = []

    # --- rules ---------------------------------------------------------------------------

    def check_active(self) -> None:
        if self.status != "active":
            raise StaffDisabled()

    @staticmethod
    def check_known_roles(roles: Iterable[str]) -> None:
        # A typo'd role would grant nothing today and something unintended once a
        # role of that name is added; refuse it now.
        if any(role not in DEFAULT_ROLES for role in roles):
            raise UnknownRole(DEFAULT_ROLES)

    @staticmethod
    def check_flag(value: object, field: str) -> None:
        if not isinstance(value, bool):
            raise InvalidField(field, "must be true or false")

    @staticmethod
    def check_recovery_codes(recovery_codes: list[str]) -> None:
        if not recovery_codes or len(set(recovery_codes)) != len(recovery_codes):
            raise InvalidField("recovery_codes", "must be a non-empty list of distinct hashes")
        for code in recovery_codes:
            _opaque_secret(code, "recovery_codes")

    # --- password and second factor --------------------------------------------------------

    @event("PasswordChanged")
    def change_password(self, password_hash: str, must_change_password: bool = False) -> None:
        """Set a new password hash. An administrator's reset passes
        must_change_password=True so that the one-time password is replaced at first use."""
        self.check_active()
        _opaque_secret(password_hash, "password_hash")
        self.check_flag(must_change_password, "must_change_password")
        self.password_hash = password_hash
        self.must_change_password = must_change_password

    def enrol_totp(self, totp_secret: str, recovery_codes: Iterable[str] = ()) -> None:
        """Enrol the TOTP secret (R2.2), with the hashes of the one-time recovery codes
        when they are issued at the same time (else later: `replace_recovery_codes`)."""
        if isinstance(recovery_codes, str):
            raise InvalidField("recovery_codes", "must be a list of hashes")
        self._enrol_totp(totp_secret=totp_secret, recovery_codes=list(recovery_codes))

    @event("TotpEnrolled")
    def _enrol_totp(self, totp_secret: str, recovery_codes: list[str]) -> None:
        self.check_active()
        if self.totp_secret is not None:
            raise MfaAlreadyEnrolled()
        _opaque_secret(totp_secret, "totp_secret")
        if recovery_codes:
            self.check_recovery_codes(recovery_codes)
        self.totp_secret = totp_secret
        self.recovery_codes = list(recovery_codes)

    def reset_totp(self, reason: str) -> None:
        """Forget the second factor (lost device); the account enrols again at next login."""
        self._reset_totp(reason=_reason(reason))

    @event("TotpReset")
    def _reset_totp(self, reason: str) -> None:
        self.totp_secret = None
        self.recovery_codes = []

    @event("RecoveryCodesReplaced")
    def replace_recovery_codes(self, recovery_codes: list[str]) -> None:
        self.check_active()
        self.check_recovery_codes(recovery_codes)
        self.recovery_codes = list(recovery_codes)

    def use_recovery_code(self, code_hash: str) -> None:
        """Spend the recovery code whose hash the application matched; each works once.

        The event carries the codes that remain, under `recovery_codes`, so the hash
        used is never recorded under a name of its own.
        """
        if code_hash not in self.recovery_codes:
            raise RecoveryCodeNotAccepted()
        self._use_recovery_code(recovery_codes=[code for code in self.recovery_codes if code != code_hash])

    @event("RecoveryCodeUsed")
    def _use_recovery_code(self, recovery_codes: list[str]) -> None:
        self.check_active()
        if len(recovery_codes) != len(self.recovery_codes) - 1 or not set(recovery_codes) < set(self.recovery_codes):
            raise RecoveryCodeNotAccepted()
        self.recovery_codes = list(recovery_codes)

    # --- authorisation data ----------------------------------------------------------------

    def change_roles(self, *, grant: Iterable[str] = (), revoke: Iterable[str] = ()) -> None:
        """Grant and revoke roles. Only actual changes are recorded; none, no event."""
        grant_names, revoke_names = _role_names(grant), _role_names(revoke)
        self.check_known_roles([*grant_names, *revoke_names])
        if set(grant_names) & set(revoke_names):
            raise InvalidField("roles", "a role cannot be granted and revoked at once")
        effective_grant = [role for role in grant_names if role not in self.roles]
        effective_revoke = [role for role in revoke_names if role in self.roles]
        if effective_grant or effective_revoke:
            self._change_roles(grant=effective_grant, revoke=effective_revoke)

    @event("RolesChanged")
    def _change_roles(self, grant: list[str], revoke: list[str]) -> None:
        self.check_known_roles([*grant, *revoke])
        if grant:
            # Revoking from a disabled account is always allowed; granting is not.
            self.check_active()
        self.roles = sorted((set(self.roles) | set(grant)) - set(revoke))

    def change_portfolios(self, portfolios: Iterable[str]) -> None:
        """Set the portfolios whose customers this member reaches (R2.6)."""
        self._change_portfolios(portfolios=_portfolios(portfolios))

    @event("PortfoliosChanged")
    def _change_portfolios(self, portfolios: list[str]) -> None:
        self.portfolios = list(portfolios)

    # --- lifecycle ---------------------------------------------------------------------------

    def disable(self, reason: str) -> None:
        """Disable the account; it can no longer sign in or be granted roles."""
        self._disable(reason=_reason(reason))

    @event("Disabled")
    def _disable(self, reason: str) -> None:
        self.check_active()
        self.status = "disabled"

    def enable(self, reason: str) -> None:
        self._enable(reason=_reason(reason))

    @event("Enabled")
    def _enable(self, reason: str) -> None:
        if self.status != "disabled":
            raise StaffNotDisabled()
        self.status = "active"

    def record_unlock(self, reason: str) -> None:
        """A security officer ended a lockout early (R2.3); the reason stays on record."""
        self._record_unlock(reason=_reason(reason))

    @event("Unlocked")
    def _record_unlock(self, reason: str) -> None:
        self.check_active()

    # --- security training (R6.4) -------------------------------------------------------------

    def record_training(self, *, course: str, course_version: str, completed_at: str,
                        evidence_ref: str, recorded_by: str) -> None:
        """A completed security-training course: which course and version, when, the
        reference of its evidence (a certificate or LMS record id, never a document) and
        who recorded it. Whether that may be recorded, and by whom, is the
        application's decision (nobody records their own training)."""
        self._record_training(
            course=normalise_required_text(course, "course", max_length=100),
            course_version=normalise_required_text(course_version, "course_version", max_length=32),
            completed_at=_instant(completed_at, "completed_at"),
            evidence_ref=normalise_required_text(evidence_ref, "evidence_ref", max_length=200),
            recorded_by=normalise_required_text(recorded_by, "recorded_by", max_length=200),
        )

    @event("TrainingCompleted")
    def _record_training(self, course: str, course_version: str, completed_at: str,
                         evidence_ref: str, recorded_by: str) -> None:
        self.trainings = [*self.completions(), {
            "course": course, "course_version": course_version, "completed_at": completed_at,
            "evidence_ref": evidence_ref, "recorded_by": recorded_by,
        }]

    def completions(self) -> list[dict[str, str]]:
        """Every recorded completion, oldest first (none on accounts older than R6.4)."""
        return [dict(item) for item in getattr(self, "trainings", [])]

    def last_trained_at(self) -> datetime | None:
        """When the most recent training was completed, or None: never trained."""
        times = [datetime.fromisoformat(item["completed_at"]) for item in self.completions()]
        return max(times) if times else None

    # --- views ---------------------------------------------------------------------------------

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @property
    def holds_privileged_role(self) -> bool:
        return any(role in PRIVILEGED_ROLES for role in self.roles)

    def to_record(self) -> dict[str, Any]:
        """The account without its secrets: no password hash, TOTP secret or recovery codes."""
        return {
            "id": str(self.id),
            "version": self.version,
            "created_on": self.created_on.isoformat(),
            "modified_on": self.modified_on.isoformat(),
            "username": self.username,
            "display_name": self.display_name,
            "roles": list(self.roles),
            "portfolios": list(self.portfolios),
            "status": self.status,
            "must_change_password": self.must_change_password,
            "mfa_enrolled": self.totp_secret is not None,
            "recovery_codes_left": len(self.recovery_codes),
        }
