"""The Strongroom application: one method per use case (STYLE 2).

Each use case loads aggregates, acts through their `@event` methods, and saves. A
save is the unit of work: the events, and (on the inline projection) the read-model
rows, commit together. Queries return plain dicts, never aggregates. Encryption is
not visible here: the mapper given by the composition root seals every event under
its subject's keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Mapper, Transcoder

from application.audit import AccessLog
from application.context import require_context
from application.errors import (
    CustomerErased,
    CustomerNotFound,
    ProjectionLagging,
    SubjectErased,
    ValidationFailed,
    VersionConflict,
)
from application.idempotency import KEEP_FOR, IdempotentWrites, fingerprint, pending_write
from application.ports import (
    AlertRecords,
    CustomerReadModel,
    IdempotencyStore,
    IdempotentOutcome,
    InTransactionHook,
    Projection,
    RetentionPolicy,
    SubjectKeys,
    TimedLog,
)
from application.restore import as_utc
from application.retention import DestroyAllKeys
from domain.alerts import Alert
from domain.customer import Customer
from domain.erasure import CustomerErasure, HoldDecision
from domain.holds import InvestigationFlag, investigation_id
from domain.staff import StaffMember

# Erasure records have an id derived from the customer id (itself random, R1.5), so
# erasing the same customer twice meets the first record instead of making a second.
ERASURE_NAMESPACE = UUID("6c1b3a52-55b0-4a43-9a5c-2f1f3f0b7e11")

# Which domain method a field change goes through; each applies the domain's rules.
_CHANGES: dict[str, Callable[[Customer, dict[str, Any]], None]] = {
    "contact": lambda c, v: c.change_contact(email=v.get("email", c.email), phone=v.get("phone", c.phone)),
    "address": lambda c, v: c.change_address(v["address"]),
    "identity": lambda c, v: c.change_identity(
        full_name=v.get("full_name", c.full_name),
        date_of_birth=v.get("date_of_birth", c.date_of_birth),
        national_id=v.get("national_id", c.national_id),
    ),
    "risk_rating": lambda c, v: c.rate_risk(v["risk_rating"]),
    "segment": lambda c, v: c.change_segment(v["segment"]),
    "kyc_status": lambda c, v: c.change_kyc_status(v["kyc_status"]),
    "portfolio": lambda c, v: c.move_portfolio(v["portfolio"]),
}
_FIELD_GROUPS = {
    "email": "contact", "phone": "contact", "address": "address", "full_name": "identity",
    "date_of_birth": "identity", "national_id": "identity", "risk_rating": "risk_rating",
    "segment": "segment", "kyc_status": "kyc_status", "portfolio": "portfolio",
}


# How many times a command that names no expected version is tried when another
# writer appends to the same record first. Each try reloads the record, so the
# command applies to what is really there; with N writers at once every round lets
# at least one through, so this bounds the time spent, not who succeeds in practice.
UNCONDITIONAL_ATTEMPTS = 10

T = TypeVar("T")


def apply_changes(customer: Customer, changes: dict[str, Any]) -> None:
    """Field changes through the domain method each belongs to (the normal update path:
    a PATCH, and a rectification request, R5.3)."""
    groups: dict[str, dict[str, Any]] = {}
    for name, value in changes.items():
        groups.setdefault(_FIELD_GROUPS[name], {})[name] = value
    for group, values in groups.items():
        _CHANGES[group](customer, values)


def erasure_id(customer_id: UUID | str) -> UUID:
    return uuid.uuid5(ERASURE_NAMESPACE, str(customer_id))


def chain_hooks(*hooks: InTransactionHook | None) -> InTransactionHook | None:
    """In-transaction hooks run one after the other, in the same transaction; None
    when there are none."""
    present = [hook for hook in hooks if hook is not None]
    if len(present) <= 1:
        return present[0] if present else None

    def every(cursor: Any, positions: Sequence[int]) -> None:
        for hook in present:
            hook(cursor, positions)

    return every


class Strongroom(Application[UUID]):
    """Customer records as encrypted events, with read models and erasure."""

    name = "strongroom"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Customer: 50, StaffMember: 50}

    def __init__(
        self,
        env: dict[str, str],
        *,
        mapper_factory: Callable[[Transcoder], Mapper[UUID]],
        keys: SubjectKeys,
        read_model: CustomerReadModel,
        projection: Projection,
        retention: RetentionPolicy | None = None,
        idempotency: IdempotencyStore | None = None,
        alert_records: AlertRecords | None = None,
    ) -> None:
        # Set before super().__init__, which builds the mapper and the stores.
        self._mapper_factory = mapper_factory
        self.keys = keys
        self.read_model = read_model
        self.projection = projection
        self.retention = retention or DestroyAllKeys()
        # Retried writes answer from their first outcome (R7.6); None: not offered.
        self.writes = IdempotentWrites(idempotency) if idempotency is not None else None
        # The alerts table (R3.6), written with every alert's events; and who hears
        # at once that alerts were stored (the webhook dispatcher's `wake`).
        self.alert_records = alert_records
        self.alert_listeners: list[Callable[[], None]] = []
        try:
            super().__init__(env)
        except BaseException:
            # The store could be opened but not prepared (a lock, an outage): close
            # its connections rather than leave them to the garbage collector.
            factory = getattr(self, "factory", None)
            if factory is not None:
                factory.close()
            raise
        self.access_log = AccessLog(self)

    def construct_mapper(self) -> Mapper[UUID]:
        return self._mapper_factory(self.construct_transcoder())

    # -- the unit of work ----------------------------------------------------------------

    def _record(self, processing_event: Any) -> Any:
        """Every path that stores events comes here (`save`, `_save`, a process
        application's policy): an alert's row in the alerts table joins the
        transaction that stores its events, in both projection modes (R3.6), and
        the listeners hear of it once it is committed.

        The events and read-model rows are sealed after one look at the erasure
        ledger (`SubjectKeys.steady`), not one per sealed part and column: a
        registration used a cached key ten times, and on SQLite each look was a
        query (issue 15 item 1). Sealing under a key destroyed meanwhile writes
        ciphertext nobody can open, as it would a moment earlier."""
        with self.keys.steady():
            return self._record_steadily(processing_event)

    def _record_steadily(self, processing_event: Any) -> Any:
        alerts = [a for a in processing_event.aggregates.values() if isinstance(a, Alert)]
        if not alerts or self.alert_records is None:
            return super()._record(processing_event)
        hook = self.alert_records.in_transaction([(a.to_record(), a.version) for a in alerts])
        kwargs = processing_event.saved_kwargs
        kwargs["in_transaction"] = chain_hooks(kwargs.get("in_transaction"), hook)
        recordings = super()._record(processing_event)
        for listener in list(self.alert_listeners):
            listener()
        return recordings

    def _save(self, *aggregates: Any, in_transaction: InTransactionHook | None = None) -> int:
        """Save aggregates and their projection atomically; return the last position.

        `in_transaction` writes what the events are the record of (an approval's
        outcome, an audit record, a lockout cleared) in the same transaction.

        With a separate worker projecting (R7.4), wait up to the bound for it to reach
        the write when a read model depends on these aggregates (staff accounts do
        not: they never wait). Past the bound raise ProjectionLagging: the write is
        committed, and only the read model is behind.

        Raises VersionConflict when another writer appended to one of the records
        since it was loaded: the store refuses the second event at the same version
        (its unique key), the whole transaction rolls back (events, read-model rows
        and tracking alike), and the caller hears what a stale If-Match hears.
        """
        require_context()  # fail before doing any work, not half-way through it
        # The version each record was at when loaded, taken before save() collects
        # the pending events.
        loaded = [(a.id, a.pending_events[0].originator_version - 1) for a in aggregates if a.pending_events]
        projecting = self.projection.inline(aggregates)
        hook = self._with_outcome(projecting, aggregates)
        if in_transaction is not None:
            # The caller's own rows (an audit record, a grant, a lockout cleared)
            # commit with the events, or nothing does.
            hook = chain_hooks(hook, in_transaction)
        kwargs = {"in_transaction": hook} if hook is not None else {}
        try:
            recordings = self.save(*aggregates, **kwargs)
        except IntegrityError:
            conflict = self._conflict(loaded)
            if conflict is None:
                raise  # not a record moving on under us: not ours to rename
            raise conflict from None
        pending = pending_write()
        if pending is not None and any(isinstance(a, Customer) for a in aggregates):
            pending.saved = True
        position = max((r.notification.id for r in recordings), default=0)
        if projecting is None and position:
            projected = self.projection.projected(aggregates)
            if projected and not self.projection.wait_for(position):
                raise ProjectionLagging(position, projected)
        return position

    @staticmethod
    def _with_outcome(hook: InTransactionHook | None, aggregates: Sequence[Any]) -> InTransactionHook | None:
        """The projection's hook, plus the keyed write's outcome record when a write
        under an Idempotency-Key (or an import line's key) saves its customer: both
        commit with the events (R7.6)."""
        pending = pending_write()
        customer = next((a for a in aggregates if isinstance(a, Customer)), None)
        if pending is None or customer is None:
            return hook
        item_id = next((getattr(e, "interaction_id", None) for e in customer.pending_events
                        if type(e).__name__ == "InteractionRecorded"), None)
        outcome = IdempotentOutcome(pending.fingerprint, pending.status, str(customer.id), customer.version,
                                    None if item_id is None else str(item_id))
        remember = pending.store.remember(pending.actor_id, pending.key, outcome,
                                          pending.started_at, pending.started_at + KEEP_FOR)

        def both(cursor: Any, positions: Sequence[int]) -> None:
            remember(cursor, positions)
            if hook is not None:
                hook(cursor, positions)

        return both

    def _conflict(self, loaded: Sequence[tuple[UUID, int]]) -> VersionConflict | None:
        """The first record whose stored version is no longer the one it was loaded at."""
        for originator_id, version in loaded:
            head = self.recorder.select_events(originator_id, desc=True, limit=1)
            stored = head[0].originator_version if head else 0
            if stored != version:
                return VersionConflict(originator_id, stored)
        return None

    @staticmethod
    def _unconditionally(command: Callable[[], T]) -> T:
        """Run a command that names no expected version, again on a fresh load if
        another writer got to the record first (a bounded number of times)."""
        for _ in range(UNCONDITIONAL_ATTEMPTS - 1):
            try:
                return command()
            except VersionConflict:
                continue
        return command()

    def _customer(self, customer_id: UUID | str) -> Customer:
        try:
            cid = UUID(str(customer_id))
        except ValueError:
            raise CustomerNotFound(customer_id) from None
        try:
            customer: Any = self.repository.get(cid)
        except AggregateNotFoundError:
            raise CustomerNotFound(customer_id) from None
        except SubjectErased:
            raise CustomerErased(customer_id) from None
        if not isinstance(customer, Customer):
            raise CustomerNotFound(customer_id)
        return customer

    # -- customers ----------------------------------------------------------------------

    def register_customer(self, fields: dict[str, Any], *,
                          access: Callable[[dict[str, Any]], Aggregate] | None = None) -> dict[str, Any]:
        """Create a customer from validated fields; returns its record.

        The id comes with its keys already durable (SubjectKeys.reserve_subject), so
        the save commits only the events and their read model (issue 15). `access`
        makes, from the new record, the access record of what the caller returns; it
        is saved in the same transaction (R3.2: the record commits with the action,
        and one durable commit serves both)."""
        customer_id = self.keys.reserve_subject()
        try:
            customer = Customer.register(**fields, customer_id=customer_id)
        except BaseException:
            self.keys.release_subject(customer_id)  # refused input: no event names the id
            raise
        record = customer.to_record()
        self._save(customer, *([access(record)] if access is not None else []))
        return record

    def import_customer(self, fields: dict[str, Any], *, batch: str = "") -> tuple[str, bool]:
        """Register a customer from one import line, at most once per line: returns
        its id and whether this call created it (False: an earlier run did).

        The line's key is the SHA-256 of the operator's batch name and the line's
        validated fields, so running the same file again (after a crash, say) finds
        each line's first outcome instead of registering the customer twice (R7.6).
        """
        context = require_context()
        if self.writes is None:
            return str(self.register_customer(fields)["id"]), True
        request = fingerprint("import", batch, fields)
        created = True

        def reused(outcome: IdempotentOutcome) -> dict[str, Any]:
            nonlocal created
            created = False
            return {"id": outcome.resource_id}

        record = self.writes.run(str(context.actor_id), f"import:{request}", request, 201,
                                 lambda: self.register_customer(fields), reused)
        return str(record["id"]), created

    def get_customer(self, customer_id: UUID | str) -> dict[str, Any]:
        """The customer's current record, from the log (raises CustomerErased if erased)."""
        return self._customer(customer_id).to_record()

    def update_customer(
        self, customer_id: UUID | str, changes: dict[str, Any], *, expected_version: int | None = None
    ) -> dict[str, Any]:
        """Apply field changes through the domain's rules, all or nothing.

        With `expected_version`, a record at any other version, or one another writer
        changes first, raises VersionConflict; without it the change is tried again
        on the record as it now is.
        """

        def update() -> dict[str, Any]:
            customer = self._customer(customer_id)
            if expected_version is not None and customer.version != expected_version:
                raise VersionConflict(customer_id, customer.version)
            apply_changes(customer, changes)
            self._save(customer)
            return customer.to_record()

        return update() if expected_version is not None else self._unconditionally(update)

    def record_interaction(
        self, customer_id: UUID | str, kind: str, channel: str, notes: str
    ) -> dict[str, Any]:
        def record() -> dict[str, Any]:
            customer = self._customer(customer_id)
            interaction_id = customer.record_interaction(kind=kind, channel=channel, notes=notes)
            self._save(customer)
            return next(i for i in customer.interactions if i["interaction_id"] == interaction_id)

        return self._unconditionally(record)

    def close_relationship(self, customer_id: UUID | str, reason: str) -> dict[str, Any]:
        return self._change(customer_id, lambda customer: customer.close_relationship(reason))

    def add_card(self, customer_id: UUID | str, card: dict[str, Any]) -> dict[str, Any]:
        return self._change(customer_id, lambda customer: customer.add_card(card))

    def add_bank_account(self, customer_id: UUID | str, iban: str) -> dict[str, Any]:
        return self._change(customer_id, lambda customer: customer.add_bank_account({"iban": iban}))

    def _change(self, customer_id: UUID | str, act: Callable[[Customer], Any]) -> dict[str, Any]:
        """Load, act, save, answer the record; again on a fresh load after a conflict."""

        def change() -> dict[str, Any]:
            customer = self._customer(customer_id)
            act(customer)
            self._save(customer)
            return customer.to_record()

        return self._unconditionally(change)

    # -- one customer in time (R4.5) --------------------------------------------------------

    def _customer_at(self, customer_id: UUID | str, when: datetime) -> Customer:
        try:
            cid = UUID(str(customer_id))
        except ValueError:
            raise CustomerNotFound(customer_id) from None
        log: TimedLog = self.recorder  # type: ignore[assignment]
        version = log.version_at(cid, as_utc(when))
        if version is None:
            raise CustomerNotFound(customer_id)  # it did not exist yet
        try:
            past: Any = self.repository.get(cid, version=version)
        except AggregateNotFoundError:
            raise CustomerNotFound(customer_id) from None
        except SubjectErased:
            # A destroyed key is destroyed for every past moment too (R4.6).
            raise CustomerErased(customer_id) from None
        if not isinstance(past, Customer):
            raise CustomerNotFound(customer_id)
        return past

    def customer_as_of(self, customer_id: UUID | str, when: datetime) -> dict[str, Any]:
        """The customer's record as it was at `when` (raises CustomerNotFound if it
        did not exist yet, CustomerErased if it has been erased since)."""
        return self._customer_at(customer_id, when).to_record()

    def revert_customer(self, customer_id: UUID | str, to: datetime, reason: str,
                        allowed: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
        """Bring the customer's data back to its state at `to` by appending one
        compensating `Reverted` event; history is never rewritten (R4.5).

        `allowed` is shown the state reverted to before anything is saved, and raises
        to refuse it (the caller's scope must reach it, as for a PATCH)."""
        require_context()

        def revert() -> dict[str, Any]:
            customer = self._customer(customer_id)
            try:
                past = self._customer_at(customer_id, to)
            except CustomerNotFound:
                raise ValidationFailed({"to": ["is before the customer existed"]}) from None
            if allowed is not None:
                allowed(past.to_record())
            customer.revert_to(past, reason)
            self._save(customer)
            return customer.to_record()

        return self._unconditionally(revert)

    # -- queries over the read model ----------------------------------------------------

    def find_customers(self, field: str, value: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """Exact-match search through the blind index (R1.3)."""
        return self.read_model.find_records(field, value, limit=limit)

    def list_customers(
        self, *, portfolio: str | None = None, status: str | None = None,
        after: str | None = None, limit: int = 50,
    ) -> list[dict[str, Any]]:
        records = []
        for cid in self.read_model.page(portfolio=portfolio, status=status, after=after, limit=limit):
            record = self.read_model.get(cid)
            if record is not None:
                records.append(record)
        return records

    def customer_view(self, customer_id: UUID | str) -> dict[str, Any]:
        """The projected record (what queries read), or CustomerNotFound/CustomerErased."""
        record = self.read_model.get(str(customer_id))
        if record is None:
            if self.is_erased(customer_id):
                raise CustomerErased(customer_id)
            raise CustomerNotFound(customer_id)
        return record

    def projected_in_time(self, customer_id: str) -> bool:
        """For a retry of a write that committed: True once the read model shows the
        customer; ProjectionLagging (202) when the log holds it but a worker has yet
        to project it within the bound; False when the log has no such customer.

        Without it, retries racing the first attempt (the same Idempotency-Key) got
        404 for a customer the first attempt had just created (issue 9, worker mode).
        """
        try:
            originator = UUID(str(customer_id))
        except ValueError:
            return False
        if not self.recorder.select_events(originator, limit=1):
            return False
        position = self.recorder.max_notification_id() or 0
        if not self.projection.wait_for(position):
            raise ProjectionLagging(position, [str(customer_id)])
        return True

    def interactions(self, customer_id: UUID | str) -> list[dict[str, Any]]:
        self.customer_view(customer_id)
        return self.read_model.interactions(str(customer_id))

    # -- erasure --------------------------------------------------------------------------

    def erased_portfolio(self, customer_id: UUID | str) -> str | None:
        """The portfolio an erased customer was in (None when its erasure did not say)."""
        try:
            erasure: Any = self.repository.get(erasure_id(customer_id))
        except AggregateNotFoundError:
            return None
        return getattr(erasure, "portfolio", None)

    def is_erased(self, customer_id: UUID | str) -> bool:
        try:
            self.repository.get(erasure_id(customer_id))
        except AggregateNotFoundError:
            return False
        return True

    def erasure_record(self, customer_id: UUID | str) -> dict[str, Any] | None:
        """The customer's erasure as recorded (keys destroyed, kept and why, hold end),
        or None when it was never erased."""
        try:
            erasure: Any = self.repository.get(erasure_id(customer_id))
        except AggregateNotFoundError:
            return None
        return dict(erasure.to_record())

    def under_investigation(self, customer_id: UUID | str) -> bool:
        """Whether a compliance officer has an AML investigation open on the customer."""
        try:
            flag: Any = self.repository.get(investigation_id(customer_id))
        except AggregateNotFoundError:
            return False
        return bool(flag.under_investigation)

    def set_investigation(self, customer_id: UUID | str, *, open_: bool, reason: str) -> dict[str, Any]:
        """Open or close the AML investigation flag of a customer, a recorded decision
        (R5.4). The customer must exist (or have been erased: a hold may begin after
        the profile is gone, and the KYC part it keeps is what is investigated)."""
        require_context()
        try:
            cid = str(UUID(str(customer_id)))
        except ValueError:
            raise CustomerNotFound(customer_id) from None
        if not self.recorder.select_events(UUID(cid), limit=1):
            raise CustomerNotFound(customer_id)
        flag: Any
        try:
            flag = self.repository.get(investigation_id(cid))
        except AggregateNotFoundError:
            if not open_:
                raise ValidationFailed({"under_investigation": ["no investigation is open"]}) from None
            flag = InvestigationFlag.open_for(cid, reason)
        else:
            # A flag already in the asked state raises InvalidField (422).
            flag.reopen(reason) if open_ else flag.close(reason)
        self._save(flag)
        return dict(flag.to_record())

    def plan_erasure(self, customer_id: UUID | str, *, now: datetime) -> HoldDecision | None:
        """What erasing the customer now would destroy and keep (None: already erased)."""
        if self.is_erased(customer_id):
            return None
        try:
            customer: Customer | None = self._customer(customer_id)
        except CustomerErased:
            customer = None
        return self.retention.decide(customer, under_investigation=self.under_investigation(customer_id), now=now)

    def erase_customer(self, customer_id: UUID | str, reason: str, *, now: datetime | None = None) -> dict[str, Any]:
        """Crypto-shred a customer (R5.4): record the erasure, purge, destroy keys.

        The retention policy decides what goes now: the profile key always; the KYC
        key unless an AML hold keeps it (then the record says which holds and until
        when, and the retention run destroys it when the hold ends, R5.5). `now` is
        the caller's clock (tests move it).

        The erasure record is written first (with the read-model purge in the same
        transaction) and the keys destroyed after; if destruction fails the command
        fails and running it again finishes the job, so a recorded erasure can never
        be left with live keys unnoticed.
        """
        require_context()
        when = now or datetime.now(UTC)
        try:
            customer: Customer | None = self._customer(customer_id)
        except CustomerErased:
            customer = None  # keys already gone: finish recording below
        erasure: Any
        purged = True
        position: int | None = None
        try:
            erasure = self.repository.get(erasure_id(customer_id))
        except AggregateNotFoundError:
            decision = self.retention.decide(customer, under_investigation=self.under_investigation(customer_id),
                                             now=when)
            erasure = CustomerErasure.record(
                id=erasure_id(customer_id), customer_id=str(customer_id), reason=reason,
                keys_destroyed=decision.destroy, kept=decision.kept, hold_until=decision.hold_until,
                portfolio=None if customer is None else customer.portfolio,
            )
            try:
                position = self._save(erasure)
            except VersionConflict:
                # Another request recorded this erasure first: finish the job with its record.
                erasure = self.repository.get(erasure_id(customer_id))
            except ProjectionLagging as lag:
                # Recorded; the worker purges the read model when it gets there. The
                # keys go now, whatever the read model's pace.
                purged = False
                position = lag.position
        self.keys.destroy(str(customer_id), list(erasure.keys_destroyed))
        return {
            "customer_id": str(customer_id),
            "erasure_id": str(erasure.id),
            "keys_destroyed": list(erasure.keys_destroyed),
            "kept": {kind: list(reasons) for kind, reasons in erasure.kept.items()},
            "hold_until": erasure.hold_until,
            "status": erasure.status,
            "recorded_at": erasure.created_on.isoformat(),
            # The log position of the erasure record (None: recorded by an earlier call).
            "position": position,
            # False when a separate worker has yet to purge the read model (R7.4).
            "read_model_purged": purged,
        }

    def end_hold(self, customer_id: UUID | str, reason: str) -> dict[str, Any]:
        """The hold on a kept KYC key ended: record its destruction, then destroy it
        (R5.5). Safe to repeat: a recorded destruction whose key is still live (a run
        killed between the two) is finished, never recorded twice."""
        require_context()
        erasure: Any = self.repository.get(erasure_id(customer_id))
        position: int | None = None
        if erasure.kyc_retained:
            erasure.record_kyc_key_destroyed(reason)
            try:
                position = self._save(erasure)
            except ProjectionLagging as lag:
                position = lag.position
        self.keys.destroy(str(customer_id), list(erasure.keys_destroyed))
        return {**erasure.to_record(), "position": position}
