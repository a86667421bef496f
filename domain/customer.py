"""A customer of a payment company: a cardholder or a merchant, and the rules of its record.

Every attribute name of every event, and of the aggregate itself, is a name in the
field catalogue (`domain/catalogue.py`), because the infrastructure picks the data
key for each attribute by its name: a personal value under an internal name would
survive erasure. State is plain JSON (str, int, bool, None, dict, list) so the
default transcoder stores events and snapshots as they are.

Public methods normalise their input first and then trigger an `@event` method, so
each event holds canonical values (what blind indexes are computed from) and the
rules (`check_*`) run inside the event method, on the state the event applies to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from functools import partial
from typing import Any, cast
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate, event

from domain.consent import current_consents, new_consent
from domain.errors import (
    BankAccountNotFound,
    CardNotFound,
    CustomerRestricted,
    InvalidField,
    InvalidKycTransition,
    NotRestricted,
    RelationshipClosed,
)
from domain.values import (
    card_bin,
    card_last4,
    check_address,
    check_date_of_birth,
    check_expiry_month,
    check_pan,
    normalise_address,
    normalise_date,
    normalise_email,
    normalise_iban,
    normalise_national_id,
    normalise_notes,
    normalise_phone,
    normalise_portfolio,
    normalise_required_text,
    normalise_text,
    parse_bank_account,
    parse_card,
)

CUSTOMER_TYPES = ("individual", "business")
RISK_RATINGS = ("low", "medium", "high")
KYC_STATUSES = ("not_started", "pending", "verified", "rejected", "expired")
KYC_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "not_started": frozenset({"pending"}),
    "pending": frozenset({"verified", "rejected"}),
    "verified": frozenset({"expired", "pending"}),
    "expired": frozenset({"pending"}),
    "rejected": frozenset({"pending"}),
}
INTERACTION_KINDS = ("call", "email", "note", "complaint", "chat")
STATUSES = ("active", "closed")

REASON_MAX_LENGTH = 500
"""Reasons (closing, restricting, reverting) are stored under the SYSTEM key, which is
never destroyed, so the audit trail of an erased customer still says why. They must
therefore not contain personal data; staff are told so where they type them."""


OCCURRED_AT_SKEW = timedelta(minutes=5)
"""How far ahead of our clock an interaction's time may be: the caller's clock may run fast."""


class _Unchanged(Enum):
    UNCHANGED = "unchanged"


UNCHANGED = _Unchanged.UNCHANGED
"""Default of partial-update parameters: leave the field as it is (None clears it)."""


def _reason(value: object) -> str:
    return normalise_required_text(value, "reason", max_length=REASON_MAX_LENGTH)


def _optional(value: object, normalise: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else normalise(value)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _card_state(card: Mapping[str, Any]) -> dict[str, Any]:
    """A card as the aggregate keeps it. BIN and last four are derived, not stored in
    events, so the only card number in an event is the `pan` itself (KYC key)."""
    pan = card["pan"]
    return {
        "card_id": card["card_id"],
        "pan": pan,
        "bin": card_bin(pan),
        "last4": card_last4(pan),
        "expiry_month": card["expiry_month"],
    }


def _card_event_form(card: Mapping[str, Any]) -> dict[str, Any]:
    return {"card_id": card["card_id"], "pan": card["pan"], "expiry_month": card["expiry_month"]}


def _new_cards(raw_cards: Iterable[object]) -> list[dict[str, Any]]:
    cards = []
    for raw in raw_cards:
        pan, expiry_month = parse_card(raw)
        cards.append({"card_id": str(uuid4()), "pan": pan, "expiry_month": expiry_month})
    return cards


def _new_bank_accounts(raw_accounts: Iterable[object]) -> list[dict[str, Any]]:
    return [{"account_id": str(uuid4()), "iban": parse_bank_account(raw)} for raw in raw_accounts]


class Customer(Aggregate):
    """A customer record. Create with `Customer.register(...)`."""

    # --- creation -----------------------------------------------------------------

    @classmethod
    def register(
        cls,
        *,
        type: str,  # noqa: A002 - the catalogue's field name
        full_name: str,
        portfolio: str,
        risk_rating: str,
        address: Mapping[str, Any],
        date_of_birth: str | date | None = None,
        national_id: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        kyc_status: str = "not_started",
        segment: str | None = None,
        cards: Iterable[Mapping[str, Any]] = (),
        bank_accounts: Iterable[Mapping[str, Any]] = (),
        customer_id: UUID | None = None,
    ) -> Customer:
        """A new customer from raw input; cards are {pan, expiry}, bank accounts {iban}.

        The id is a random UUID (R1.5), never derived from personal data: made here,
        or (`customer_id`) a random one the application chose earlier, e.g. one
        whose keys were made ahead (issue 15).
        """
        # `Registered` is made by the @event decorator below (mypy cannot see it).
        create: Any = cls if customer_id is None else partial(cls._create, getattr(cls, "Registered"), id=customer_id)
        return cast(Customer, create(
            type=type,
            full_name=normalise_required_text(full_name, "full_name", max_length=200),
            date_of_birth=_optional(date_of_birth, lambda v: normalise_date(v, "date_of_birth")),
            national_id=_optional(national_id, normalise_national_id),
            email=_optional(email, normalise_email),
            phone=_optional(phone, normalise_phone),
            address=normalise_address(address),
            portfolio=normalise_portfolio(portfolio),
            risk_rating=risk_rating,
            kyc_status=kyc_status,
            segment=normalise_text(segment, "segment", max_length=64, required=False),
            cards=_new_cards(cards),
            bank_accounts=_new_bank_accounts(bank_accounts),
        ))

    @event("Registered")
    def __init__(
        self,
        type: str,  # noqa: A002 - the catalogue's field name
        full_name: str,
        date_of_birth: str | None,
        national_id: str | None,
        email: str | None,
        phone: str | None,
        address: dict[str, Any],
        portfolio: str,
        risk_rating: str,
        kyc_status: str,
        segment: str | None,
        cards: list[dict[str, Any]],
        bank_accounts: list[dict[str, Any]],
    ) -> None:
        self.check_type(type)
        self.check_identity(type, full_name, date_of_birth)
        check_address(address)
        self.check_risk_rating(risk_rating)
        self.check_kyc_status(kyc_status)
        self.check_cards(cards)
        self.check_bank_accounts(bank_accounts)
        self.type = type
        self.full_name = full_name
        self.date_of_birth = date_of_birth
        self.national_id = national_id
        self.email = email
        self.phone = phone
        self.address: dict[str, Any] = dict(address)
        self.portfolio = portfolio
        self.risk_rating = risk_rating
        self.kyc_status = kyc_status
        self.segment = segment
        # Copies throughout: the aggregate must never share a list or dict with an
        # event, or a later change would rewrite an event already recorded.
        self.cards: list[dict[str, Any]] = [_card_state(card) for card in cards]
        self.bank_accounts: list[dict[str, Any]] = [dict(account) for account in bank_accounts]
        self.interactions: list[dict[str, Any]] = []
        self.status = "active"
        self.restricted = False
        self.closed_on: str | None = None
        self.consents: list[dict[str, Any]] = []

    # --- rules ------------------------------------------------------------------------

    def check_not_closed(self) -> None:
        if self.status == "closed":
            raise RelationshipClosed()

    def check_not_restricted(self) -> None:
        # R5.6: a restricted subject's data is read-only.
        if self.restricted:
            raise CustomerRestricted()

    def check_editable(self) -> None:
        self.check_not_closed()
        self.check_not_restricted()

    @staticmethod
    def check_type(customer_type: str) -> None:
        if customer_type not in CUSTOMER_TYPES:
            raise InvalidField("type", "must be individual or business")

    @staticmethod
    def check_identity(customer_type: str, full_name: str, date_of_birth: str | None) -> None:
        if not full_name:
            raise InvalidField("full_name", "is required")
        if date_of_birth is None:
            if customer_type == "individual":
                raise InvalidField("date_of_birth", "is required for an individual")
        else:
            check_date_of_birth(date_of_birth, _utc_now().date())

    @staticmethod
    def check_risk_rating(risk_rating: str) -> None:
        if risk_rating not in RISK_RATINGS:
            raise InvalidField("risk_rating", "must be low, medium or high")

    @staticmethod
    def check_kyc_status(kyc_status: str) -> None:
        if kyc_status not in KYC_STATUSES:
            raise InvalidField("kyc_status", "must be one of " + ", ".join(KYC_STATUSES))

    def check_kyc_transition(self, kyc_status: str) -> None:
        self.check_kyc_status(kyc_status)
        if kyc_status not in KYC_TRANSITIONS[self.kyc_status]:
            raise InvalidKycTransition(self.kyc_status, kyc_status)

    @staticmethod
    def check_cards(cards: list[dict[str, Any]]) -> None:
        pans = set()
        for card in cards:
            check_pan(card["pan"])
            check_expiry_month(card["expiry_month"])
            if card["pan"] in pans:
                raise InvalidField("pan", "card is already on file")
            pans.add(card["pan"])

    @staticmethod
    def check_bank_accounts(bank_accounts: list[dict[str, Any]]) -> None:
        ibans = set()
        for account in bank_accounts:
            if normalise_iban(account["iban"]) != account["iban"]:
                raise InvalidField("iban", "must be normalised")
            if account["iban"] in ibans:
                raise InvalidField("iban", "bank account is already on file")
            ibans.add(account["iban"])

    # --- contact, address, identity ---------------------------------------------------

    def change_contact(
        self,
        *,
        email: str | None | _Unchanged = UNCHANGED,
        phone: str | None | _Unchanged = UNCHANGED,
    ) -> None:
        """Change email and/or phone; an omitted one stays, None clears it."""
        self._change_contact(
            email=self.email if email is UNCHANGED else _optional(email, normalise_email),
            phone=self.phone if phone is UNCHANGED else _optional(phone, normalise_phone),
        )

    @event("ContactChanged")
    def _change_contact(self, email: str | None, phone: str | None) -> None:
        self.check_editable()
        self.email, self.phone = email, phone

    def change_address(self, address: Mapping[str, Any]) -> None:
        self._change_address(address=normalise_address(address))

    @event("AddressChanged")
    def _change_address(self, address: dict[str, Any]) -> None:
        self.check_editable()
        check_address(address)
        self.address = dict(address)

    def change_identity(
        self,
        *,
        full_name: str | _Unchanged = UNCHANGED,
        date_of_birth: str | date | None | _Unchanged = UNCHANGED,
        national_id: str | None | _Unchanged = UNCHANGED,
    ) -> None:
        """Rectify identity data (GDPR Art. 16); an omitted field stays as it is."""
        self._change_identity(
            full_name=(
                self.full_name
                if full_name is UNCHANGED
                else normalise_required_text(full_name, "full_name", max_length=200)
            ),
            date_of_birth=(
                self.date_of_birth
                if date_of_birth is UNCHANGED
                else _optional(date_of_birth, lambda v: normalise_date(v, "date_of_birth"))
            ),
            national_id=(
                self.national_id
                if national_id is UNCHANGED
                else _optional(national_id, normalise_national_id)
            ),
        )

    @event("IdentityChanged")
    def _change_identity(
        self, full_name: str, date_of_birth: str | None, national_id: str | None
    ) -> None:
        self.check_editable()
        self.check_identity(self.type, full_name, date_of_birth)
        self.full_name = full_name
        self.date_of_birth = date_of_birth
        self.national_id = national_id

    # --- classification -----------------------------------------------------------------

    @event("RiskRated")
    def rate_risk(self, risk_rating: str) -> None:
        self.check_editable()
        self.check_risk_rating(risk_rating)
        self.risk_rating = risk_rating

    def change_segment(self, segment: str | None) -> None:
        self._change_segment(segment=normalise_text(segment, "segment", max_length=64, required=False))

    @event("SegmentChanged")
    def _change_segment(self, segment: str | None) -> None:
        self.check_editable()
        self.segment = segment

    def move_portfolio(self, portfolio: str) -> None:
        self._move_portfolio(portfolio=normalise_portfolio(portfolio))

    @event("PortfolioMoved")
    def _move_portfolio(self, portfolio: str) -> None:
        self.check_editable()
        self.portfolio = portfolio

    @event("KycStatusChanged")
    def change_kyc_status(self, kyc_status: str) -> None:
        self.check_editable()
        self.check_kyc_transition(kyc_status)
        self.kyc_status = kyc_status

    # --- payment instruments ------------------------------------------------------------

    def add_card(self, card: Mapping[str, Any]) -> str:
        """Add a card from {pan, expiry}; returns its card_id. Security codes, track data
        and PIN blocks anywhere in `card` are refused (R1.7)."""
        (new_card,) = _new_cards([card])
        self._add_card(**new_card)
        return str(new_card["card_id"])

    @event("CardAdded")
    def _add_card(self, card_id: str, pan: str, expiry_month: str) -> None:
        self.check_editable()
        new_card = {"card_id": card_id, "pan": pan, "expiry_month": expiry_month}
        self.check_cards([*map(_card_event_form, self.cards), new_card])
        # Lists are replaced, never changed in place: a snapshot taken earlier may
        # still share the old list.
        self.cards = [*self.cards, _card_state(new_card)]

    @event("CardRemoved")
    def remove_card(self, card_id: str) -> None:
        self.check_editable()
        if not any(card["card_id"] == card_id for card in self.cards):
            raise CardNotFound()
        self.cards = [card for card in self.cards if card["card_id"] != card_id]

    def add_bank_account(self, bank_account: Mapping[str, Any]) -> str:
        """Add a bank account from {iban}; returns its account_id."""
        accounts = _new_bank_accounts([bank_account])
        # The event carries the account under `bank_accounts`, a KYC-key name: the
        # catalogue has no `iban` of its own, and an unlisted name would put the IBAN
        # under the profile key, outliving an erasure that keeps the KYC part.
        self._add_bank_account(bank_accounts=accounts)
        return str(accounts[0]["account_id"])

    @event("BankAccountAdded")
    def _add_bank_account(self, bank_accounts: list[dict[str, Any]]) -> None:
        self.check_editable()
        self.check_bank_accounts([*self.bank_accounts, *bank_accounts])
        self.bank_accounts = [*self.bank_accounts, *(dict(account) for account in bank_accounts)]

    @event("BankAccountRemoved")
    def remove_bank_account(self, account_id: str) -> None:
        self.check_editable()
        if not any(account["account_id"] == account_id for account in self.bank_accounts):
            raise BankAccountNotFound()
        self.bank_accounts = [a for a in self.bank_accounts if a["account_id"] != account_id]

    # --- interactions ---------------------------------------------------------------------

    def record_interaction(
        self,
        kind: str,
        channel: str,
        notes: str,
        occurred_at: datetime | str | None = None,
    ) -> str:
        """Record a call, email, note, complaint or chat; returns its interaction_id.

        The id and time are made here, before the event, so replay is deterministic.
        """
        self._record_interaction(
            interaction_id=str(uuid4()),
            kind=kind.strip().lower() if isinstance(kind, str) else kind,
            channel=self._normalise_channel(channel),
            notes=normalise_notes(notes),
            occurred_at=self._normalise_occurred_at(occurred_at),
        )
        return str(self.interactions[-1]["interaction_id"])

    @staticmethod
    def _normalise_channel(channel: object) -> str:
        # The channel is an internal field (SYSTEM key, kept after erasure), so it is a
        # code, not free text: free text there would be personal data that survives.
        if not isinstance(channel, str):
            raise InvalidField("channel", "must be a short code")
        code = channel.strip().lower()
        if not (1 <= len(code) <= 32 and all(c.isascii() and (c.isalnum() or c in "._-") for c in code)):
            raise InvalidField("channel", "must be a short code of 1 to 32 letters, digits, . _ -")
        return code

    @staticmethod
    def _normalise_occurred_at(occurred_at: datetime | str | None) -> str:
        if occurred_at is None:
            return _utc_now().isoformat()
        if isinstance(occurred_at, str):
            try:
                occurred_at = datetime.fromisoformat(occurred_at)
            except ValueError:
                raise InvalidField("occurred_at", "must be an ISO 8601 date and time") from None
        if not isinstance(occurred_at, datetime) or occurred_at.tzinfo is None:
            raise InvalidField("occurred_at", "must be a date and time with a time zone")
        if occurred_at > _utc_now() + OCCURRED_AT_SKEW:
            raise InvalidField("occurred_at", "must not be in the future")
        return occurred_at.astimezone(timezone.utc).isoformat()

    @event("InteractionRecorded")
    def _record_interaction(
        self, interaction_id: str, kind: str, channel: str, notes: str, occurred_at: str
    ) -> None:
        self.check_editable()
        if kind not in INTERACTION_KINDS:
            raise InvalidField("kind", "must be one of " + ", ".join(INTERACTION_KINDS))
        self.interactions = [
            *self.interactions,
            {
                "interaction_id": interaction_id,
                "kind": kind,
                "channel": channel,
                "notes": notes,
                "occurred_at": occurred_at,
            },
        ]

    # --- consent (R5.2) -------------------------------------------------------------------

    def record_consent(self, *, purpose: str, channel: str, granted: bool, notice_version: str,
                       source: str, actor_id: str) -> dict[str, Any]:
        """Record the customer's answer for one purpose and channel; returns the entry.

        The entry (with its time and the actor who recorded it) is made here, before
        the event, so replay is deterministic."""
        entry = new_consent(purpose=purpose, channel=channel, granted=granted,
                            notice_version=notice_version, source=source, actor_id=actor_id)
        self._record_consent(consent=entry)
        return dict(entry)

    @event("ConsentRecorded")
    def _record_consent(self, consent: dict[str, Any]) -> None:
        self.check_consent_change(bool(consent["granted"]))
        self.consents = [*self.ledger(), dict(consent)]

    def check_consent_change(self, granted: bool) -> None:
        """A withdrawal is always accepted (GDPR Art. 7(3): as easy to withdraw as to
        give), even on a closed or restricted record; a grant changes the record, so
        it follows the record's rules (R5.6: a restricted record is read-only)."""
        if granted:
            self.check_editable()

    def ledger(self) -> list[dict[str, Any]]:
        """Every consent entry, oldest first (a record saved before R5.2 has none)."""
        return [dict(entry) for entry in getattr(self, "consents", [])]

    def consents_in_force(self) -> dict[tuple[str, str], dict[str, Any]]:
        return current_consents(self.ledger())

    def may_process(self, purpose: str, channel: str) -> bool:
        """Whether processing for `purpose` on `channel` has the customer's consent now:
        the latest answer for the pair is a grant, and the record is not restricted
        (R5.6: restricted data is left out of every processing that is not required),
        nor closed (the relationship has ended)."""
        if self.restricted or self.status == "closed":
            return False
        entry = self.consents_in_force().get((purpose, channel))
        return entry is not None and entry["granted"] is True

    # --- lifecycle ---------------------------------------------------------------------------

    def close_relationship(self, reason: str) -> None:
        """End the relationship; the record becomes read-only. `reason` must hold no
        personal data (see REASON_MAX_LENGTH). A restricted customer can be closed."""
        self._close_relationship(reason=_reason(reason), timestamp=_utc_now())

    @event("RelationshipClosed")
    def _close_relationship(self, reason: str, timestamp: datetime) -> None:
        # `timestamp` is the event's own: closed_on is exactly when the event happened.
        self.check_not_closed()
        self.status = "closed"
        self.closed_on = timestamp.isoformat()

    def restrict(self, reason: str) -> None:
        """Restrict processing (R5.6, GDPR Art. 18). Allowed on a closed relationship:
        an erasure under AML hold restricts the KYC part of an ended one (R5.4)."""
        self._restrict(reason=_reason(reason))

    @event("Restricted")
    def _restrict(self, reason: str) -> None:
        self.check_not_restricted()
        self.restricted = True

    def lift_restriction(self, reason: str) -> None:
        self._lift_restriction(reason=_reason(reason))

    @event("RestrictionLifted")
    def _lift_restriction(self, reason: str) -> None:
        if not self.restricted:
            raise NotRestricted()
        self.restricted = False

    def revert_to(self, past: Customer, reason: str) -> None:
        """Bring the data fields back to those of `past` (this customer at an earlier
        version) by appending one compensating event (R4.5); history is never rewritten.

        Status, restriction and interactions are not reverted: a closure or a
        restriction is undone only by its own act, and the service history is kept.
        """
        if past.id != self.id:
            raise InvalidField("id", "must be this customer at an earlier version")
        self._revert(
            reason=_reason(reason),
            full_name=past.full_name,
            date_of_birth=past.date_of_birth,
            national_id=past.national_id,
            email=past.email,
            phone=past.phone,
            address=dict(past.address),
            portfolio=past.portfolio,
            risk_rating=past.risk_rating,
            kyc_status=past.kyc_status,
            segment=past.segment,
            cards=[_card_event_form(card) for card in past.cards],
            bank_accounts=[dict(account) for account in past.bank_accounts],
        )

    @event("Reverted")
    def _revert(
        self,
        reason: str,
        full_name: str,
        date_of_birth: str | None,
        national_id: str | None,
        email: str | None,
        phone: str | None,
        address: dict[str, Any],
        portfolio: str,
        risk_rating: str,
        kyc_status: str,
        segment: str | None,
        cards: list[dict[str, Any]],
        bank_accounts: list[dict[str, Any]],
    ) -> None:
        self.check_editable()
        self.check_identity(self.type, full_name, date_of_birth)
        check_address(address)
        self.check_risk_rating(risk_rating)
        self.check_kyc_status(kyc_status)
        self.check_cards(cards)
        self.check_bank_accounts(bank_accounts)
        self.full_name = full_name
        self.date_of_birth = date_of_birth
        self.national_id = national_id
        self.email = email
        self.phone = phone
        self.address = dict(address)
        self.portfolio = portfolio
        self.risk_rating = risk_rating
        self.kyc_status = kyc_status
        self.segment = segment
        self.cards = [_card_state(card) for card in cards]
        self.bank_accounts = [dict(account) for account in bank_accounts]

    # --- views ----------------------------------------------------------------------------------

    def to_record(self, *, include_interactions: bool = False) -> dict[str, Any]:
        """The customer as a plain dict of catalogue-named fields, for the application
        to mask by role (R2.7). Unmasked personal data: never return it as is.

        Cards carry card_id, bin, last4 and expiry_month but no PAN: a PAN is shown
        at most as BIN + last four, to everyone, always (R1.7). Code that needs the
        PAN itself (blind indexes) reads `cards` on the aggregate.
        """
        record: dict[str, Any] = {
            "id": str(self.id),
            "version": self.version,
            "created_on": self.created_on.isoformat(),
            "modified_on": self.modified_on.isoformat(),
            "type": self.type,
            "status": self.status,
            "restricted": self.restricted,
            "closed_on": self.closed_on,
            "portfolio": self.portfolio,
            "risk_rating": self.risk_rating,
            "kyc_status": self.kyc_status,
            "segment": self.segment,
            "full_name": self.full_name,
            "date_of_birth": self.date_of_birth,
            "national_id": self.national_id,
            "email": self.email,
            "phone": self.phone,
            "address": dict(self.address),
            "cards": [
                {key: card[key] for key in ("card_id", "bin", "last4", "expiry_month")}
                for card in self.cards
            ],
            "bank_accounts": [dict(account) for account in self.bank_accounts],
        }
        if include_interactions:
            record["interactions"] = [dict(item) for item in self.interactions]
        return record
