"""Erasure under an AML hold through the API, as a data-protection officer sees it
(R5.4): the DPO erases and gets a signed certificate; the contact data is gone; the
KYC part is kept and readable only by a compliance officer with a purpose and a
step-up; the certificate verifies offline with the published key, a changed one not.

Attacks tried: an agent, a supervisor, an auditor and the DPO herself asking for the
held KYC part (each refused, 403, and recorded); a compliance officer without a
purpose (422) or without a step-up (403); an agent trying to erase (403); a forged
certificate claiming the KYC key was destroyed too (refused by the verifier).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

from tests.web.customers_support import absent_id, plant_customer
from tests.web.helpers import quick_login, step_up


def test_the_dpo_erases_under_aml_hold_and_only_compliance_reads_the_kept_kyc_part(client, app, tmp_path):
    customer = plant_customer(app)
    cid = customer["id"]
    agent = quick_login(client, app, roles=["agent"], portfolios=["retail"])
    assert client.post(f"/api/v1/erasures/{cid}", json={"reason": "DSR-2026-7"},
                       headers=agent).status_code == 403

    dpo = quick_login(client, app, roles=["dpo"], portfolios=[])
    refused = client.post(f"/api/v1/erasures/{cid}", json={"reason": "DSR-2026-7"}, headers=dpo)
    assert refused.status_code == 403 and refused.get_json()["code"] == "step_up_required"  # a stolen session alone
    step_up(client, dpo)
    erased = client.post(f"/api/v1/erasures/{cid}", json={"reason": "DSR-2026-7"}, headers=dpo)
    assert erased.status_code == 200, erased.get_json()
    result = erased.get_json()
    assert result["keys_destroyed"] == ["profile"] and result["kept"] == {"kyc": ["aml_retention"]}
    certificate = result["certificate"]
    assert certificate["certificate"]["subject_id"] == cid
    assert certificate["certificate"]["complete_in_backups_by"] is not None

    # Contact data gone: the ordinary read answers 410 to the agent whose portfolio it was.
    assert client.get(f"/api/v1/customers/{cid}", headers=agent).status_code == 410
    assert client.get("/api/v1/customers", query_string={"email": "ada.planted@example.org"},
                      headers=agent).get_json()["items"] == []

    officer = quick_login(client, app, roles=["compliance_officer"], portfolios=[])
    assert client.get(f"/api/v1/erasures/{cid}/kyc", headers=officer.with_purpose("AML case 114")
                      ).status_code == 403  # no step-up yet
    step_up(client, officer)
    assert client.get(f"/api/v1/erasures/{cid}/kyc", headers=officer).status_code == 422  # no purpose
    held = client.get(f"/api/v1/erasures/{cid}/kyc", headers=officer.with_purpose("AML case 114"))
    assert held.status_code == 200, held.get_json()
    kyc = held.get_json()
    assert kyc["national_id"] == "QQ123456C" and kyc["full_name"] == "Ada Plantedname"
    assert kyc["restricted"] is True and kyc["profile"] == "erased"
    assert "email" not in kyc and "phone" not in kyc
    for who in (["agent"], ["supervisor"], ["auditor"], ["dpo"]):
        other = quick_login(client, app, roles=who, portfolios=["retail"] if who[0] in ("agent", "supervisor") else [])
        step_up(client, other)
        refused = client.get(f"/api/v1/erasures/{cid}/kyc", headers=other.with_purpose("curious"))
        assert refused.status_code == 403, who
    assert client.get(f"/api/v1/erasures/{absent_id()}/kyc",
                      headers=officer.with_purpose("AML case 114")).status_code == 404

    # Offline, as an auditor would: the certificate and the published key, no database.
    pem = tmp_path / "instance" / "audit-signing.pub"
    good, forged = tmp_path / "cert.json", tmp_path / "forged.json"
    good.write_text(json.dumps(certificate))
    tampered = copy.deepcopy(certificate)
    tampered["certificate"]["keys_destroyed"] = ["profile", "kyc"]
    tampered["certificate"]["keys_kept"] = {}
    forged.write_text(json.dumps(tampered))
    verify = [sys.executable, "-c", "from cli.main import run; run()", "audit", "verify-certificate"]
    ok = subprocess.run([*verify, str(good), "--public-key", str(pem)], capture_output=True, text=True,
                        cwd=tmp_path)
    assert ok.returncode == 0 and f"erasure of subject {cid}" in ok.stdout
    bad = subprocess.run([*verify, str(forged), "--public-key", str(pem)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert bad.returncode == 1 and "INVALID" in bad.stdout


def test_the_investigation_hold_is_a_compliance_officers_recorded_decision(client, app):
    cid = plant_customer(app)["id"]
    dpo = quick_login(client, app, roles=["dpo"], portfolios=[])
    step_up(client, dpo)
    body = {"open": True, "reason": "case AML-2026-114"}
    assert client.put(f"/api/v1/aml-holds/{cid}", json=body, headers=dpo).status_code == 403
    officer = quick_login(client, app, roles=["compliance_officer"], portfolios=[])
    opened = client.put(f"/api/v1/aml-holds/{cid}", json=body, headers=officer)
    assert opened.status_code == 200 and opened.get_json()["under_investigation"] is True
    again = client.put(f"/api/v1/aml-holds/{cid}", json=body, headers=officer)
    assert again.status_code == 422  # already open
    assert client.put(f"/api/v1/aml-holds/{absent_id()}", json=body,
                      headers=officer).status_code == 404
    erased = client.post(f"/api/v1/erasures/{cid}", json={"reason": "DSR-8"}, headers=dpo).get_json()
    assert client.get(f"/api/v1/erasures/{absent_id()}/kyc", headers=officer.with_purpose("x")).status_code == 403
    assert erased["kept"] == {"kyc": ["aml_investigation", "aml_retention"]}
    assert erased["certificate"]["certificate"]["complete_in_backups_by"] is None  # no end while investigated


def test_every_role_against_the_erasure_routes(client, app):
    """The matrix for these routes, from the policy's own tables (who holds
    `customers:erase`) plus the hand-written rule of R5.4: the held KYC part and the
    investigation hold are the compliance officer's alone."""
    from application.security import ROLE_PERMISSIONS, Permission
    from tests.web.customers_support import ROLES

    for role in ROLES:
        cid = plant_customer(app)["id"]
        who = quick_login(client, app, roles=[role], portfolios=["retail"] if role in ("agent", "supervisor") else [])
        step_up(client, who)
        hold = client.put(f"/api/v1/aml-holds/{cid}", json={"open": True, "reason": "case 1"}, headers=who)
        assert hold.status_code == (200 if role == "compliance_officer" else 403), role
        erase = client.post(f"/api/v1/erasures/{cid}", json={"reason": "DSR"}, headers=who)
        assert erase.status_code == (200 if Permission.CUSTOMERS_ERASE in ROLE_PERMISSIONS[role] else 403), role
        if erase.status_code != 200:
            continue
        for reader in ROLES:
            other = quick_login(client, app, roles=[reader],
                                portfolios=["retail"] if reader in ("agent", "supervisor") else [])
            step_up(client, other)
            read = client.get(f"/api/v1/erasures/{cid}/kyc", headers=other.with_purpose("AML case"))
            assert read.status_code == (200 if reader == "compliance_officer" else 403), reader
