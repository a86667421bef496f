"""Projecting the log into the customer read model, inline or apart (R1.3, R7.4).

Inline (the default, and the only way on SQLite, whose recorder cannot subscribe in
eventsourcing 9.5): the read-model rows are written inside the very transaction that
stores the events, so a caller reads its own write and a crash can never leave one
without the other. Apart (`strongroom worker`, PostgreSQL): the worker follows the
log from its tracked position; writers wait until it has caught up with them.

Rebuild replays the whole log (or a prefix of it, for point-in-time restores)
through the same row builder. Events of erased customers no longer decrypt; they are
skipped, and the erasure record purges whatever was projected before it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from application.errors import SubjectErased
from application.ports import InTransactionHook
from domain.alerts import Alert
from domain.customer import Customer
from domain.erasure import CustomerErasure
from infrastructure.alerts_table import AlertTable
from infrastructure.faults import is_store_unavailable, remaining
from infrastructure.logs import WORKER_LOGGER
from infrastructure.partitioned_rebuild import PartitionedRebuild
from infrastructure.readmodel import CustomerDirectory, CustomerRow, InteractionRow
from infrastructure.sql import Database, adapt_cursor

# What a request keeps of its deadline for answering after waiting for the worker.
ANSWER_RESERVE_SECONDS = 0.5
# The longest the worker waits between attempts while its store does not answer.
OUTAGE_PAUSE_MAX = 5.0

log = logging.getLogger(WORKER_LOGGER)


def _sleep_unless(stop: Callable[[], bool], seconds: float) -> None:
    """Sleep `seconds`, waking early when told to stop."""
    until = time.monotonic() + seconds
    while not stop() and time.monotonic() < until:
        time.sleep(min(0.1, max(0.0, until - time.monotonic())))

PAGE = 500


def _interaction_rows(customer_id: str, events: Sequence[Any]) -> list[InteractionRow]:
    return [
        InteractionRow(
            interaction_id=e.interaction_id, customer_id=customer_id, kind=e.kind,
            channel=e.channel, occurred_at=str(e.occurred_at), notes=e.notes,
        )
        for e in events
        if type(e).__name__ == "InteractionRecorded"
    ]


class _Batch:
    """Rows to write for a run of events, keyed so later states replace earlier ones."""

    def __init__(self) -> None:
        self._customers: dict[str, Customer] = {}
        self._rows: dict[str, CustomerRow] | None = None
        self.interactions: list[InteractionRow] = []
        self.purges: list[str] = []
        self.alerts: dict[str, tuple[dict[str, Any], int, int]] = {}  # id -> (record, version, position), R3.6

    def customer(self, customer: Customer, new_events: Sequence[Any], customer_id: str | None = None) -> None:
        cid = str(customer.id) if customer_id is None else customer_id
        self._customers[cid] = customer
        self._rows = None
        self.interactions.extend(_interaction_rows(cid, new_events))

    @property
    def records(self) -> dict[str, CustomerRow]:
        """Each customer's row, made once from its last state in the batch.

        Issue 15: a page of a rebuild holds many events of the same customers, and
        the row used to be made (`to_record`, the PAN map) after every one of them,
        to be replaced by the next. The batch keeps the aggregate instead (events
        mutate it in place) and makes the row when the batch is sealed or written,
        which is always before the next batch applies anything to it.
        """
        if self._rows is None:
            self._rows = {
                cid: CustomerRow(customer.to_record(), {card["card_id"]: card["pan"] for card in customer.cards})
                for cid, customer in self._customers.items()
            }
        return self._rows

    def erased(self, customer_id: str) -> None:
        self._customers.pop(customer_id, None)
        self._rows = None
        self.interactions = [r for r in self.interactions if r.customer_id != customer_id]
        self.purges.append(customer_id)

    def seal(self, directory: CustomerDirectory, position: int) -> None:
        """Seal the rows now, before `write` opens its transaction (a parallel rebuild:
        on SQLite the write lock is one for every worker, the sealing is not; issue 15)."""
        self.sealed = (directory.sealed_rows(list(self.records.values()), position),
                       directory.sealed_interactions(self.interactions, position))

    sealed: tuple[dict[str, tuple[Any, ...]], list[tuple[Any, ...]]] | None = None

    def write(
        self, directory: CustomerDirectory, cur: Any, position: int, fresh: frozenset[str] = frozenset(),
        alerts: AlertTable | None = None, *, announce: bool = True, track: bool = True,
    ) -> None:
        if alerts is not None:
            for record, version, at in self.alerts.values():
                alerts.upsert(cur, record, version, at, announce=announce)
        rows, interactions = self.sealed if self.sealed is not None else (None, None)
        directory.upsert(cur, list(self.records.values()), position, fresh=fresh, sealed=rows)
        directory.add_interactions(cur, self.interactions, position, sealed=interactions)
        for customer_id in self.purges:
            directory.purge(cur, customer_id)
        if track:  # a partition of a parallel rebuild tracks its own position instead
            directory.track(cur, position)


class CustomerProjection:
    """Implements the application's Projection port for the customer directory."""

    def __init__(self, directory: CustomerDirectory, database: Database, *, inline: bool = True,
                 alerts: AlertTable | None = None) -> None:
        self.directory = directory
        self.db = database
        self.is_inline = inline
        # The alerts table is written with each alert's events (Strongroom._record);
        # following and rebuilding the log fill it as well, so it can be made again.
        self.alerts = alerts
        # Issue 15: the rebuild over worker processes (set by the composition root), and
        # how many to use when a caller does not say (None: one process, as before).
        self.partitioned: PartitionedRebuild | None = None
        self.jobs: int | None = None

    # -- inline -----------------------------------------------------------------------------

    def inline(self, aggregates: Sequence[Any]) -> InTransactionHook | None:
        if not self.is_inline:
            return None
        batch = _Batch()
        for aggregate in aggregates:
            if isinstance(aggregate, Customer):
                batch.customer(aggregate, list(aggregate.pending_events))
            elif isinstance(aggregate, CustomerErasure):
                batch.erased(str(aggregate.customer_id))
        batch.records  # noqa: B018 - the rows made now, from the state being saved, outside the write
        dialect = self.db.dialect

        def write_with_events(raw_cursor: Any, positions: Sequence[int]) -> None:
            batch.write(self.directory, adapt_cursor(dialect, raw_cursor), max(positions))

        return write_with_events

    def projected(self, aggregates: Sequence[Any]) -> list[str]:
        ids = []
        for aggregate in aggregates:
            if isinstance(aggregate, Customer):
                ids.append(str(aggregate.id))
            elif isinstance(aggregate, CustomerErasure):
                ids.append(str(aggregate.customer_id))
        return ids

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """True once the read model has reached `position`; False when it has not in
        time. The write is committed by now: a request's deadline (less the time to
        answer) bounds the wait as well, and a store that stops answering while we
        wait means "not yet", never an error (issue 9: a committed write answered 503
        when the worker's bound and the request's deadline were both 5 s)."""
        left = remaining(math.inf)
        budget = timeout if left == math.inf else min(timeout, left - ANSWER_RESERVE_SECONDS)
        deadline = time.monotonic() + budget
        while True:
            try:
                if self.directory.position() >= position:
                    return True
            except Exception as exc:
                if not is_store_unavailable(exc):
                    raise
                return False
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    # -- following the log --------------------------------------------------------------------

    def catch_up(
        self,
        app: Any,
        *,
        upto: int | None = None,
        progress: Callable[[int], None] | None = None,
        cache: dict[str, Customer] | None = None,
        empty: bool = False,
    ) -> int:
        """Project notifications after the tracked position (up to `upto`); returns the count.

        `empty` says the read model was just emptied (a rebuild): customers not yet
        written in this run are inserted in bulk, without looking for an old row.
        """
        cache = {} if cache is None else cache
        written: set[str] = set()
        start = self.directory.position() + 1
        done = 0
        while True:
            limit = PAGE if upto is None else min(PAGE, upto - start + 1)
            if limit <= 0:
                break
            notifications = app.recorder.select_notifications(start=start, limit=limit)
            if not notifications:
                break
            batch = _Batch()
            with self.directory.keys_for_page(str(n.originator_id) for n in notifications):
                for notification in notifications:
                    self._apply(app, notification, batch, cache)
                last = notifications[-1].id
                fresh = frozenset(batch.records) - written if empty else frozenset()
                with self.db.transaction() as cur:
                    # A rebuild (or restore) announces no alert: its webhooks went out once.
                    batch.write(self.directory, cur, last, fresh, self.alerts, announce=not empty)
            written.update(batch.records)
            done += len(notifications)
            if progress is not None:
                progress(len(notifications))
            start = last + 1
        return done

    def _apply(self, app: Any, notification: Any, batch: _Batch, cache: dict[str, Customer]) -> None:
        oid = str(notification.originator_id)
        try:
            event = app.mapper.to_domain_event(notification)
            if isinstance(event, Alert.Event):
                if self.alerts is not None:
                    alert = app.repository.get(event.originator_id, version=event.originator_version)
                    batch.alerts[oid] = (alert.to_record(), alert.version, notification.id)
                return
            if isinstance(event, Customer.Event):
                customer = cache.get(oid)
                if customer is None or customer.version != event.originator_version - 1:
                    # An event with only non-personal fields still decrypts after
                    # erasure; the state before it does not, and raises here.
                    customer = (
                        None if event.originator_version == 1
                        else app.repository.get(event.originator_id, version=event.originator_version - 1)
                    )
        except SubjectErased:
            cache.pop(oid, None)
            return
        if isinstance(event, Customer.Event):
            customer = event.mutate(customer)
            cache[oid] = customer
            batch.customer(customer, [event], oid)
        elif isinstance(event, CustomerErasure.Event) and event.originator_version == 1:
            customer_id = str(event.customer_id)
            cache.pop(customer_id, None)
            batch.erased(customer_id)

    def rebuild(self, app: Any, *, upto: int | None = None, progress: Callable[[int], None] | None = None,
                jobs: int | None = None) -> int:
        """Empty the read model and project the log again, up to `upto` if given.

        With `jobs` (or `self.jobs`), the log is partitioned by customer over that many
        worker processes (infrastructure/partitioned_rebuild.py); the rows come out the same.
        """
        jobs = self.jobs if jobs is None else jobs
        if jobs is not None and self.partitioned is not None:
            return self.partitioned.run(self, app, jobs=jobs, upto=upto, progress=progress)
        with self.db.transaction() as cur:
            self.directory.clear(cur)
            if self.alerts is not None:
                self.alerts.clear(cur)
        return self.catch_up(app, upto=upto, progress=progress, empty=True)

    def run_forever(self, app: Any, *, interval: float = 0.2, stop: Callable[[], bool] = lambda: False) -> None:
        """The worker loop: follow the log until told to stop.

        A store that stops answering (a crash, a restart, a full disk) pauses the
        worker, which tries again at growing intervals up to `OUTAGE_PAUSE_MAX` and
        carries on from its tracked position when the store is back: a batch and its
        position commit together, so nothing is projected twice or skipped. Before
        this, the worker exited on the first refused connection and stayed down until
        someone restarted it (issue 9).
        """
        cache: dict[str, Customer] = {}
        pause = 0.0
        while not stop():
            try:
                projected = self.catch_up(app, cache=cache)
            except Exception as exc:
                if not is_store_unavailable(exc):
                    raise
                cache.clear()  # what was cached may not have committed
                pause = min(max(interval, 2 * pause), OUTAGE_PAUSE_MAX)
                log.warning("store unavailable; the worker will try again",
                            extra={"fields": {"exc_type": type(exc).__name__, "retry_in_seconds": pause}})
                _sleep_unless(stop, pause)
                continue
            if pause:
                log.info("store available again; the worker carries on",
                            extra={"fields": {"position": self.directory.position()}})
                pause = 0.0
            if projected == 0:
                time.sleep(interval)
            if len(cache) > 10_000:
                cache.clear()
