"""The one source of "now" for use cases and the infrastructure under them.

Times are aware UTC datetimes everywhere: a naive time would be read in whatever
zone the host happens to run in, and an audit trail must not depend on that.
Services take a `Clock` so that tests can move time (timeouts, lockouts, TOTP).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)
