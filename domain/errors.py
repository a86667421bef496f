"""The domain's errors: what a rule refused, said safely.

Every message names the field and the rule and never the offending value: these
messages reach logs and API responses (R1.3, R7.3), and the value may be a name,
an email address or a card number. The value is not even kept on the exception,
so a careless `repr(exc)` or a traceback with locals cannot leak it either.
"""

from __future__ import annotations


class DomainError(Exception):
    """A domain rule refused a change. `field` names the field, when one is at fault."""

    field: str | None = None
    rule: str = "domain rule"

    def __init__(self, message: str, *, field: str | None = None, rule: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field
        if rule is not None:
            self.rule = rule

    def __str__(self) -> str:
        return self.message


class InvalidField(DomainError):
    """A field's value breaks a rule: wrong format, out of range, failed check digit."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}", field=field, rule=rule)


class SensitiveAuthenticationDataRefused(InvalidField):
    """Card security codes, track data and PIN blocks are never accepted (R1.7).

    PCI DSS 3.3.1 forbids storing them after authorisation; refusing them at the
    door means they never reach an event, a log or a backup.
    """

    def __init__(self, field: str) -> None:
        super().__init__(field, "sensitive authentication data is never accepted (PCI DSS 3.3)")


class InvalidKycTransition(DomainError):
    """The KYC status cannot move from one state to the other.

    Both states are named: they come from a closed vocabulary, not from personal data.
    """

    def __init__(self, from_status: str, to_status: str) -> None:
        super().__init__(
            f"kyc_status: cannot change from {from_status} to {to_status}",
            field="kyc_status",
            rule="allowed KYC transitions",
        )
        self.from_status = from_status
        self.to_status = to_status


class RelationshipClosed(DomainError):
    """The customer relationship has ended; its record is read-only."""

    def __init__(self) -> None:
        super().__init__(
            "status: the relationship is closed and cannot be changed",
            field="status",
            rule="closed relationships are read-only",
        )


class CustomerRestricted(DomainError):
    """Processing of this customer is restricted (R5.6, GDPR Art. 18); the record is read-only."""

    def __init__(self) -> None:
        super().__init__(
            "restricted: processing is restricted and the record cannot be changed",
            field="restricted",
            rule="restricted records are read-only",
        )


class NotRestricted(DomainError):
    """A restriction was to be lifted from a customer that has none."""

    def __init__(self) -> None:
        super().__init__(
            "restricted: processing is not restricted",
            field="restricted",
            rule="only a restriction in force can be lifted",
        )


class CardNotFound(DomainError):
    def __init__(self) -> None:
        super().__init__("card_id: no such card on this customer", field="card_id", rule="card exists")


class BankAccountNotFound(DomainError):
    def __init__(self) -> None:
        super().__init__(
            "account_id: no such bank account on this customer",
            field="account_id",
            rule="bank account exists",
        )


class UnknownRole(InvalidField):
    """A role name outside the vocabulary. The name itself is not echoed: it is free input."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__("roles", f"unknown role; allowed roles are {', '.join(allowed)}")


class StaffDisabled(DomainError):
    def __init__(self) -> None:
        super().__init__(
            "status: the staff account is disabled",
            field="status",
            rule="disabled accounts cannot be changed",
        )


class StaffNotDisabled(DomainError):
    def __init__(self) -> None:
        super().__init__(
            "status: the staff account is not disabled",
            field="status",
            rule="only a disabled account can be enabled",
        )


class MfaAlreadyEnrolled(DomainError):
    """A second TOTP enrolment over a first is refused; the secret must be reset first.

    Otherwise anyone holding a session could silently swap the account's second
    factor for one of their own.
    """

    def __init__(self) -> None:
        super().__init__(
            "totp_secret: a second factor is already enrolled; reset it first",
            field="totp_secret",
            rule="one enrolment at a time",
        )


class RecoveryCodeNotAccepted(DomainError):
    def __init__(self) -> None:
        super().__init__(
            "recovery_codes: not a current recovery code",
            field="recovery_codes",
            rule="each recovery code is used once",
        )


class ErasureAlreadyComplete(DomainError):
    def __init__(self) -> None:
        super().__init__(
            "keys_destroyed: every key of this customer is already destroyed",
            field="keys_destroyed",
            rule="a key is destroyed once",
        )


class PrivacyRequestClosed(DomainError):
    """A data-subject request already completed or rejected cannot change (R5.3)."""

    def __init__(self) -> None:
        super().__init__(
            "status: the request is closed (completed or rejected)",
            field="status",
            rule="a closed request is final",
        )


class IdentityNotVerified(DomainError):
    """A data-subject request is acted on only after the requester's identity is verified (R5.3)."""

    def __init__(self) -> None:
        super().__init__(
            "verification: the requester's identity has not been verified",
            field="verification",
            rule="verify the requester before acting",
        )


class AlreadyExtended(DomainError):
    """A deadline is extended once (GDPR Art. 12(3); CCPA 1798.145)."""

    def __init__(self) -> None:
        super().__init__(
            "deadline: the deadline has already been extended once",
            field="deadline",
            rule="one extension per request",
        )
