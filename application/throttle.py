"""Throttling (R2.11): searches per actor; logins per address and per account, in front
of the PCI DSS 8.3.4 lockout; a bounded number of password checks at once.

* **Search.** An exact-match search is an oracle: an agent who sees `492938••••••6016`
  can try the 10^5 Luhn-valid middles one by one. Every search spends one unit of
  the actor's budget (per minute and per hour); the 61st in a minute answers 429
  with `Retry-After`, so such an enumeration takes weeks and shows in the audit trail.
* **Login per address.** Failed logins from one address spend its budget (a few at
  once, then one per long interval), so one address reaches 429 long before the 10
  failures that lock an account: it cannot keep `admin` locked (issue 10, item 8).
  Throttled attempts are refused before the password is checked and count towards
  no lockout.
* **Login per account.** Every attempt on one username, known or not (so a 429 says
  nothing about whether the account exists), spends the username's budget: a
  distributed guesser is slowed before the lockout stops it.

The counters live in the database (`RateLimiter`, R7.4), so every API process
shares one budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from application.errors import ApplicationError
from application.ports.throttle import Limit, RateLimiter


class RateLimited(ApplicationError):
    """Too many requests: 429, with `Retry-After` (whole seconds, at least 1)."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"too many requests; try again in {self.retry_after} s")


class PasswordCheckBusy(ApplicationError):
    """Every password-hashing slot is taken: 503 at once, with `Retry-After`, rather
    than a queue that would hold every request thread (and /healthz) behind argon2."""

    retry_after = 1

    def __init__(self) -> None:
        super().__init__("too many sign-ins at once; try again in a second")


@dataclass(frozen=True)
class ThrottleLimits:
    """The budgets (each a list of limits that must all allow)."""

    search: Sequence[Limit] = field(default_factory=lambda: (Limit(60, 60), Limit(600, 3600)))
    # 5 failures at once, then one per 40 minutes: the R2.3 lockout forgets failures
    # 30 minutes apart, so one address alone never reaches its 10 (item 8).
    login_failures_per_address: Sequence[Limit] = field(default_factory=lambda: (Limit(1, 2400, burst=5),))
    # 20 attempts at once (the lockout's 10 fit), then one per 30 s, per username.
    login_attempts_per_account: Sequence[Limit] = field(default_factory=lambda: (Limit(1, 30, burst=20),))


class Throttle:
    """The R2.11 budgets over shared counters."""

    def __init__(self, limiter: RateLimiter, limits: ThrottleLimits | None = None) -> None:
        self.limiter = limiter
        self.limits = limits or ThrottleLimits()

    def search(self, staff_id: str) -> None:
        """Spend one search of the actor's budget, or raise RateLimited."""
        wait = self.limiter.acquire("search", staff_id, self.limits.search)
        if wait is not None:
            raise RateLimited(wait)

    def login_attempt(self, username: str, address: str | None) -> None:
        """Before any password is checked: the address must have failures to spare,
        and the username an attempt (spent here, whoever it names)."""
        if address:
            wait = self.limiter.blocked("login_address", address, self.limits.login_failures_per_address)
            if wait is not None:
                raise RateLimited(wait)
        wait = self.limiter.acquire("login_account", username, self.limits.login_attempts_per_account)
        if wait is not None:
            raise RateLimited(wait)

    def login_failed(self, address: str | None) -> None:
        """A password step failed: the address spends one failure."""
        if address:
            self.limiter.acquire("login_address", address, self.limits.login_failures_per_address)
