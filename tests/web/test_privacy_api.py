"""The privacy API through Flask's client: consents (R5.2), data-subject requests (R5.3),
restriction (R5.6)."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from infrastructure.privacy_export import open_export
from tests.web.customers_support import access_records_since, plant_customer, position
from tests.web.helpers import quick_login

PASSPHRASE = "a long and private passphrase"
CONSENT = {"purpose": "marketing_contact", "channel": "email", "granted": True, "notice_version": "2026-11",
           "source": "web_form"}


def _request(client, dpo, customer_id, kind, jurisdiction="gdpr"):
    created = client.post("/api/v1/requests", headers=dpo,
                          json={"customer_id": customer_id, "kind": kind, "jurisdiction": jurisdiction})
    assert created.status_code == 201, created.get_json()
    request_id = created.get_json()["id"]
    verified = client.post(f"/api/v1/requests/{request_id}/verify", headers=dpo, json={"method": "id_document"})
    assert verified.status_code == 200 and verified.get_json()["status"] == "verified"
    return request_id


def test_an_agent_records_consent_and_reads_the_ledger(app, client):
    agent = quick_login(client, app, roles=["agent"])
    customer = plant_customer(app)
    path = f"/api/v1/customers/{customer['id']}/consents"
    recorded = client.post(path, headers=agent, json=CONSENT)
    assert recorded.status_code == 201
    assert recorded.get_json()["actor_id"] == agent.staff_id
    withdrawn = client.post(path, headers=agent, json={**CONSENT, "granted": False, "source": "phone_call"})
    assert withdrawn.status_code == 201
    listing = client.get(path, headers=agent).get_json()
    assert [e["granted"] for e in listing["items"]] == [True, False] and listing["next_cursor"] is None
    email = next(r for r in listing["in_force"] if (r["purpose"], r["channel"]) == ("marketing_contact", "email"))
    assert email["may_process"] is False
    bad = client.post(path, headers=agent, json={**CONSENT, "purpose": "telepathy"})
    assert bad.status_code == 422 and "purpose" in bad.get_json()["errors"]
    absent = client.get(f"/api/v1/customers/{uuid.uuid4()}/consents", headers=agent)
    assert absent.status_code == 404


@pytest.mark.controls("GDPR-18")
def test_a_restricted_record_answers_409_to_changes_and_the_lift_is_the_dpos(app, client):
    dpo = quick_login(client, app, roles=["dpo"])
    agent = quick_login(client, app, roles=["agent"])
    customer = plant_customer(app)
    request_id = _request(client, dpo, customer["id"], "restriction")
    done = client.post(f"/api/v1/requests/{request_id}/complete", headers=dpo, json={})
    assert done.status_code == 200 and done.get_json()["status"] == "completed"
    view = client.get(f"/api/v1/customers/{customer['id']}", headers=agent)
    patched = client.patch(f"/api/v1/customers/{customer['id']}", headers={**agent, "If-Match": view.headers["ETag"]},
                           json={"risk_rating": "high"})
    assert patched.status_code == 409 and patched.get_json()["code"] == "restricted"
    granted = client.post(f"/api/v1/customers/{customer['id']}/consents", headers=agent, json=CONSENT)
    assert granted.status_code == 409 and granted.get_json()["code"] == "restricted"
    listed = client.get("/api/v1/customers", headers=agent, query_string={"portfolio": "retail"}).get_json()
    assert customer["id"] not in [c["id"] for c in listed["items"]]
    refused = client.post(f"/api/v1/restrictions/{customer['id']}/lift", headers=agent, json={"reason": "x"})
    assert refused.status_code == 403
    lifted = client.post(f"/api/v1/restrictions/{customer['id']}/lift", headers=dpo,
                         json={"reason": "accuracy confirmed"})
    assert lifted.status_code == 200 and lifted.get_json()["restricted"] is False
    again = client.post(f"/api/v1/restrictions/{customer['id']}/lift", headers=dpo, json={"reason": "again"})
    assert again.status_code == 422


@pytest.mark.controls("GDPR-15", "GDPR-20", "CCPA-1798.110")
def test_the_dpo_runs_an_access_request_and_the_export_opens_with_the_passphrase(app, client):
    dpo = quick_login(client, app, roles=["dpo"])
    customer = plant_customer(app)
    request_id = _request(client, dpo, customer["id"], "access")
    early = client.post(f"/api/v1/requests/{request_id}/complete", headers=dpo, json={})
    assert early.status_code == 422  # no export delivered yet
    both = client.post(f"/api/v1/requests/{request_id}/export", headers=dpo,
                       json={"passphrase": PASSPHRASE, "public_key": "x"})
    assert both.status_code == 422
    short = client.post(f"/api/v1/requests/{request_id}/export", headers=dpo, json={"passphrase": "short"})
    assert short.status_code == 422 and "passphrase" in short.get_json()["errors"]
    bad_key = client.post(f"/api/v1/requests/{request_id}/export", headers=dpo, json={"public_key": "not a key"})
    assert bad_key.status_code == 422 and "public_key" in bad_key.get_json()["errors"]
    exported = client.post(f"/api/v1/requests/{request_id}/export", headers=dpo, json={"passphrase": PASSPHRASE})
    assert exported.status_code == 200, exported.get_json()
    body = exported.get_json()
    sealed = base64.b64decode(body["content_base64"])
    opened = open_export(sealed, passphrase=PASSPHRASE,
                         audit_public_key_pem=app.extensions["strongroom"].tamper_evidence.signer.public_pem())
    document = json.loads(opened.files["export.json"])
    assert document["subject_id"] == customer["id"] and document["record"]["email"] == "ada.planted@example.org"
    done = client.post(f"/api/v1/requests/{request_id}/complete", headers=dpo, json={})
    assert done.status_code == 200 and done.get_json()["status"] == "completed"
    closed = client.post(f"/api/v1/requests/{request_id}/reject", headers=dpo, json={"reason": "late"})
    assert closed.status_code == 409 and closed.get_json()["code"] == "request_closed"
    one = client.get(f"/api/v1/requests/{request_id}", headers=dpo).get_json()
    assert one["exports"][0]["sha256"] == body["sha256"]


@pytest.mark.controls("GDPR-17", "CCPA-1798.105")
def test_who_may_handle_requests(app, client):
    dpo = quick_login(client, app, roles=["dpo"])
    agent = quick_login(client, app, roles=["agent"])
    compliance = quick_login(client, app, roles=["compliance_officer"])
    customer = plant_customer(app)
    request_id = _request(client, dpo, customer["id"], "erasure")
    before = position(app)
    assert client.get("/api/v1/requests", headers=agent).status_code == 403
    # The refusal is an access record (PCI DSS 10.2.1.2), naming the operation refused.
    (refusal,) = access_records_since(app, before)
    assert (refusal.kind, refusal.details["operation"]) == ("denied", "privacy:list")
    listed = client.get("/api/v1/requests", headers=compliance, query_string={"status": "verified"})
    assert listed.status_code == 200 and [r["id"] for r in listed.get_json()["items"]] == [request_id]
    assert client.post(f"/api/v1/requests/{request_id}/complete", headers=compliance, json={}).status_code == 403
    assert client.get(f"/api/v1/requests/{uuid.uuid4()}", headers=dpo).status_code == 404
    unverified = client.post("/api/v1/requests", headers=dpo,
                             json={"customer_id": customer["id"], "kind": "erasure", "jurisdiction": "ccpa"})
    early = client.post(f"/api/v1/requests/{unverified.get_json()['id']}/complete", headers=dpo, json={})
    assert early.status_code == 409 and early.get_json()["code"] == "identity_not_verified"
    # Attack: a stolen DPO session (no fresh TOTP) completes an erasure request; it is
    # refused with nothing destroyed, and the refusal is recorded (R2.11).
    before = position(app)
    stolen = client.post(f"/api/v1/requests/{request_id}/complete", headers=dpo, json={})
    assert stolen.status_code == 403 and stolen.get_json()["code"] == "step_up_required"
    (refusal,) = access_records_since(app, before)
    assert refusal.kind == "denied" and refusal.details["operation"] == "privacy:complete"
    assert client.get(f"/api/v1/customers/{customer['id']}", headers=dpo).status_code == 200
    dpo = quick_login(client, app, roles=["dpo"], stepped_up=True)
    erased = client.post(f"/api/v1/requests/{request_id}/complete", headers=dpo, json={})
    assert erased.status_code == 200 and "profile" in erased.get_json()["completion"]["result"]["keys_destroyed"]
    # The signed erasure certificate (R5.4) comes back with the completed request.
    certificate = erased.get_json()["completion"]["certificate"]
    assert certificate["certificate"]["subject_id"] == customer["id"] and certificate["signature"]
    assert client.get(f"/api/v1/customers/{customer['id']}", headers=dpo).status_code == 410
