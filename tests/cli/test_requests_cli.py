"""`strongroom requests …` and `strongroom consents …` at the DPO's desk (R5.2, R5.3, R5.6),
on SQLite and on PostgreSQL: an access request received, verified, exported to a
passphrase and to an X25519 key and opened again; consents recorded and honoured by the
marketing list; an overdue request alerted once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cli.main import main
from tests.application.conftest import customer_fields

PASSPHRASE = "a long private passphrase"


def run(instance: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--instance", str(instance), *args], catch_exceptions=False, input=input)


@pytest.fixture
def instance(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", database_url)
    monkeypatch.setenv("STRONGROOM_CHECKPOINT_SECONDS", "3600")
    folder = tmp_path / "instance"
    assert run(folder, "init", "--json").exit_code == 0
    lines = tmp_path / "customers.jsonl"
    lines.write_text(json.dumps(customer_fields(email="ada.cli@example.org")) + "\n"
                     + json.dumps(customer_fields(email="bob.cli@example.org", full_name="Bob Otherone")) + "\n")
    assert run(folder, "customers", "import", str(lines), "--json").exit_code == 0
    yield folder


def _ids(instance: Path) -> list[str]:
    changes = run(instance, "audit", "replay", "--kind", "change", "--format", "jsonl").output
    return [e["stream_id"] for e in map(json.loads, changes.splitlines()) if e["event"] == "Customer.Registered"]


@pytest.mark.controls("GDPR-15", "GDPR-20")
def test_an_access_request_from_the_command_line(instance: Path, tmp_path: Path) -> None:
    ada, bob = _ids(instance)
    made = run(instance, "requests", "create", ada, "--kind", "access", "--jurisdiction", "gdpr", "--json")
    assert made.exit_code == 0, made.output
    request_id = json.loads(made.output)["id"]
    early = run(instance, "requests", "export", request_id, "--out", str(tmp_path / "x.srx"),
                input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    assert early.exit_code == 1 and "verif" in early.output
    assert run(instance, "requests", "verify", request_id, "--method", "id_document").exit_code == 0
    secret = tmp_path / "passphrase.txt"
    secret.write_text(PASSPHRASE + "\n")
    sealed = tmp_path / "ada.srx"
    exported = run(instance, "requests", "export", request_id, "--out", str(sealed), "--passphrase-file", str(secret))
    assert exported.exit_code == 0, exported.output
    assert sealed.stat().st_mode & 0o077 == 0  # this user's alone
    assert b"ada.cli" not in sealed.read_bytes()
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the passphrase at all\n")
    refused = run(instance, "requests", "open-export", str(sealed), "--out", str(tmp_path / "no"),
                  "--passphrase-file", str(wrong))
    assert refused.exit_code == 1 and not (tmp_path / "no").exists()
    opened = run(instance, "requests", "open-export", str(sealed), "--out", str(tmp_path / "ada"),
                 "--passphrase-file", str(secret), "--audit-key", str(instance / "audit-signing.pub"))
    assert opened.exit_code == 0, opened.output
    assert "the audit key you gave" in opened.output
    document = json.loads((tmp_path / "ada" / "export.json").read_text())
    assert document["record"]["email"] == "ada.cli@example.org"
    everything = b"".join(p.read_bytes() for p in (tmp_path / "ada").rglob("*") if p.is_file())
    assert b"bob.cli" not in everything and b"Otherone" not in everything and bob.encode() not in everything
    assert run(instance, "requests", "complete", request_id).exit_code == 0
    listed = json.loads(run(instance, "requests", "list", "--json").output)["items"]
    assert [(r["id"], r["status"]) for r in listed] == [(request_id, "completed")]


def test_an_export_sealed_to_a_public_key(instance: Path, tmp_path: Path) -> None:
    ada, _ = _ids(instance)
    private = X25519PrivateKey.generate()
    (tmp_path / "subject.pem").write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "subject.pub").write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    request_id = json.loads(run(instance, "requests", "create", ada, "--kind", "portability",
                                "--jurisdiction", "ccpa", "--json").output)["id"]
    run(instance, "requests", "verify", request_id, "--method", "account_login")
    sealed = tmp_path / "ada.srx"
    assert run(instance, "requests", "export", request_id, "--out", str(sealed),
               "--public-key", str(tmp_path / "subject.pub")).exit_code == 0
    opened = run(instance, "requests", "open-export", str(sealed), "--out", str(tmp_path / "ada"),
                 "--private-key", str(tmp_path / "subject.pem"), "--audit-key", str(instance / "audit-signing.pub"))
    assert opened.exit_code == 0, opened.output
    assert (tmp_path / "ada" / "tables" / "access_log.csv").exists()


def test_consents_drive_the_marketing_list(instance: Path, tmp_path: Path) -> None:
    ada, bob = _ids(instance)
    for customer in (ada, bob):
        assert run(instance, "consents", "record", customer, "--purpose", "marketing_contact", "--channel", "email",
                   "--grant", "--notice-version", "v1", "--source", "web_form").exit_code == 0
    out = tmp_path / "list.jsonl"
    assert "2 contact(s)" in run(instance, "consents", "marketing-list", "--channel", "email", "--out", str(out)).output
    assert run(instance, "consents", "record", bob, "--purpose", "marketing_contact", "--channel", "email",
               "--withdraw", "--notice-version", "v1", "--source", "phone_call").exit_code == 0
    listed = run(instance, "consents", "marketing-list", "--channel", "email", "--out", str(out))
    assert "1 contact(s)" in listed.output and "1 left out" in listed.output
    assert [json.loads(line)["customer_id"] for line in out.read_text().splitlines()] == [ada]
    ledger = run(instance, "consents", "list", bob)
    assert "granted" in ledger.output and "withdrawn" in ledger.output


def test_check_deadlines_alerts_an_overdue_request_once(instance: Path) -> None:
    ada, _ = _ids(instance)
    received = (datetime.now(UTC) - timedelta(days=50)).isoformat()
    run(instance, "requests", "create", ada, "--kind", "erasure", "--jurisdiction", "ccpa",
        "--received-at", received)
    first = run(instance, "requests", "check-deadlines", "--json")
    assert first.exit_code == 1  # something is overdue
    assert len(json.loads(first.output)["raised"]) == 1
    again = json.loads(run(instance, "requests", "check-deadlines", "--json").output)
    assert again["raised"] == [] and len(again["overdue"]) == 1


@pytest.mark.parametrize(("command", "purpose", "what"), [("data-sharing-export", "data_sharing", "customer(s)"),
                                                          ("profiling-run", "profiling", "profile(s)")])
def test_data_sharing_and_profiling_leave_out_whoever_withdrew(instance: Path, tmp_path: Path, command: str,
                                                               purpose: str, what: str) -> None:
    ada, bob = _ids(instance)
    for customer, answer in ((ada, "--grant"), (bob, "--grant"), (bob, "--withdraw")):
        assert run(instance, "consents", "record", customer, "--purpose", purpose, "--channel", "online", answer,
                   "--notice-version", "v1", "--source", "web_form").exit_code == 0
    out = tmp_path / "out.jsonl"
    done = run(instance, "consents", command, "--out", str(out))
    assert done.exit_code == 0 and f"1 {what}" in done.output and "1 left out" in done.output
    assert [json.loads(line)["customer_id"] for line in out.read_text().splitlines()] == [ada]
