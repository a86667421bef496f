"""Everything held about one subject, as files (R5.3 access and portability).

`export.json` is the one machine-readable document; `tables/*.csv` the same rows,
one file per table, for a spreadsheet. What goes in, for the subject and nobody else:

* `record`: the customer as held in the log now (cards as BIN + last four, R1.7);
* `events`: every event of their own stream, with its values, time and actor;
* `read_model`: the projected row and interactions the API answers from;
* `consents`: the whole consent ledger;
* `access_log`: WHO ACCESSED THEIR DATA: every access record naming them, with the
  time, the staff member (or operator), how, the stated purpose and the fields. The
  other customers a record may name (a search matching several) and its `details`
  (which may list other ids) are left out, so nobody else's data is in it;
* `requests`: their data-subject requests.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from application.audit_trail import AuditFilter, AuditTrail, presentable
from application.customers import Strongroom
from domain.customer import Customer

FORMAT = "strongroom-subject-data/1"
_BOOKKEEPING = frozenset({"originator_id", "originator_version", "originator_topic", "timestamp"})


def subject_files(app: Strongroom, trail: AuditTrail, customer: Customer,
                  requests: Iterable[dict[str, Any]]) -> dict[str, bytes]:
    """The export's files for `customer` (already loaded from the log)."""
    customer_id = str(customer.id)
    document: dict[str, Any] = {
        "format": FORMAT,
        "subject_id": customer_id,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "record": presentable("record", customer.to_record(include_interactions=True)),
        "events": _events(app, customer.id),
        "read_model": {
            "customer": presentable("record", app.read_model.get(customer_id)),
            "interactions": app.read_model.interactions(customer_id),
        },
        "consents": customer.ledger(),
        "access_log": _accesses(trail, customer_id),
        "requests": list(requests),
    }
    tables = {
        "record": [_flat(document["record"], skip=("interactions",))],
        "events": [_flat(e) for e in document["events"]],
        "interactions": [_flat(i) for i in document["record"].get("interactions", [])],
        "consents": [_flat(c) for c in document["consents"]],
        "access_log": [_flat(a) for a in document["access_log"]],
        "requests": [_flat(r) for r in document["requests"]],
    }
    files = {"export.json": json.dumps(document, indent=2, sort_keys=True, default=str).encode("utf-8")}
    for name, rows in tables.items():
        files[f"tables/{name}.csv"] = _csv(rows)
    return files


def _events(app: Strongroom, customer_id: UUID) -> list[dict[str, Any]]:
    events = []
    for stored in app.recorder.select_events(customer_id):
        event: Any = app.mapper.to_domain_event(stored)
        who = app.mapper.metadata(stored)  # type: ignore[attr-defined]
        values = {k: presentable(k, v) for k, v in sorted(vars(event).items()) if k not in _BOOKKEEPING}
        events.append({
            "version": stored.originator_version,
            "type": stored.topic.rsplit(".", 1)[-1],
            "at": event.timestamp.isoformat(),
            "actor_id": who.get("actor_id"),
            "via": who.get("via"),
            "purpose": who.get("purpose"),
            "values": values,
        })
    return events


def _accesses(trail: AuditTrail, customer_id: str) -> list[dict[str, Any]]:
    rows = []
    for entry in trail.replay(AuditFilter(customer=customer_id, kind="access"), with_values=False):
        rows.append({
            "position": entry.position,
            "at": entry.recorded_at.isoformat(),
            "what": entry.event,
            "outcome": entry.outcome,
            "actor_id": entry.actor_id,
            "via": entry.via,
            "purpose": entry.purpose,
            "fields": list(entry.fields),
        })
    return rows


def _flat(row: Any, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """One CSV row: scalars as they are, nested values as JSON."""
    if not isinstance(row, dict):
        return {}
    flat = {}
    for key, value in row.items():
        if key in skip:
            continue
        flat[str(key)] = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return flat


def _csv(rows: list[dict[str, str]]) -> bytes:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        # A cell a spreadsheet would run as a formula (=, +, -, @) is quoted with ' first.
        writer.writerow({k: ("'" + v if v[:1] in ("=", "+", "-", "@") else v) for k, v in row.items()})
    return out.getvalue().encode("utf-8")
