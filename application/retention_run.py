"""The retention run (R5.5): destroy the keys whose retention has ended.

Per the field catalogue's rules (domain/catalogue.py, R5.1):

* profile data (contact, notes, preferences: marketing and service) is kept
  `profile_years` after the last contact with a customer whose relationship ended;
  then the customer is erased, under the same AML rule as any erasure (R5.4): the
  KYC key goes too when the AML period after the relationship has also ended, else it
  is kept and scheduled;
* a kept KYC key goes when its hold ends (the erasure record's `hold_until`), unless
  a compliance officer's investigation is open.

Safe to run twice or to kill half-way: each customer's step is recorded (the erasure
record, or the KYC destruction on it) before its key is destroyed, and a recorded
step whose key is still live is finished by the next run; a destroyed key is entered
once in the ledger (its primary key), whatever happens. Each step is an event in the
chained log, made by the operator who ran it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from application.clock import Clock, utc_now
from application.customers import Strongroom
from application.ports import RetentionCandidates
from application.retention import DAYS_PER_YEAR
from domain.erasure import CustomerErasure

PROFILE_REASON = "retention: profile data kept 2 years after the last contact has ended"
KYC_REASON = "retention: the AML hold on the KYC data has ended"
_PAGE = 1000


@dataclass(frozen=True)
class RetentionAction:
    """One customer's step: `erase` (the profile retention ended), `destroy_kyc` (a
    hold ended) or `finish` (a step recorded by a run that stopped before its keys)."""

    customer_id: str
    action: str
    keys: tuple[str, ...]
    hold_until: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "action": self.action, "keys": list(self.keys),
                "hold_until": self.hold_until}


class RetentionRun:
    """One pass over the customers whose retention may have ended."""

    def __init__(self, app: Strongroom, candidates: RetentionCandidates, *, profile_years: float,
                 clock: Clock = utc_now) -> None:
        self.app = app
        self.candidates = candidates
        self.profile_retention = timedelta(days=profile_years * DAYS_PER_YEAR)
        self.clock = clock

    def run(self, *, dry_run: bool = False, now: datetime | None = None,
            progress: Callable[[RetentionAction], None] | None = None) -> list[RetentionAction]:
        """Do (or, dry, only say) every step due now (the run's clock, or `now`);
        `progress` hears each as it is done."""
        now = now or self.clock()
        done = []
        for action in self._due(now, dry_run=dry_run):
            done.append(action)
            if progress is not None:
                progress(action)
        return done

    def _due(self, now: datetime, *, dry_run: bool) -> Iterator[RetentionAction]:
        for customer_id in self.candidates.last_contact_before(now - self.profile_retention):
            if dry_run:
                decision = self.app.plan_erasure(customer_id, now=now)
                if decision is None:
                    continue
                destroy, hold_until = tuple(decision.destroy), decision.hold_until
                yield RetentionAction(customer_id, "erase", destroy,
                                      None if hold_until is None else hold_until.isoformat())
                continue
            # The erasure decides the hold itself (one load of the customer, not two).
            result = self.app.erase_customer(customer_id, PROFILE_REASON, now=now)
            yield RetentionAction(customer_id, "erase", tuple(result["keys_destroyed"]), result["hold_until"])
        for erasure in self._erasures():
            customer_id = str(erasure.customer_id)
            if erasure.kyc_retained and self._hold_ended(erasure, now):
                if not dry_run:
                    self.app.end_hold(customer_id, KYC_REASON)
                yield RetentionAction(customer_id, "destroy_kyc", ("kyc",))
                continue
            status = self.app.keys.status(customer_id)
            live = tuple(k for k in erasure.keys_destroyed if status.get(k) == "active")
            if live:
                if not dry_run:
                    self.app.keys.destroy(customer_id, list(live))
                yield RetentionAction(customer_id, "finish", live)

    def _hold_ended(self, erasure: Any, now: datetime) -> bool:
        until = getattr(erasure, "hold_until", None)
        if until is None or datetime.fromisoformat(until) > now:
            return False
        return not self.app.under_investigation(erasure.customer_id)

    def _erasures(self) -> Iterator[Any]:
        """Every erasure record, from the log's notifications of their creation (their
        ids are all the run needs from the log; each record is then loaded)."""
        topic = get_topic(CustomerErasure.Recorded)
        start = 1
        while True:
            page = self.app.recorder.select_notifications(start, _PAGE, topics=[topic])
            for notification in page:
                yield self.app.repository.get(UUID(str(notification.originator_id)))
            if len(page) < _PAGE:
                return
            start = page[-1].id + 1
