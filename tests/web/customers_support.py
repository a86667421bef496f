"""What the customer API tests share: a customer as a client sends it, customers
planted by an operator, and reading the access records a request left behind."""

from __future__ import annotations

import uuid
from typing import Any

from application.context import RequestContext, acting_as
from domain.audit import AccessRecord

OPERATOR = RequestContext(actor_id="operator:tests", via="cli", purpose="test setup")

ROLES = ("agent", "supervisor", "compliance_officer", "dpo", "security_officer", "auditor", "admin")
SCOPED = ("agent", "supervisor")


def customer_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "individual",
        "full_name": "Ada Plantedname",
        "date_of_birth": "1980-02-03",
        "national_id": "QQ123456C",
        "email": "ada.planted@example.org",
        "phone": "+44 7700 900123",
        "address": {"line1": "1 Planted Street", "city": "London", "postcode": "SW1A 1AA", "country": "GB"},
        "portfolio": "retail",
        "risk_rating": "low",
        "cards": [{"pan": "4111111111111111", "expiry": "12/29"}],
        "bank_accounts": [{"iban": "GB82WEST12345698765432"}],
    }
    body.update(changes)
    return body


def strongroom(app: Any) -> Any:
    return app.extensions["strongroom"].app


def plant_customer(app: Any, **changes: Any) -> dict[str, Any]:
    """A customer registered by an operator (not through the API under test)."""
    fields = customer_body(**changes)
    with acting_as(OPERATOR):
        record: dict[str, Any] = strongroom(app).register_customer(fields)
    return record


def position(app: Any) -> int:
    return int(strongroom(app).recorder.max_notification_id() or 0)


def access_records_since(app: Any, since: int) -> list[Any]:
    store = strongroom(app)
    notifications = store.recorder.select_notifications(start=since + 1, limit=10_000)
    events = [store.mapper.to_domain_event(n) for n in notifications]
    return [e for e in events if isinstance(e, AccessRecord.Event)]


def absent_id() -> str:
    return str(uuid.uuid4())
