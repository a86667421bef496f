"""Throttling's port (R2.11, R7.4): rate-limit counters that every API process shares.

`infrastructure/rate_limits.py` keeps them in the shared database. A counter is
named by a `bucket` (what is limited: searches, login failures from an address, ...)
and a `key` (whose: a staff id, an address, a username); the adapter stores only a
keyed digest of the key, since an address or a username is personal data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Limit:
    """`count` units per `seconds`, of which up to `burst` (default `count`) at once."""

    count: int
    seconds: float
    burst: int | None = None


class RateLimiter(Protocol):
    """Shared, atomic counters: two processes never both spend the last unit."""

    def acquire(self, bucket: str, key: str, limits: Sequence[Limit]) -> float | None:
        """Spend one unit of `key`'s budget. None when allowed; otherwise nothing is
        spent and the answer is the seconds until one unit is free again."""

    def blocked(self, bucket: str, key: str, limits: Sequence[Limit]) -> float | None:
        """Seconds until one unit is free, or None if one is free now; spends nothing."""
