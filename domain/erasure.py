"""The erasure ledger: the record that a customer's data keys were destroyed (R5.4).

It holds no personal data, only the customer's random id, which keys are gone and
why, so it stays readable for ever and can be re-applied after every restore
(R4.6: erasure is never undone). Under an AML hold the KYC key outlives the
profile key; its destruction is recorded later, when the hold ends (R5.5).

`reason` is typed by staff and stored under the SYSTEM key, which is never
destroyed: it must not contain personal data ("customer request via DSR form",
not the customer's name). This is a rule for people, not enforced here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import ErasureAlreadyComplete, InvalidField
from domain.values import normalise_portfolio, normalise_required_text

KEY_KINDS = ("profile", "kyc")
ERASURE_STATUSES = ("kyc_retained", "complete")
# Why a key outlives an erasure (GDPR Art. 17(3)(b)): the AML retention period after
# the relationship ended (or the relationship was open when erased), or an open
# investigation a compliance officer recorded.
HOLD_REASONS = ("aml_retention", "aml_investigation")


def _reason(value: object) -> str:
    return normalise_required_text(value, "reason", max_length=500)


class CustomerErasure(Aggregate):
    """One customer's erasure. Create with `CustomerErasure.record(...)`."""

    @classmethod
    def record(
        cls,
        *,
        customer_id: str | UUID,
        reason: str,
        keys_destroyed: Iterable[str],
        id: UUID | None = None,  # noqa: A002 - the library's name for it
        portfolio: str | None = None,
        kept: Mapping[str, Iterable[str]] | None = None,
        hold_until: datetime | None = None,
    ) -> CustomerErasure:
        """Record the keys an erasure destroys: ["profile"] under an AML hold, else both.

        `id` may be given so that the application can find the erasure of a customer
        by a name-based UUID of the customer's (random) id; it must never be derived
        from personal data (R1.5). Without it the id is a random UUID.

        `portfolio` (a code, not personal data) is the customer's when erased, so that
        "erased" (410) is answered only to staff whose scope reaches it (R2.6).

        `kept` names, for each key an AML hold keeps, the holds that keep it (codes
        from HOLD_REASONS); `hold_until` is when the retention hold ends and the
        retention run may destroy the kept key (R5.4, R5.5).
        """
        try:
            canonical_id = str(UUID(str(customer_id)))
        except ValueError:
            raise InvalidField("customer_id", "must be a UUID") from None
        if isinstance(keys_destroyed, str):
            raise InvalidField("keys_destroyed", "must be a list of key kinds")
        # _create is the library's own path behind cls(...); it also takes a given id
        # (and makes a random one when id is None).
        return cls._create(
            cls.Recorded,
            id=id,
            customer_id=canonical_id,
            reason=_reason(reason),
            keys_destroyed=sorted(set(keys_destroyed), key=lambda k: (k not in KEY_KINDS, k)),
            portfolio=None if portfolio is None else normalise_portfolio(portfolio),
            kept=None if kept is None else {kind: sorted(set(reasons)) for kind, reasons in kept.items()},
            hold_until=None if hold_until is None else hold_until.astimezone(UTC).isoformat(),
        )

    class Recorded(Aggregate.Created):
        """Declared, not derived from __init__, so that `record` can name it when it
        passes a given id to the library's `_create`."""

        customer_id: str
        reason: str
        keys_destroyed: list[str]
        portfolio: str | None = None  # absent from erasures recorded before issue 10
        kept: dict[str, list[str]] | None = None  # absent before issue 13
        hold_until: str | None = None

    @event(Recorded)
    def __init__(self, customer_id: str, reason: str, keys_destroyed: list[str],
                 portfolio: str | None = None, kept: dict[str, list[str]] | None = None,
                 hold_until: str | None = None) -> None:
        if any(kind not in KEY_KINDS for kind in keys_destroyed):
            raise InvalidField("keys_destroyed", "each must be profile or kyc")
        if "profile" not in keys_destroyed:
            # R5.4: erasure always destroys the profile key; only the KYC key may wait.
            raise InvalidField("keys_destroyed", "an erasure destroys the profile key")
        if kept is None:
            # Recorded before issue 13 (or by a caller naming no hold): a kept key was
            # kept for the AML retention, the only hold there was.
            kept = {kind: ["aml_retention"] for kind in KEY_KINDS if kind not in keys_destroyed}
        if set(kept) != set(KEY_KINDS) - set(keys_destroyed):
            raise InvalidField("kept", "must name each key not destroyed, and only those")
        if any(not reasons or any(r not in HOLD_REASONS for r in reasons) for reasons in kept.values()):
            raise InvalidField("kept", f"each kept key needs its holds, from {', '.join(HOLD_REASONS)}")
        self.customer_id = customer_id
        self.portfolio = portfolio
        self.keys_destroyed: list[str] = [kind for kind in KEY_KINDS if kind in keys_destroyed]
        self.kept: dict[str, list[str]] = {kind: list(reasons) for kind, reasons in kept.items()}
        self.hold_until = hold_until
        self.status = self._status_for(self.keys_destroyed)

    @staticmethod
    def _status_for(keys_destroyed: list[str]) -> str:
        return "complete" if set(keys_destroyed) == set(KEY_KINDS) else "kyc_retained"

    def record_kyc_key_destroyed(self, reason: str) -> None:
        """The AML hold ended and the KYC key was destroyed (R5.4, R5.5)."""
        self._record_kyc_key_destroyed(reason=_reason(reason))

    @event("KycKeyDestroyed")
    def _record_kyc_key_destroyed(self, reason: str) -> None:
        if "kyc" in self.keys_destroyed:
            raise ErasureAlreadyComplete()
        self.keys_destroyed = [*self.keys_destroyed, "kyc"]
        self.kept = {}
        self.status = self._status_for(self.keys_destroyed)

    @property
    def kyc_retained(self) -> bool:
        return "kyc" not in self.keys_destroyed

    def to_record(self) -> dict[str, object]:
        return {
            "id": str(self.id),
            "version": self.version,
            "created_on": self.created_on.isoformat(),
            "modified_on": self.modified_on.isoformat(),
            "customer_id": self.customer_id,
            "keys_destroyed": list(self.keys_destroyed),
            "status": self.status,
            "kept": {kind: list(reasons) for kind, reasons in getattr(self, "kept", {}).items()},
            "hold_until": getattr(self, "hold_until", None),
        }


@dataclass(frozen=True)
class HoldDecision:
    """What an erasure destroys now and what an AML hold keeps (R5.4).

    `kept` maps each kept key kind to the holds keeping it; `hold_until` is when the
    retention part of the hold ends (an open investigation has no end date: it lasts
    until a compliance officer closes it, and the retention run checks it each time).
    """

    destroy: tuple[str, ...]
    kept: dict[str, list[str]]
    hold_until: datetime | None


def aml_hold(*, closed_on: datetime | None, under_investigation: bool, now: datetime,
             retention: timedelta) -> HoldDecision:
    """The AML rule (R5.4, GDPR Art. 17(3)(b)): customer due diligence records are kept
    for `retention` after the relationship ends. A relationship still open when erased
    ends with the erasure, so its hold runs from `now`; an open investigation keeps
    the KYC key whatever the dates say. No hold: both keys go now."""
    ended = closed_on if closed_on is not None else now
    hold_until = ended + retention
    reasons = []
    if hold_until > now:
        reasons.append("aml_retention")
    if under_investigation:
        reasons.append("aml_investigation")
    if not reasons:
        return HoldDecision(destroy=KEY_KINDS, kept={}, hold_until=None)
    return HoldDecision(destroy=("profile",), kept={"kyc": reasons}, hold_until=hold_until)
