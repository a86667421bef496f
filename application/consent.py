"""The consent ledger (R5.2) and the processing that needs it.

`ConsentLedger.may_process(customer_id, purpose, channel)` is the one answer to "may
we do PURPOSE on CHANNEL for this customer": the customer's latest answer for that
pair is a grant, and the record is neither restricted (R5.6) nor closed, nor erased.
Every processing below asks it, customer by customer, and leaves out whoever it says
no for: the marketing contact list, the data-sharing export to partners and the
profiling run. A withdrawal, an objection or an opt-out (R5.3) is a withdrawal entry
in the ledger, so it stops all three the moment it is saved.

The ledger itself lives in the customer's own stream (`Customer.record_consent`),
under the profile key: erasure destroys it with the profile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from application.clock import Clock, utc_now
from application.context import require_context
from application.customers import Strongroom
from application.errors import CustomerErased, CustomerNotFound, ValidationFailed
from application.policy import Decision, Operation, Policy
from application.security import Actor, Permission
from domain.consent import CONSENT_PURPOSES, check_purpose_channel
from domain.customer import Customer
from domain.errors import DomainError

PAGE = 200

# What each processing hands over per customer, and the purpose and channel it needs.
CONTACT_FIELDS = {"email": "email", "phone": "phone", "sms": "phone", "post": "address"}


@dataclass(frozen=True)
class Processed:
    """What one consented processing produced: the rows, and who was left out and why."""

    purpose: str
    channel: str
    items: list[dict[str, Any]]
    left_out: int


class ConsentLedger:
    """Consents per customer, purpose and channel, and the processing that asks them."""

    def __init__(self, app: Strongroom, policy: Policy, clock: Clock = utc_now) -> None:
        self.app = app
        self.policy = policy
        self.clock = clock

    # -- the one question ----------------------------------------------------------------

    def may_process(self, customer_id: str, purpose: str, channel: str) -> bool:
        """Whether PURPOSE on CHANNEL may be done for this customer now (R5.2, R5.6).

        No for an unknown purpose or channel, an absent or erased customer, a restricted
        or closed record, and a pair never granted or last withdrawn. Fails closed."""
        try:
            wanted, on = check_purpose_channel(purpose, channel)
        except DomainError:
            return False
        try:
            customer = self.app._customer(customer_id)
        except (CustomerNotFound, CustomerErased):
            return False
        return customer.may_process(wanted, on)

    # -- the ledger ------------------------------------------------------------------------

    def _reach(self, actor: Actor, operation: Operation, customer_id: str) -> tuple[dict[str, Any], Decision]:
        """The projected record if the actor may do `operation` on it, else the 404 an
        absent id gets (R2.6), recorded either way (as CustomerService does)."""
        self.policy.require_operation(actor, operation, about=customer_id)
        try:
            record = self.app.customer_view(customer_id)
        except CustomerErased:
            self.policy.not_found(str(operation), customer_id, reason="erased")
            raise
        except CustomerNotFound:
            self.policy.not_found(str(operation), customer_id, reason="absent")
            raise
        return record, self.policy.require_operation(actor, operation, record)

    def consents(self, actor: Actor, customer_id: str) -> dict[str, Any]:
        """The customer's whole ledger (oldest first) and what is in force now; the read
        is recorded like any read of customer data."""
        record, decision = self._reach(actor, Operation.CONSENTS_LIST, customer_id)
        customer = self.app._customer(str(record["id"]))
        ledger = customer.ledger()
        self.app.access_log.record(kind="consents", customer_ids=[str(record["id"])], fields=["consents"],
                                   details=decision.details(operation="consents_list"))
        return {"id": str(record["id"]), "items": ledger, "in_force": _in_force(customer)}

    def record(self, actor: Actor, customer_id: str, *, purpose: str, channel: str, granted: bool,
               notice_version: str, source: str) -> dict[str, Any]:
        """Record one answer; returns the entry. A grant on a restricted or closed record is
        refused by the domain's rule; a withdrawal always goes through (GDPR Art. 7(3))."""
        record, decision = self._reach(actor, Operation.CONSENTS_RECORD, customer_id)
        entry = self.withdraw_or_grant(str(record["id"]), purpose=purpose, channel=channel, granted=granted,
                                       notice_version=notice_version, source=source)
        self.app.access_log.record(kind="consents", customer_ids=[str(record["id"])], fields=["consents"],
                                   details=decision.details(operation="consents_record"))
        return entry

    def withdraw_or_grant(self, customer_id: str, *, purpose: str, channel: str, granted: bool,
                          notice_version: str, source: str) -> dict[str, Any]:
        """Append one entry to the ledger, as the acting context (no policy: callers decide)."""
        actor_id = require_context().actor_id

        def append() -> dict[str, Any]:
            customer = self.app._customer(customer_id)
            entry = customer.record_consent(purpose=purpose, channel=channel, granted=granted,
                                            notice_version=notice_version, source=source, actor_id=actor_id)
            self.app._save(customer)
            return entry

        return self.app._unconditionally(append)

    # -- the processing that needs consent ---------------------------------------------------

    def marketing_contacts(self, actor: Actor, channel: str, *, portfolio: str | None = None) -> Processed:
        """The marketing contact list for `channel`: each customer who may be contacted
        there, with the one contact detail the channel needs (R5.2)."""
        if channel not in CONTACT_FIELDS:
            raise ValidationFailed({"channel": ["must be one of " + ", ".join(CONTACT_FIELDS)]})
        field = CONTACT_FIELDS[channel]
        return self._process(actor, "marketing_contact", channel, portfolio,
                             lambda c: {"customer_id": str(c.id), field: _copy(getattr(c, field))})

    def data_sharing_export(self, actor: Actor, *, portfolio: str | None = None) -> Processed:
        """The file handed to partners: name and email of each customer who agreed to it."""
        return self._process(actor, "data_sharing", "online", portfolio,
                             lambda c: {"customer_id": str(c.id), "full_name": c.full_name, "email": c.email})

    def profiling_run(self, actor: Actor, *, portfolio: str | None = None) -> Processed:
        """A marketing profile per consenting customer, from their record."""
        def profile(c: Customer) -> dict[str, Any]:
            kinds: dict[str, int] = {}
            for item in c.interactions:
                kinds[str(item["kind"])] = kinds.get(str(item["kind"]), 0) + 1
            engaged = "engaged" if len(c.interactions) >= 3 else "quiet"
            return {"customer_id": str(c.id), "segment": c.segment, "risk_rating": c.risk_rating,
                    "profile": f"{c.type}/{engaged}", "interactions": kinds}

        return self._process(actor, "profiling", "online", portfolio, profile)

    def _process(self, actor: Actor, purpose: str, channel: str, portfolio: str | None,
                 row: Callable[[Customer], dict[str, Any]]) -> Processed:
        operation = f"processing:{purpose}"
        self.policy.require(actor, Permission.CUSTOMERS_EXPORT, operation=operation)
        items, left_out = [], 0
        for customer_id in self._in_scope(actor, portfolio):
            if not self.may_process(customer_id, purpose, channel):
                left_out += 1
                continue
            try:
                items.append(row(self.app._customer(customer_id)))
            except (CustomerNotFound, CustomerErased):
                left_out += 1
        fields = sorted({k for item in items for k in item if k != "customer_id"})
        self.app.access_log.record(
            kind="export", customer_ids=[str(item["customer_id"]) for item in items], fields=fields,
            details={"operation": operation, "channel": channel, "count": str(len(items)),
                     "left_out": str(left_out)},
        )
        return Processed(purpose, channel, items, left_out)

    def _in_scope(self, actor: Actor, portfolio: str | None) -> Iterator[str]:
        scope = self.policy.portfolios_in_scope(actor, Permission.CUSTOMERS_EXPORT)
        if portfolio is not None:
            if scope is not None and portfolio not in scope:
                return
            portfolios: list[str | None] = [portfolio]
        else:
            portfolios = [None] if scope is None else [*sorted(scope)]
        for chosen in portfolios:
            after: str | None = None
            while True:
                ids = self.app.read_model.page(portfolio=chosen, after=after, limit=PAGE)
                yield from ids
                if len(ids) < PAGE:
                    break
                after = ids[-1]


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


def _in_force(customer: Customer) -> list[dict[str, Any]]:
    """Every purpose and channel of the vocabulary, with what is in force now."""
    current = customer.consents_in_force()
    rows = []
    for purpose in CONSENT_PURPOSES.values():
        for channel in purpose.channels:
            entry = current.get((purpose.name, channel))
            rows.append({
                "purpose": purpose.name, "channel": channel,
                "granted": bool(entry and entry["granted"]),
                "may_process": customer.may_process(purpose.name, channel),
                "recorded_at": None if entry is None else entry["recorded_at"],
                "notice_version": None if entry is None else entry["notice_version"],
            })
    return rows

