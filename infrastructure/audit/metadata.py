"""What an auditor reads about a stored row, and its canonical bytes (R3.3, R6.3).

The *auditor's view* of an event is built from its system part, plus the names
(never the values) of the attributes a customer's event sets; only names and ids,
and it is exactly the `metadata` object of a row in an evidence bundle:

    {"context": {"actor_id", "via", "session_id", "request_id", "client_addr", "purpose"},
     "access": {"kind", "outcome", "customer_ids", "fields", "details"}}   access records
    {"context": {...}, "fields": [...]}                                   changes to a customer
    {"context": {...}, "customer_id": "..."}                              changes naming a customer
    {"context": {...}}                                                    anything else

`fields` names what a customer's event set (catalogue names such as "email",
never a value): the auditor's "which fields did this change touch", chained with
the rest of the view. Rows written before it was added have no `fields`.

Its canonical encoding is JSON with the keys of every object sorted, no
whitespace (`,` and `:` as separators), strings as UTF-8 (not `\\u` escapes except
where JSON requires them: `"`, `\\`, control characters), i.e. RFC 8785 (JCS) for
a document holding only strings, null, arrays and objects with ASCII keys. The
mapper computes the view when it encrypts an event, stores the canonical text
and a random salt in the system part, and puts `meta_digest(salt, canonical)` in
the clear header (chain.py): so the view is committed to by the row hash, and an
export (which needs the KEK to read it) ships the very bytes that were chained.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

# The key, inside the system part, of {"salt": hex, "canonical": text}.
CHAIN_META = "_chain"
ACCESS_RECORD_TOPIC = "domain.audit:AccessRecord."
CUSTOMER_TOPIC = "domain.customer:Customer."
ACCESS_FIELDS = ("kind", "outcome", "customer_ids", "fields", "details")
# Not fields of the customer: the library's bookkeeping, and the why (kept as a reason).
_NOT_FIELDS = frozenset({"timestamp", "originator_topic", "class_version", "reason"})


def changed_fields(names: Iterable[str]) -> list[str]:
    """The customer fields an event with these attribute names sets, sorted."""
    return sorted({name for name in names if name not in _NOT_FIELDS and not name.startswith("_")})


def auditor_view(topic: str, context: Mapping[str, Any], system: Mapping[str, Any],
                 attributes: Iterable[str] = ()) -> dict[str, Any]:
    """The metadata an auditor reads: the acting context, plus what was touched.
    `attributes` are the names of all the event's attributes, whichever key seals them."""
    view: dict[str, Any] = {"context": dict(context)}
    if topic.startswith(ACCESS_RECORD_TOPIC):
        view["access"] = {name: system.get(name) for name in ACCESS_FIELDS}
    elif topic.startswith(CUSTOMER_TOPIC):
        view["fields"] = changed_fields(attributes)
    elif "customer_id" in system:
        view["customer_id"] = system["customer_id"]
    return view


def canonical(view: Any) -> bytes:
    """The canonical JSON of `view` (see the module docstring); ids such as UUIDs
    become their text, which is also what a reader parses back."""
    return json.dumps(view, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=str).encode("utf-8")
