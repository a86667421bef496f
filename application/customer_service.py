"""Customer use cases on behalf of a staff member (R2.6-R2.8, R3.2).

Each method: ask the policy, act through the `Strongroom` application, shape what
the caller may see, and record the access before returning. A use case that returns
customer data always leaves an access record naming the customer ids and the field
names returned; a refusal leaves one too (PCI DSS 10.2.1). The API, the command line
and the workers call these, so they share one policy (R2.10).
"""

from __future__ import annotations

import base64
import binascii
import heapq
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from application.clock import Clock, utc_now
from application.context import acting_as, require_context
from application.customers import Strongroom
from application.errors import CustomerErased, CustomerNotFound, ValidationFailed
from application.ports import IdempotentOutcome
from application.policy import Decision, Operation, Policy, sees_restricted
from application.security import Actor
from application.throttle import Throttle
from domain.audit import AccessRecord

SEARCH_FIELDS = ("email", "phone", "national_id", "pan")
MAX_PAGE = 100
DEFAULT_PAGE = 50

# The shape of a customer view, whichever store it came from (the log or the read model).
VIEW_FIELDS = (
    "id", "version", "type", "status", "restricted", "portfolio", "risk_rating", "kyc_status",
    "segment", "created_on", "modified_on", "full_name", "date_of_birth", "national_id",
    "email", "phone", "address", "cards", "bank_accounts",
)
UPDATABLE_FIELDS = (
    "email", "phone", "address", "full_name", "date_of_birth", "national_id",
    "risk_rating", "segment", "kyc_status", "portfolio",
)

T = TypeVar("T")


def encode_cursor(customer_id: str) -> str:
    return base64.urlsafe_b64encode(customer_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor stands for; anything else is a 422, never a 500."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return str(UUID(raw.decode("ascii")))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValidationFailed({"cursor": ["is not a cursor this API gave out"]}) from None


def _shape(record: Mapping[str, Any]) -> dict[str, Any]:
    return {name: record.get(name) for name in VIEW_FIELDS}


class CustomerService:
    """The actor-aware customer use cases over one `Strongroom` application."""

    def __init__(self, app: Strongroom, *, clock: Clock = utc_now,
                 policy: Policy | None = None, throttle: Throttle | None = None) -> None:
        self.app = app
        self.policy = policy or Policy(app.access_log, clock)
        self.throttle = throttle

    # -- helpers ------------------------------------------------------------------------

    def _reachable(self, actor: Actor, operation: Operation, customer_id: str) -> tuple[dict[str, Any], Decision]:
        """The projected record, if the actor may do `operation` on it; otherwise the
        same CustomerNotFound an absent id gets (R2.6), recorded either way."""
        self.policy.require_operation(actor, operation, about=customer_id)
        try:
            record = self.app.customer_view(customer_id)
        except CustomerErased:
            # "Erased" says the customer existed: only staff whose scope reaches the
            # portfolio it was in hear it (410); anyone else hears "absent" (404, R2.6).
            portfolio = self.app.erased_portfolio(customer_id) or ""
            self.policy.require_operation(actor, operation, {"id": customer_id, "portfolio": portfolio})
            self.policy.not_found(str(operation), customer_id, reason="erased")
            raise
        except CustomerNotFound:
            self.policy.not_found(str(operation), customer_id, reason="absent")
            raise
        return record, self.policy.require_operation(actor, operation, record)

    def _viewed(self, actor: Actor, record: Mapping[str, Any], decision: Decision, *,
                kind: str = "view", **details: str) -> dict[str, Any]:
        view = self.policy.view(actor, _shape(record))
        self.app.access_log.record(
            kind=kind, customer_ids=[str(record["id"])], fields=self.policy.returned_fields(view),
            details=decision.details(**details),
        )
        return view

    # -- retried writes (R7.6) ----------------------------------------------------------------

    def once(self, actor: Actor, key: str | None, request: str, status: int,
             perform: Callable[[], T], replay: Callable[[IdempotentOutcome], T]) -> T:
        """Run a write at most once per (actor, Idempotency-Key): a retry of a write that
        committed gets `replay(outcome)`, the same key with another `request`
        fingerprint raises IdempotencyKeyReused. Keys are the actor's own, so no member
        of staff can replay (or block) another's. No key: just `perform()`."""
        if key is None or self.app.writes is None:
            return perform()
        return self.app.writes.run(actor.staff_id, key, request, status, perform, replay)

    def recorded_customer(self, actor: Actor, outcome: IdempotentOutcome) -> dict[str, Any]:
        """The customer a retried write left the first time (at `outcome.version` or
        later), read and recorded like any read; 202 while a worker has yet to
        project that version (R7.4)."""
        try:
            view = self.read(actor, outcome.resource_id)
            if int(view["version"]) >= outcome.version:
                return view
        except CustomerErased:
            raise
        except CustomerNotFound:
            pass
        if not self.app.projected_in_time(outcome.resource_id):
            raise CustomerNotFound(outcome.resource_id)
        return self.read(actor, outcome.resource_id)

    def recorded_interaction(self, actor: Actor, outcome: IdempotentOutcome) -> dict[str, Any]:
        """The interaction a retried POST recorded the first time, read (and recorded
        as a read) through the same policy as any listing."""
        listing = self.interactions(actor, outcome.resource_id)
        for item in listing["items"]:
            if str(item.get("interaction_id")) == outcome.item_id:
                return dict(item)
        raise CustomerNotFound(outcome.resource_id)

    # -- one customer ----------------------------------------------------------------------

    def create(self, actor: Actor, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Register a customer in one of the actor's portfolios; returns the masked view."""
        proposed = {"portfolio": str(fields.get("portfolio", "")).strip()}
        decision = self.policy.require_operation(actor, Operation.CREATE, proposed)
        views: list[dict[str, Any]] = []

        def access(record: Mapping[str, Any]) -> AccessRecord:
            # The view returned and its access record are made before the save, and
            # the record commits with the customer's events (one durable commit).
            view = self.policy.view(actor, _shape(record))
            views.append(view)
            return self.app.access_log.new_record(
                kind="view", customer_ids=[str(record["id"])], fields=self.policy.returned_fields(view),
                details=decision.details(operation="create"))

        self.app.register_customer(dict(fields), access=access)
        return views[0]

    def read(self, actor: Actor, customer_id: str) -> dict[str, Any]:
        """The masked view of the customer now (its `version` is the ETag)."""
        record, decision = self._reachable(actor, Operation.VIEW, customer_id)
        return self._viewed(actor, record, decision)

    def read_as_of(self, actor: Actor, customer_id: str, when: datetime) -> dict[str, Any]:
        """The masked view as it was at `when` (R4.5); scope is decided on the customer now."""
        _, decision = self._reachable(actor, Operation.VIEW_AS_OF, customer_id)
        past = self.app.customer_as_of(customer_id, when)
        return self._viewed(actor, past, decision, kind="as_of", as_of=when.isoformat())

    def update(self, actor: Actor, customer_id: str, changes: Mapping[str, Any],
               expected_version: int) -> dict[str, Any]:
        """Apply changes if the record is still at `expected_version` (else 412)."""
        unknown = sorted(set(changes) - set(UPDATABLE_FIELDS))
        if unknown:
            raise ValidationFailed({name: ["cannot be changed here"] for name in unknown})
        record, decision = self._reachable(actor, Operation.UPDATE, customer_id)
        if "portfolio" in changes:
            # Moving a customer is allowed only into a portfolio the actor also reaches.
            self.policy.require_operation(actor, Operation.UPDATE, {"portfolio": str(changes["portfolio"]).strip()})
        updated = self.app.update_customer(customer_id, dict(changes), expected_version=expected_version)
        return self._viewed(actor, updated, decision, operation="update")

    def reveal(self, actor: Actor, customer_id: str, fields: list[str], purpose: str) -> dict[str, Any]:
        """The plaintext of `fields`, for a stated purpose, after a step-up (R2.7)."""
        self.policy.require_reveal(actor, fields, purpose, about=customer_id)
        record, decision = self._reachable(actor, Operation.REVEAL, customer_id)
        self.policy.require_revealable_in(actor, fields, record)
        wanted = sorted(set(fields))
        revealed = {name: record.get(name) for name in wanted}
        # The purpose goes into the record's metadata (who, when, where and why, R3.1).
        with acting_as(replace(require_context(), purpose=purpose.strip())):
            self.app.access_log.record(
                kind="reveal", customer_ids=[str(record["id"])], fields=wanted, details=decision.details(),
            )
        return {"id": str(record["id"]), "version": record["version"], "fields": revealed}

    def history(self, actor: Actor, customer_id: str) -> dict[str, Any]:
        """What changed and who changed it, from the log: event types, times, actor ids
        and the names (never values) of the fields each event carried."""
        record, decision = self._reachable(actor, Operation.HISTORY, customer_id)
        events = []
        for stored in self.app.recorder.select_events(UUID(str(record["id"]))):
            event: Any = self.app.mapper.to_domain_event(stored)
            who = self.app.mapper.metadata(stored)  # type: ignore[attr-defined]
            names = sorted(k for k in vars(event)
                           if k not in ("originator_id", "originator_version", "timestamp", "originator_topic"))
            events.append({
                "version": stored.originator_version,
                "type": stored.topic.rsplit(".", 1)[-1],
                "at": event.timestamp.isoformat(),
                "actor_id": who.get("actor_id"),
                "via": who.get("via"),
                "fields": names,
            })
        self.app.access_log.record(
            kind="history", customer_ids=[str(record["id"])], fields=["history"], details=decision.details(),
        )
        return {"id": str(record["id"]), "events": events}

    def revert(self, actor: Actor, customer_id: str, to: datetime, reason: str) -> dict[str, Any]:
        """Bring the customer back to its state at `to` with a compensating event (R4.5)."""
        _, decision = self._reachable(actor, Operation.REVERT, customer_id)

        def in_scope(past: Mapping[str, Any]) -> None:
            # A revert may move the customer back to another portfolio: allowed only
            # into one the actor reaches, as a PATCH moving it is (403 otherwise).
            self.policy.require_operation(actor, Operation.REVERT, {"portfolio": str(past.get("portfolio"))})

        reverted = self.app.revert_customer(customer_id, to, reason, allowed=in_scope)
        return self._viewed(actor, reverted, decision, operation="revert")

    # -- interactions ------------------------------------------------------------------------

    def interactions(self, actor: Actor, customer_id: str) -> dict[str, Any]:
        record, decision = self._reachable(actor, Operation.INTERACTIONS_LIST, customer_id)
        portfolio = str(record["portfolio"])
        items = [self.policy.interaction_view(actor, i, portfolio)
                 for i in self.app.read_model.interactions(str(record["id"]))]
        self.app.access_log.record(
            kind="interactions", customer_ids=[str(record["id"])],
            fields=sorted({k for item in items for k in item}) or ["interactions"],
            details=decision.details(),
        )
        return {"id": str(record["id"]), "items": items}

    def add_interaction(self, actor: Actor, customer_id: str, *, kind: str, channel: str,
                        notes: str) -> dict[str, Any]:
        record, decision = self._reachable(actor, Operation.INTERACTIONS_CREATE, customer_id)
        created = self.app.record_interaction(str(record["id"]), kind, channel, notes)
        item = self.policy.interaction_view(actor, created, str(record["portfolio"]))
        self.app.access_log.record(
            kind="interactions", customer_ids=[str(record["id"])], fields=sorted(item),
            details=decision.details(operation="create"),
        )
        return item

    # -- the operator at the command line (issue 11, item 5) ----------------------------------

    def operator_read(self, operator: Actor, customer_id: str, purpose: str) -> dict[str, Any]:
        """The whole record, for the operator who runs `strongroom` (and holds the KEK), for
        a stated purpose: recorded as a reveal of every field shown, with the purpose in the
        record's metadata, exactly as an API reveal is. Absent or erased: recorded as
        `denied/not_found`, then CustomerNotFound or CustomerErased."""
        op = str(Operation.VIEW)
        stated = self.policy.require_operator(operator, Operation.VIEW, purpose, about=customer_id)
        try:
            record = self.app.customer_view(customer_id)
        except CustomerErased:
            self.policy.not_found(op, customer_id, reason="erased")
            raise
        except CustomerNotFound:
            self.policy.not_found(op, customer_id, reason="absent")
            raise
        shown = _shape(record)
        with acting_as(replace(require_context(), purpose=stated)):
            self.app.access_log.record(
                kind="reveal", customer_ids=[str(record["id"])], fields=self.policy.returned_fields(shown),
                details={"operation": op, "as": "operator"},
            )
        return shown

    def operator_search(self, operator: Actor, field: str, value: str, purpose: str) -> list[str]:
        """The ids of customers matching one exact value (blind index), in id order, for the
        operator and a stated purpose. One access record of one shape whether it matched
        or not (a search that finds nothing still tells the searcher something)."""
        op = str(Operation.SEARCH)
        stated = self.policy.require_operator(operator, Operation.SEARCH, purpose)
        if field not in SEARCH_FIELDS:
            raise ValidationFailed({field: ["is not searchable"]})
        found = sorted(str(record["id"]) for record in self.app.read_model.find_records(field, value,
                                                                                       limit=MAX_PAGE * 4))
        with acting_as(replace(require_context(), purpose=stated)):
            self.app.access_log.record(
                kind="search", customer_ids=found, fields=["id"] if found else [],
                details={"operation": op, "as": "operator", "by": field, "count": str(len(found))},
            )
        return found

    # -- many customers ------------------------------------------------------------------------

    def search(
        self, actor: Actor, *, field: str | None = None, value: str | None = None,
        portfolio: str | None = None, status: str | None = None,
        limit: int = DEFAULT_PAGE, cursor: str | None = None,
    ) -> dict[str, Any]:
        """Exact-match search by blind index, or a listing by portfolio and status, in
        id order, `limit` at a time; `next_cursor` continues where this page ended.

        Out-of-scope customers are simply not there; an out-of-scope portfolio lists
        as empty. Searching by a field needs the right to reveal it (R2.11), and every
        search spends one unit of the actor's budget (429 past it).

        One access record per search, of one shape whether it matched or not: the
        ids of out-of-scope matches ride in its `details`, so neither the number of
        records (the log position) nor their kind tells "exists out of scope" from
        "absent" (issue 10, item 1).
        """
        op = str(Operation.SEARCH)
        self.policy.require_operation(actor, Operation.SEARCH)
        if field is not None:
            if field not in SEARCH_FIELDS:
                raise ValidationFailed({field: ["is not searchable"]})
            self.policy.require_search_by(actor, field)
        if self.throttle is not None:
            self.throttle.search(actor.staff_id)
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationFailed({"limit": [f"must be from 1 to {MAX_PAGE}"]})
        after = decode_cursor(cursor) if cursor else None
        out_of_scope: list[str] = []
        if field is not None:
            page, more = self._matches(actor, field, value or "", portfolio, status, after, limit, out_of_scope)
            kind = "search"
        else:
            page, more = self._listing(actor, portfolio, status, after, limit)
            kind = "list"
        views, decisions = [], []
        for record, decision in page:
            views.append(self.policy.view(actor, _shape(record)))
            decisions.append(decision)
        breaking = any(d.break_glass for d in decisions)
        details = {"operation": op, "count": str(len(views))}
        if field is not None:
            details["by"] = field
            details["out_of_scope"] = ",".join(sorted(out_of_scope))
        if breaking:
            details["break_glass"] = "true"
        self.app.access_log.record(
            kind=kind, customer_ids=[v["id"] for v in views],
            fields=sorted({f for v in views for f in self.policy.returned_fields(v)}), details=details,
        )
        next_cursor = encode_cursor(str(page[-1][0]["id"])) if more and page else None
        return {"items": views, "next_cursor": next_cursor}

    def _matches(self, actor: Actor, field: str, value: str, portfolio: str | None, status: str | None,
                 after: str | None, limit: int,
                 out_of_scope: list[str]) -> tuple[list[tuple[dict[str, Any], Decision]], bool]:
        found = []
        # One read-model query for the bucket and the matches' records (issue 15, item 8).
        for record in self.app.read_model.find_records(field, value, limit=MAX_PAGE * 4):
            cid = str(record["id"])
            if record.get("restricted") and not sees_restricted(actor):
                continue  # R5.6: restricted records are left out of searches but for compliance roles
            decision = self.policy.reaches(actor, str(record["portfolio"]))
            if decision is None:
                out_of_scope.append(cid)
                continue
            if (portfolio is not None and record["portfolio"] != portfolio) or (
                status is not None and record["status"] != status
            ) or (after is not None and cid <= after):
                continue
            found.append((record, decision))
        found.sort(key=lambda pair: str(pair[0]["id"]))
        return found[:limit], len(found) > limit

    def _listing(self, actor: Actor, portfolio: str | None, status: str | None, after: str | None,
                 limit: int) -> tuple[list[tuple[dict[str, Any], Decision]], bool]:
        scope = self.policy.portfolios_in_scope(actor)
        portfolios: list[str | None]
        if portfolio is not None:
            if self.policy.reaches(actor, portfolio) is None:
                self.app.access_log.record(
                    kind="denied", outcome="not_found",
                    details={"operation": str(Operation.SEARCH), "reason": "portfolio_out_of_scope"},
                )
                return [], False
            portfolios = [portfolio]
        elif scope is None:
            portfolios = [None]
        else:
            portfolios = [*sorted(scope)]
        # One ordered page per portfolio, merged: exact, and k small queries, not a scan.
        streams = [
            self.app.read_model.page(portfolio=p, status=status, after=after, limit=limit + 1) for p in portfolios
        ]
        ids = list(_take(heapq.merge(*streams), limit + 1))
        page = []
        for cid in ids[:limit]:
            record = self.app.read_model.get(cid)
            if record is None or (record.get("restricted") and not sees_restricted(actor)):
                continue  # R5.6, as in _matches
            decision = self.policy.reaches(actor, str(record["portfolio"]))
            if decision is not None:
                page.append((record, decision))
        return page, len(ids) > limit


def _take(items: Iterator[str], n: int) -> Iterator[str]:
    for index, item in enumerate(items):
        if index >= n:
            return
        yield item
