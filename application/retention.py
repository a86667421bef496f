"""Which keys an erasure destroys now (R5.4): the retention policies.

`AmlRetention` is the installation's policy (the composition root gives it the
`aml_retention_years` setting): the profile key goes at once; the KYC key is kept,
restricted, while the AML retention period after the relationship runs, or while a
compliance officer's investigation is open, and the retention run destroys it when
the hold ends (R5.5). `DestroyAllKeys` is the policy of an application built with no
retention (no hold ever applies).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.customer import Customer
from domain.erasure import KEY_KINDS, HoldDecision, aml_hold

DAYS_PER_YEAR = 365.25


class DestroyAllKeys:
    """No legal hold: an erasure destroys the profile and the KYC key."""

    def decide(self, customer: Customer | None, *, under_investigation: bool, now: datetime) -> HoldDecision:
        return HoldDecision(destroy=KEY_KINDS, kept={}, hold_until=None)


class AmlRetention:
    """Keep the KYC key for `years` after the relationship ends, or while an AML
    investigation is open (R5.4, GDPR Art. 17(3)(b))."""

    def __init__(self, years: float) -> None:
        self.retention = timedelta(days=years * DAYS_PER_YEAR)

    def decide(self, customer: Customer | None, *, under_investigation: bool, now: datetime) -> HoldDecision:
        if customer is None:
            # Keys already gone and only the record missing: nothing is left to hold.
            return HoldDecision(destroy=KEY_KINDS, kept={}, hold_until=None)
        closed_on = None if customer.closed_on is None else datetime.fromisoformat(customer.closed_on)
        if closed_on is not None and closed_on.tzinfo is None:
            closed_on = closed_on.replace(tzinfo=UTC)
        return aml_hold(closed_on=closed_on, under_investigation=under_investigation, now=now,
                        retention=self.retention)
