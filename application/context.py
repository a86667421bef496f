"""Who is acting: one context that every write reads (R3.1, STYLE 5).

The API sets it after authentication, the command line for the operator, workers for
themselves. The encrypting mapper stamps it into every stored event, and refuses to
write when it is missing, so a code path that forgot to say who is acting cannot
slip an anonymous change into the audit trail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from application.errors import AnonymousWrite


@dataclass(frozen=True)
class RequestContext:
    actor_id: str
    via: str  # "api", "cli" or "worker"
    session_id: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    client_addr: str | None = None
    purpose: str | None = None

    def as_metadata(self) -> dict[str, str | None]:
        # What `dataclasses.asdict` gives (the fields in order), without its
        # deep copies: every value is a string or None. Every stored event calls
        # this, and asdict was a quarter of sealing an access record (issue 15).
        return {
            "actor_id": self.actor_id,
            "via": self.via,
            "session_id": self.session_id,
            "request_id": self.request_id,
            "client_addr": self.client_addr,
            "purpose": self.purpose,
        }


_current: ContextVar[RequestContext | None] = ContextVar("strongroom_actor", default=None)


@contextmanager
def acting_as(context: RequestContext) -> Iterator[RequestContext]:
    """Run a block on behalf of `context.actor_id`."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def current_context() -> RequestContext | None:
    return _current.get()


def require_context() -> RequestContext:
    """The acting context; raises AnonymousWrite when there is none."""
    context = _current.get()
    if context is None or not context.actor_id:
        raise AnonymousWrite()
    return context
