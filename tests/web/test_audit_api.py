"""The audit trail through the API, as an auditor or a compliance officer uses it (R3.3, R3.5).

An agent reveals a customer's fields with a purpose; an auditor finds that reveal,
who did it and why, but never a value; anyone else is refused, and the refusal is
recorded; pages follow a cursor; `/audit/verify` says whether the chain is intact
and, after a raw change, where it is not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.infrastructure.chain_attacks import RawStore
from tests.web.customers_support import access_records_since, customer_body, plant_customer, position
from tests.web.helpers import quick_login, step_up

EVENTS = "/api/v1/audit/events"
VERIFY = "/api/v1/audit/verify"
PLANTED = ("ada.planted", "QQ123456C", "4111111111111111", "GB82WEST", "Planted Street", "Plantedname")


@pytest.fixture
def app(app_factory: Any, database_url: str) -> Any:
    return app_factory(database_url=database_url, checkpoint_seconds=3600)


@pytest.fixture
def auditor(client: Any, app: Any) -> Any:
    return quick_login(client, app, roles=["auditor"], portfolios=[])


def _reveal(client: Any, app: Any) -> tuple[str, Any]:
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    cid = plant_customer(app)["id"]
    step_up(client, supervisor)
    response = client.post(f"/api/v1/customers/{cid}/reveal", headers=supervisor,
                           json={"fields": ["email", "national_id"], "purpose": "complaint 2026-118"})
    assert response.status_code == 200, response.get_json()
    return cid, supervisor


@pytest.mark.controls("PCI-DSS-10.2.1.1", "GDPR-33")
def test_an_auditor_sees_who_revealed_what_and_why_but_no_value(client: Any, app: Any, auditor: Any) -> None:
    cid, supervisor = _reveal(client, app)
    response = client.get(EVENTS, query_string={"customer": cid}, headers=auditor)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_json()
    assert page["next_cursor"] is None
    registered, reveal = page["items"][0], page["items"][-1]
    assert registered["event"] == "Customer.Registered" and registered["kind"] == "change"
    assert registered["customer_ids"] == [cid] and "email" in registered["fields"]
    assert (reveal["kind"], reveal["event"], reveal["outcome"]) == ("access", "reveal", "allowed")
    assert reveal["actor_id"] == supervisor.staff_id and reveal["session_id"] == supervisor.session_id
    assert reveal["purpose"] == "complaint 2026-118" and reveal["fields"] == ["email", "national_id"]
    assert reveal["via"] == "api" and reveal["client_addr"]
    assert all("values" not in item for item in page["items"])
    body = response.get_data(as_text=True)
    for planted in PLANTED:
        assert planted not in body
    # By actor and kind: just the supervisor's accesses.
    mine = client.get(EVENTS, query_string={"actor": supervisor.staff_id, "kind": "access"}, headers=auditor)
    assert {e["event"] for e in mine.get_json()["items"]} >= {"reveal"}
    assert all(e["actor_id"] == supervisor.staff_id for e in mine.get_json()["items"])


@pytest.mark.controls("PCI-DSS-10.2.1.3")
def test_reading_the_trail_is_itself_recorded(client: Any, app: Any, auditor: Any) -> None:
    before = position(app)
    assert client.get(EVENTS, headers=auditor).status_code == 200
    assert client.get(VERIFY, headers=auditor).status_code == 200
    records = access_records_since(app, before)
    assert [(r.kind, r.details["operation"]) for r in records] == [
        ("audit_read", "audit:events"), ("audit_read", "audit:verify")]


@pytest.mark.parametrize("role", ["auditor", "compliance_officer"])
@pytest.mark.controls("PCI-DSS-10.4.1")
def test_auditors_and_compliance_officers_may_read(client: Any, app: Any, role: str) -> None:
    headers = quick_login(client, app, roles=[role], portfolios=[])
    assert client.get(EVENTS, headers=headers).status_code == 200
    assert client.get(VERIFY, headers=headers).status_code == 200


@pytest.mark.parametrize("role", ["agent", "supervisor", "dpo", "security_officer", "admin"])
def test_no_one_else_may_and_the_refusal_is_recorded(client: Any, app: Any, role: str) -> None:
    headers = quick_login(client, app, roles=[role], portfolios=["retail"])
    before = position(app)
    for path in (EVENTS, VERIFY):
        response = client.get(path, headers=headers)
        assert response.status_code == 403
        assert response.get_json()["code"] == "forbidden"
    refusals = access_records_since(app, before)
    assert [(r.kind, r.outcome, r.details["operation"]) for r in refusals] == [
        ("denied", "denied", "audit:events"), ("denied", "denied", "audit:verify")]


def test_without_a_token_the_answer_is_401(client: Any, app: Any) -> None:
    for path in (EVENTS, VERIFY):
        assert client.get(path).status_code == 401


def test_pages_follow_the_cursor_without_gaps_or_repeats(client: Any, app: Any, auditor: Any) -> None:
    for n in range(7):
        plant_customer(app, email=f"ada.{n}@example.org")
    everything = client.get(EVENTS, query_string={"limit": 500}, headers=auditor).get_json()["items"]
    seen: list[int] = []
    cursor = None
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(EVENTS, query_string=query, headers=auditor).get_json()
        seen += [item["position"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # The reads themselves add access records as we page; the first listing is a prefix.
    assert seen[: len(everything)] == [item["position"] for item in everything]
    assert seen == sorted(set(seen))


def test_a_time_window(client: Any, app: Any, auditor: Any) -> None:
    plant_customer(app)
    middle = datetime.now(UTC)
    later = plant_customer(app, email="zed@example.org")["id"]
    items = client.get(EVENTS, query_string={"since": middle.isoformat(), "kind": "change"},
                       headers=auditor).get_json()["items"]
    assert [i["stream_id"] for i in items] == [later]
    before = client.get(EVENTS, query_string={"until": middle.isoformat(), "kind": "change"},
                        headers=auditor).get_json()["items"]
    assert later not in {i["stream_id"] for i in before} and before


@pytest.mark.parametrize("query", [
    {"kind": "everything"}, {"cursor": "abc"}, {"limit": 0}, {"limit": 501}, {"customer": "not-a-uuid"},
    {"since": "2026-11-29T12:00:00"}, {"colour": "blue"},
    {"since": "2026-11-29T12:00:00+00:00", "until": "2026-11-28T12:00:00+00:00"},
])
def test_bad_queries_are_refused_with_422(client: Any, app: Any, auditor: Any, query: dict[str, Any]) -> None:
    response = client.get(EVENTS, query_string=query, headers=auditor)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "validation_failed"


@pytest.mark.controls("PCI-DSS-10.7.2")
def test_verify_says_intact_and_then_where_it_is_not(client: Any, app: Any, auditor: Any, database_url: str) -> None:
    customer = client.post("/api/v1/customers", json=customer_body(),
                           headers=quick_login(client, app, roles=["agent"], portfolios=["retail"]))
    assert customer.status_code == 201
    report = client.get(VERIFY, headers=auditor).get_json()
    assert report["intact"] is True and report["problems"] == [] and report["rows_checked"] >= 2
    assert client.get(VERIFY, query_string={"start": "checkpoint"}, headers=auditor).get_json()["intact"]
    raw = RawStore(database_url)
    target = raw.position_of(customer.get_json()["id"])  # the customer's row, not a staff member's
    raw.flip_byte(target)
    report = client.get(VERIFY, headers=auditor).get_json()
    assert report["intact"] is False and report["first_bad_position"] == target
    assert "contents do not match" in report["problems"][0]["what"]


def test_the_openapi_document_describes_both(client: Any) -> None:
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert paths["/api/v1/audit/events"]["get"]["operationId"] == "auditEvents"
    assert paths["/api/v1/audit/verify"]["get"]["operationId"] == "auditVerify"
    names = {p["name"] for p in paths["/api/v1/audit/events"]["get"]["parameters"]}
    assert {"customer", "actor", "kind", "since", "until", "limit", "cursor"} <= names
