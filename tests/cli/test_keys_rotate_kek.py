"""`strongroom keys rotate-kek --to pkcs11` against real SoftHSM2 tokens (R1.4).

Attacks named: an operator with a shell copies kek.key (after the rotation the
instance runs with no key file at all: there is nothing to copy); a copy of the key
store (wrapped data keys) is useless without the token. Faults injected: a real
rotate-kek process SIGKILLed inside its re-wrapping transaction, and again after it
committed but before the settings were written; a missing token and a wrong PIN.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from infrastructure.audit.checkpoints import Checkpoint
from infrastructure.audit.signer import load_public_key, signature_valid
from tests.application.conftest import customer_fields

ROOT = Path(__file__).resolve().parents[2]
PIN = "1234-token-pin"

# `keys rotate-kek`, SIGKILLed at `where`: "rewrap" inside the re-wrapping transaction
# (after its UPDATEs ran, before COMMIT), "settings" after the commit, before
# strongroom.json points at the token.
KILLED_ROTATION = """
import os, signal, sys
where = sys.argv[2]
if where == "rewrap":
    from infrastructure.crypto.keystore import KeyStore
    def replace_all(self, keys, kek_id, canary):
        with self.db.transaction() as cur:
            cur.executemany("UPDATE data_keys SET wrapped = ?, kek_id = ? WHERE subject_id = ? AND kind = ?",
                            [(k.wrapped, k.kek_id, k.subject_id, k.kind) for k in keys])
            os.kill(os.getpid(), signal.SIGKILL)
    KeyStore.replace_all = replace_all
else:
    import infrastructure.kek_rotation as rotation
    rotation.write_settings = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
from cli.main import main
main(["--instance", sys.argv[1], "keys", "rotate-kek", "--to", "pkcs11", "--token-label", "hsm-a"])
"""


def run(instance: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--instance", str(instance), *args], catch_exceptions=False)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


@pytest.fixture
def instance(tmp_path: Path, database_url: str, softhsm, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    softhsm.init_tokens("hsm-a", "hsm-b", pin=PIN)
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", database_url)
    monkeypatch.setenv("STRONGROOM_PKCS11_PIN", PIN)
    folder = tmp_path / "instance"
    assert run(folder, "init", "--json").exit_code == 0
    lines = tmp_path / "customers.jsonl"
    lines.write_text("".join(json.dumps(customer_fields(email=f"kept.{n}@example.org")) + "\n" for n in range(3)))
    assert run(folder, "customers", "import", str(lines)).exit_code == 0
    yield folder


def show(instance: Path, email: str) -> Result:
    found = run(instance, "customers", "find", "--purpose", "support ticket 42", "--email", email)
    assert found.exit_code == 0, found.output
    return run(instance, "customers", "show", "--purpose", "support ticket 42", found.output.split()[0])


def test_after_rotating_into_a_token_the_instance_serves_customers_with_no_kek_file(instance: Path) -> None:
    before = json.loads(run(instance, "keys", "status", "--json").output)
    published = (instance / "audit-signing.pub").read_bytes()
    rotated = run(instance, "keys", "rotate-kek", "--to", "pkcs11", "--token-label", "hsm-a", "--json")
    assert rotated.exit_code == 0, rotated.output
    result = json.loads(rotated.output)
    assert result["key_provider"] == "pkcs11" and result["kek_id"] != before["kek_id"]
    assert result["rewrapped"] == sum(before["data_keys"][k] for k in before["data_keys"] if k.startswith("active_"))
    config = json.loads((instance / "strongroom.json").read_text())
    assert config["key_provider"] == "pkcs11" and config["pkcs11_token_label"] == "hsm-a"
    assert "PIN" not in (instance / "strongroom.json").read_text().upper().replace("PKCS11_PIN_FILE", "")

    # The attack: copy kek.key. After the rotation there is no need for one at all.
    (instance / "kek.key").unlink()
    shown = show(instance, "kept.1@example.org")
    assert shown.exit_code == 0 and json.loads(shown.output)["email"] == "kept.1@example.org", shown.output
    status = json.loads(run(instance, "keys", "status", "--json").output)
    assert (status["kek_id"], status["key_provider"], status["token"]) == (result["kek_id"], "pkcs11", "hsm-a")

    # The audit key moved into the token unchanged: history signed before still verifies,
    # and a checkpoint the token signs now verifies with the published key.
    assert (instance / "audit-signing.pub").read_bytes() == published
    more = instance.parent / "more.jsonl"
    more.write_text(json.dumps(customer_fields(email="after.rotation@example.org")) + "\n")
    assert run(instance, "customers", "import", str(more)).exit_code == 0
    assert run(instance, "audit", "checkpoint").exit_code == 0
    verified = run(instance, "audit", "verify", "--json")
    assert verified.exit_code == 0, verified.output
    public_key = load_public_key(published)
    latest = max((json.loads(p.read_text()) for p in (instance / "checkpoints").glob("*.json")),
                 key=lambda c: c["position"])
    checkpoint = Checkpoint.from_json(latest)
    assert checkpoint.key_id == result["audit_key_id"]
    assert signature_valid(public_key, checkpoint.signature, checkpoint.message())


def test_a_missing_token_or_a_wrong_pin_exits_2_and_changes_nothing(instance: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config, keys = file_digest(instance / "strongroom.json"), run(instance, "keys", "status", "--json").output
    absent = run(instance, "keys", "rotate-kek", "--to", "pkcs11", "--token-label", "no-such-token")
    assert absent.exit_code == 2 and "no token 'no-such-token'" in absent.output and "nothing was changed" in absent.output
    monkeypatch.setenv("STRONGROOM_NEW_PKCS11_PIN", "wrong-pin-9876")
    wrong = run(instance, "keys", "rotate-kek", "--to", "pkcs11", "--token-label", "hsm-a")
    assert wrong.exit_code == 2 and "PIN" in wrong.output and "wrong-pin-9876" not in wrong.output
    assert file_digest(instance / "strongroom.json") == config
    assert run(instance, "keys", "status", "--json").output == keys
    assert show(instance, "kept.0@example.org").exit_code == 0


@pytest.mark.parametrize("where", ["rewrap", "settings"])
def test_a_rotation_killed_part_way_is_finished_by_running_it_again(instance: Path, where: str) -> None:
    """Fault: SIGKILL (OOM killer, power cut) in the middle of `keys rotate-kek`."""
    killed = subprocess.run([sys.executable, "-c", KILLED_ROTATION, str(instance), where], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == -9, killed.stderr
    assert json.loads((instance / "strongroom.json").read_text())["key_provider"] == "local"
    if where == "rewrap":  # rolled back: the local KEK still opens everything
        assert show(instance, "kept.2@example.org").exit_code == 0
    again = run(instance, "keys", "rotate-kek", "--to", "pkcs11", "--token-label", "hsm-a", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["resumed"] is (where == "settings")
    (instance / "kek.key").unlink()
    shown = show(instance, "kept.2@example.org")
    assert shown.exit_code == 0 and json.loads(shown.output)["email"] == "kept.2@example.org", shown.output


@pytest.mark.controls("PCI-DSS-3.7.4")
def test_the_kek_moves_from_one_token_to_another(instance: Path, tmp_path: Path) -> None:
    assert run(instance, "keys", "rotate-kek", "--to", "pkcs11", "--token-label", "hsm-a").exit_code == 0
    (instance / "kek.key").unlink()
    pin_file = tmp_path / "hsm-b.pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    moved = run(instance, "keys", "rotate-kek", "--to", "pkcs11", "--token-label", "hsm-b",
                "--pin-file", str(pin_file), "--json")
    assert moved.exit_code == 0, moved.output
    config = json.loads((instance / "strongroom.json").read_text())
    assert config["pkcs11_token_label"] == "hsm-b" and config["pkcs11_pin_file"] == str(pin_file.resolve())
    assert show(instance, "kept.0@example.org").exit_code == 0
    assert run(instance, "audit", "verify").exit_code == 0
    # Backups and their drill work from the token too (the drill builds a second
    # instance over the same token and closes it while the first goes on).
    created = run(instance, "backup", "create")
    assert created.exit_code == 0, created.output
    drilled = run(instance, "backup", "drill")
    assert drilled.exit_code == 0, drilled.output


def test_doctor_accepts_production_with_the_kek_in_a_token_and_no_key_file(
        instance: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(instance, "keys", "rotate-kek", "--to", "pkcs11", "--token-label", "hsm-a").exit_code == 0
    (instance / "kek.key").unlink()
    config = json.loads((instance / "strongroom.json").read_text())
    (instance / "strongroom.json").write_text(json.dumps({**config, "environment": "production"}))
    checks = {c["check"]: c for c in json.loads(run(instance, "doctor", "--json").output)}
    assert not any("local file" in name or "KEK file" in name for name in checks)
    assert checks["KEK unlocks the key store and the database answers"]["passed"]
    # Without the PIN the token stays shut, and doctor says what is missing.
    monkeypatch.delenv("STRONGROOM_PKCS11_PIN")
    unlocked = {c["check"]: c for c in json.loads(run(instance, "doctor", "--json").output)}[
        "KEK unlocks the key store and the database answers"]
    assert not unlocked["passed"] and "STRONGROOM_PKCS11_PIN" in unlocked["detail"]
