"""Internal-audit reports (R6.1), as an internal auditor checks them.

Activity is generated through the API (reveals, failed logins and a lockout,
break-glass, a chain verification, training, a recertification campaign), plus what
the operator's tools record (a backup and a drill, an alert and its acknowledgement).
Each report is fetched in JSON and in CSV and compared with `strongroom audit replay`
over the same window; activity after the window changes no report over it; the same
reports travel in the `audit export` bundle, which still verifies.
"""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from application.context import acting_as
from application.reports import REPORTS
from cli.main import main
from domain.alerts import Alert
from domain.operations import RecoveryLog
from tests.cli.test_independent_verifier import independent
from tests.web.customers_support import OPERATOR, plant_customer, strongroom
from tests.web.helpers import PASSWORD, quick_login

REVEAL = {"fields": ["email"], "purpose": "complaint 2026-118"}


def _login(client, username, password, address):
    return client.post("/api/v1/auth/login", json={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def _cli(instance: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite'}")
    monkeypatch.setenv("STRONGROOM_BLIND_INDEX_BITS", "8")
    done = CliRunner().invoke(main, ["--instance", str(instance), *args], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    return done.output


def _activity(client, app):
    """A slice of a quarter: everyone's ordinary work and a few things to look into."""
    cid = plant_customer(app)["id"]
    supervisor = quick_login(client, app, "rep.supervisor", roles=["supervisor"], portfolios=["retail"],
                             stepped_up=True)
    for _ in range(2):
        assert client.post(f"/api/v1/customers/{cid}/reveal", headers=supervisor, json=REVEAL).status_code == 200
    untrained = quick_login(client, app, "rep.untrained", roles=["agent"], trained=False, stepped_up=True)
    assert client.post(f"/api/v1/customers/{cid}/reveal", headers=untrained, json=REVEAL).status_code == 403
    victim = quick_login(client, app, "rep.victim", roles=["agent"])
    for n in range(10):  # from ten addresses: the lockout, not the per-address throttle
        assert _login(client, victim.username, "wrong password, again", f"198.51.100.{n + 10}").status_code == 401
    assert client.post("/api/v1/break-glass", headers=supervisor, json={
        "portfolio": "corporate", "minutes": 15, "reason": "fraud call"}).status_code == 201
    auditor = quick_login(client, app, "rep.auditor", roles=["auditor"], portfolios=[])
    assert client.get("/api/v1/audit/verify", headers=auditor).get_json()["intact"] is True
    officer = quick_login(client, app, "rep.compliance", roles=["compliance_officer"], portfolios=[],
                          stepped_up=True)
    assert client.post(f"/api/v1/staff/{untrained.staff_id}/training", headers=officer, json={
        "course": "security-awareness", "course_version": "2026.2", "evidence_ref": "LMS-9",
        "completed_at": datetime.now(UTC).isoformat()}).status_code == 201
    admin = quick_login(client, app, "rep.admin", roles=["admin"], portfolios=[])
    assert client.post("/api/v1/recertifications", headers=admin).status_code == 201
    # Data-subject requests (R5.3): one received 40 days ago and left open (overdue), one
    # extended, one erasure carried out.
    dpo = quick_login(client, app, "rep.dpo", roles=["dpo"], portfolios=[], stepped_up=True)
    late = client.post("/api/v1/requests", headers=dpo, json={
        "customer_id": cid, "kind": "access", "jurisdiction": "gdpr",
        "received_at": (datetime.now(UTC) - timedelta(days=40)).isoformat()}).get_json()
    extended = client.post("/api/v1/requests", headers=dpo, json={
        "customer_id": cid, "kind": "rectification", "jurisdiction": "ccpa"}).get_json()
    assert client.post(f"/api/v1/requests/{extended['id']}/verify", headers=dpo,
                       json={"method": "id_document"}).status_code == 200
    assert client.post(f"/api/v1/requests/{extended['id']}/extend", headers=dpo,
                       json={"reason": "many records"}).status_code == 200
    erased = plant_customer(app, email="bob.planted@example.com")["id"]
    erasure = client.post("/api/v1/requests", headers=dpo, json={
        "customer_id": erased, "kind": "erasure", "jurisdiction": "gdpr"}).get_json()
    assert client.post(f"/api/v1/requests/{erasure['id']}/verify", headers=dpo,
                       json={"method": "account_login"}).status_code == 200
    assert client.post(f"/api/v1/requests/{erasure['id']}/complete", headers=dpo, json={}).status_code == 200
    with acting_as(OPERATOR):  # what `backup create`, `backup drill` and the monitor record
        log = RecoveryLog.open()
        log.record_backup("local", "backup-1", 40)
        log.record_drill(target="local", backup_id="backup-1", position=40, rpo_seconds=12.5, rto_seconds=3.25,
                         outcome="succeeded", failures=[])
        alert = Alert.raise_alert(rule_id="reveal_burst", key="k-1", severity="high", summary="many reveals",
                                  actor_id=supervisor.staff_id)
        strongroom(app)._save(log, alert)
        alert.acknowledge("security-officer-1", "looked into it: a complaint backlog")
        strongroom(app)._save(alert)
    return {"supervisor": supervisor, "victim": victim, "auditor": auditor, "officer": officer, "cid": cid,
            "requests": {"late": late["id"], "extended": extended["id"], "erasure": erasure["id"]}, "dpo": dpo}


@pytest.mark.controls("PCI-DSS-10.4.1", "PCI-DSS-7.2.4")
def test_each_report_in_both_formats_agrees_with_the_replay_and_holds_for_its_window(
        client, app, instance, tmp_path, monkeypatch):
    since = datetime.now(UTC)
    who = _activity(client, app)
    time.sleep(0.05)
    until = datetime.now(UTC)
    time.sleep(0.05)
    query = {"since": since.isoformat(), "until": until.isoformat()}
    auditor = quick_login(client, app, "rep.auditor2", roles=["auditor"], portfolios=[])

    reports, csvs = {}, {}
    for name in REPORTS:
        answer = client.get(f"/api/v1/reports/{name}", headers=auditor, query_string=query)
        assert answer.status_code == 200, (name, answer.get_json())
        reports[name] = answer.get_json()
        as_csv = client.get(f"/api/v1/reports/{name}", headers=auditor, query_string={**query, "format": "csv"})
        assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
        csvs[name] = list(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))
        assert len(csvs[name]) == len(reports[name]["rows"]), name
        if reports[name]["rows"]:
            assert set(csvs[name][0]) == set(reports[name]["rows"][0]), name

    replay = [json.loads(line) for line in _cli(
        instance, tmp_path, monkeypatch, "audit", "replay", "--since", since.isoformat(), "--until",
        until.isoformat(), "--format", "jsonl").splitlines()]

    def replayed(event, **details):
        return [e for e in replay if e["event"] == event
                and all(e["details"].get(k) == v for k, v in details.items())]

    # Reveals per actor: the supervisor's two, the untrained agent's refusal.
    by_actor = {row["actor_id"]: row for row in reports["reveals-exports"]["rows"]}
    assert by_actor[who["supervisor"].staff_id]["reveals"] == len(
        [e for e in replayed("reveal") if e["actor_id"] == who["supervisor"].staff_id]) == 2
    assert sum(r["reveals_refused"] for r in by_actor.values()) == len(
        replayed("denied", operation="reveal", reason="training_lapsed")) == 1
    assert csvs["reveals-exports"][0]["fields"] == ";".join(reports["reveals-exports"]["rows"][0]["fields"])
    # Failed logins, the tenth of which set the lock.
    failed = reports["failed-logins"]["rows"]
    assert len(failed) == len([e for e in replay if e["event"] in ("login_failed", "step_up")
                               and e["outcome"] == "failed"]) == 10
    assert [r["event"] for r in failed].count("lockout") == 1 and failed[-1]["staff_id"] == who["victim"].staff_id
    # Break-glass, verification runs, backups and drills, alerts.
    assert [r["grant_id"] for r in reports["break-glass"]["rows"]] == [
        e["details"]["grant_id"] for e in replayed("break_glass")]
    assert len(reports["chain-verification"]["rows"]) == len(replayed("audit_read", operation="audit:verify")) == 1
    assert reports["chain-verification"]["rows"][0]["intact"] is True
    drills = [r for r in reports["backups-drills"]["rows"] if r["event"] == "drill"]
    assert len(reports["backups-drills"]["rows"]) == len([e for e in replay if e["event"] in (
        "RecoveryLog.BackupTaken", "RecoveryLog.Drilled")]) == 2
    assert (drills[0]["rpo_seconds"], drills[0]["rto_seconds"], drills[0]["outcome"]) == (12.5, 3.25, "succeeded")
    (alert,) = reports["alerts"]["rows"]
    assert (alert["rule_id"], alert["status"], alert["acknowledged_by"]) == (
        "reveal_burst", "acknowledged", "security-officer-1")
    assert len(replayed("Alert.Raised")) == 1 and len(replayed("Alert.Acknowledged")) == 1
    # Privileged actions: every staff-account change of the window, and the campaign.
    staff_changes = [e for e in replay if e["subject"] == "staff" and e["event"].rpartition(".")[2] in (
        "Enrolled", "RolesChanged", "PortfoliosChanged", "Disabled", "Enabled", "TotpReset", "Unlocked",
        "TrainingCompleted")]
    actions = reports["privileged-actions"]["rows"]
    assert len([a for a in actions if a["action"].startswith("StaffMember.")]) == len(staff_changes)
    assert any(a["action"] == "RecertificationCampaign.Started" for a in actions)
    # The access review as of the window's end: roles, MFA, training, logins.
    review = {row["username"]: row for row in reports["access-review"]["rows"]}
    assert review["rep.supervisor"]["training_current"] is True and review["rep.supervisor"]["last_login"]
    assert review["rep.untrained"]["training_current"] is True  # recorded within the window
    assert review["rep.victim"]["mfa_enrolled"] is True and review["rep.victim"]["dormant"] is False
    assert "rep.auditor2" not in review  # enrolled after the window
    assert {r["username"] for r in reports["recertification"]["rows"]} >= {"rep.supervisor", "rep.victim"}
    # Data-subject requests and their deadlines (R5.3), as of the window's end.
    requests = {r["request_id"]: r for r in reports["data-subject-requests"]["rows"]}
    assert set(requests) == {who["requests"][k] for k in ("late", "extended", "erasure")} == {
        e["stream_id"] for e in replayed("PrivacyRequest.Received")}
    late, extended, erasure = (requests[who["requests"][k]] for k in ("late", "extended", "erasure"))
    assert (late["status"], late["overdue"], late["extended"]) == ("received", True, False)
    assert (extended["status"], extended["extended"], extended["overdue"]) == ("extended", True, False)
    assert len(replayed("PrivacyRequest.Extended")) == 1
    assert (erasure["status"], erasure["kind"], erasure["overdue"]) == ("completed", "erasure", False)
    assert erasure["completed_at"] and len(replayed("PrivacyRequest.Completed")) == 1
    dsr_csv = {r["request_id"]: r for r in csvs["data-subject-requests"]}
    assert dsr_csv[late["request_id"]]["overdue"] == "true" and dsr_csv[extended["request_id"]]["extended"] == "true"
    # No personal data: the planted customer's values appear nowhere.
    assert "ada.planted" not in json.dumps(reports) and "Plantedname" not in json.dumps(csvs)

    # Tomorrow: more activity after the window changes nothing over it.
    assert client.post(f"/api/v1/customers/{who['cid']}/reveal", headers=who["supervisor"],
                       json=REVEAL).status_code == 200
    _login(client, who["auditor"].username, "wrong password, again", "198.51.100.99")
    for name in REPORTS:
        again = client.get(f"/api/v1/reports/{name}", headers=auditor, query_string=query).get_json()
        assert again == reports[name], name

    # The same reports travel in the evidence bundle, which verifies offline.
    out = tmp_path / "bundle"
    exported = json.loads(_cli(instance, tmp_path, monkeypatch, "audit", "export", "--out", str(out), "--since",
                               since.isoformat(), "--until", until.isoformat(), "--json"))
    for name in REPORTS:
        bundled = json.loads((out / "reports" / "r6" / f"{name}.json").read_text())
        assert bundled["rows"] == reports[name]["rows"], name
    _cli(instance, tmp_path, monkeypatch, "audit", "verify", "--bundle", str(out), "--public-key",
         str(instance / "audit-signing.pub"))
    checked = independent(out, "--key-fingerprint", exported["key_fingerprint"])
    assert checked.returncode == 0 and checked.stdout.startswith("OK "), checked.stdout + checked.stderr
    # A report changed after export is refused (its hash no longer matches the signed manifest).
    report = out / "reports" / "r6" / "alerts.json"
    forged = json.loads(report.read_text())
    forged["window"]["last_position"] += 1
    report.write_text(json.dumps(forged))
    assert independent(out, "--key-fingerprint", exported["key_fingerprint"]).returncode != 0


def test_reports_are_for_auditors_and_compliance_officers_and_refuse_bad_windows(client, app):
    agent = quick_login(client, app, roles=["agent"])
    refused = client.get("/api/v1/reports/access-review", headers=agent)
    assert refused.status_code == 403
    officer = quick_login(client, app, roles=["compliance_officer"], portfolios=[])
    assert client.get("/api/v1/reports/access-review", headers=officer).status_code == 200
    assert client.get("/api/v1/reports/no-such-report", headers=officer).status_code == 404
    backwards = client.get("/api/v1/reports/alerts", headers=officer, query_string={
        "since": "2026-12-02T00:00:00+00:00", "until": "2026-12-01T00:00:00+00:00"})
    assert backwards.status_code == 422 and backwards.get_json()["code"] == "validation_failed"
    assert client.get("/api/v1/reports/alerts", headers=officer,
                      query_string={"format": "xml"}).status_code == 422


def test_the_command_line_prints_a_report_as_csv(client, app, instance, tmp_path, monkeypatch):
    quick_login(client, app, "cli.person", roles=["agent"])
    text = _cli(instance, tmp_path, monkeypatch, "report", "access-review", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["username"] for r in rows] == ["cli.person"] and rows[0]["training_current"] == "true"
    assert rows[0]["mfa_enrolled"] == "true" and rows[0]["roles"] == "agent"
    assert PASSWORD not in text
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite'}")
    backwards = CliRunner().invoke(main, ["--instance", str(instance), "report", "alerts", "--since",
                                          "2026-12-02T00:00:00", "--until", "2026-12-01T00:00:00"])
    assert backwards.exit_code == 2 and "since" in backwards.output
