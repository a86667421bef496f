"""The operator's story from outside, on the embedded default: import, back up, verify,
drill, restore to a position into a new SQLite store; then a flipped byte, an erasure
after the backup, a restore aimed at the live store, and a revert."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from application.context import acting_as
from cli.main import main
from infrastructure.composition import Settings, build
from tests.application.conftest import OPERATOR


def run(instance: Path, *args: str):
    return CliRunner().invoke(main, ["--instance", str(instance), *args], catch_exceptions=False)


def customer_line(n: int) -> str:
    return json.dumps({
        "type": "individual", "full_name": f"Backup Plantedname {n}", "date_of_birth": "1980-02-03",
        "email": f"backup.planted.{n}@example.org", "phone": f"+44 7700 9001{n:02d}",
        "address": {"line1": f"{n} Planted Road", "city": "London", "postcode": "SW1A 1AA", "country": "GB"},
        "risk_rating": "low",
    })


def _ids(instance: Path) -> list[str]:
    built = build(Settings.load(instance))
    try:
        return [r["id"] for r in built.app.list_customers(limit=100)]
    finally:
        built.close()


def test_backup_verify_drill_restore_and_what_an_operator_sees(tmp_path):
    instance = tmp_path / "instance"
    assert run(instance, "init", "--json").exit_code == 0
    lines = tmp_path / "customers.jsonl"
    lines.write_text("\n".join(customer_line(n) for n in range(4)) + "\n")
    imported = run(instance, "customers", "import", str(lines), "--portfolio", "retail", "--json")
    assert json.loads(imported.output)["imported"] == 4

    created = run(instance, "backup", "create", "--json")
    assert created.exit_code == 0, created.output
    (backup,) = json.loads(created.output)["backups"]
    assert backup["target"] == "local" and backup["rows"] >= 4
    assert run(instance, "backup", "verify").exit_code == 0
    drill = run(instance, "backup", "drill", "--json")
    assert drill.exit_code == 0, drill.output
    assert json.loads(drill.output)["outcome"] == "succeeded"
    listed = json.loads(run(instance, "backup", "list", "--json").output)
    assert listed["status"]["last_good_drill"]["backup_id"] == backup["backup_id"]
    assert listed["targets"][0]["backups"][0]["backup_id"] == backup["backup_id"]
    status = json.loads(run(instance, "backup", "status", "--json").output)
    assert status["last_backups"]["local"]["backup_id"] == backup["backup_id"]

    # Planted values never appear in the backup folder (R1.3).
    for path in (instance / "backups").rglob("*"):
        if path.is_file():
            assert b"Plantedname" not in path.read_bytes() and b"backup.planted" not in path.read_bytes()

    ids = _ids(instance)
    erased = ids[0]
    assert run(instance, "customers", "erase", erased, "--reason", "GDPR Art. 17 request").exit_code == 0

    # Restore to a position into a new SQLite store: the erased customer stays erased.
    into = tmp_path / "restored.sqlite"
    last = str(backup["last_position"])
    restored = run(instance, "restore", "--from", "local", "--position", last, "--into", f"sqlite:///{into}", "--json")
    assert restored.exit_code == 0, restored.output
    outcome = json.loads(restored.output)
    assert outcome["position"] == backup["last_position"] == outcome["rows"]
    # The relationship is open, so an AML hold keeps the KYC key (R5.4): the profile key
    # is the one the ledger withholds from the restored key store.
    assert outcome["keys_withheld_by_erasure_ledger"] == 1
    settings = Settings.load(instance, {"database_url": f"sqlite:///{into}",
                                        "keys_database_url": outcome["keys_into"]})
    store = build(settings)
    try:
        with acting_as(OPERATOR):
            assert store.app.recorder.max_notification_id() == backup["last_position"]
            readable = {r["id"] for r in store.app.list_customers(limit=100)}
            assert erased not in readable and readable == set(ids) - {erased}
    finally:
        store.close()

    # Into the live store: refused, usage error.
    live = run(instance, "restore", "--from", "local", "--position", "2", "--into",
               f"sqlite:///{instance / 'strongroom.sqlite'}")
    assert live.exit_code == 2 and "live store" in live.output
    assert run(instance, "restore", "--from", "local", "--into", f"sqlite:///{tmp_path / 'n.sqlite'}").exit_code == 2
    assert run(instance, "restore", "--from", "nowhere", "--position", "1",
               "--into", f"sqlite:///{tmp_path / 'n.sqlite'}").exit_code == 2

    # One flipped byte in a segment: verify fails and names the file.
    segment = next((instance / "backups" / "local" / "events").rglob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[200] ^= 0x20
    segment.write_bytes(bytes(data))
    verified = run(instance, "backup", "verify")
    assert verified.exit_code == 1
    assert str(segment.relative_to(instance / "backups" / "local")) in verified.output
    assert run(instance, "backup", "drill").exit_code == 1


def test_customers_revert_from_the_command_line(tmp_path):
    instance = tmp_path / "instance"
    assert run(instance, "init", "--json").exit_code == 0
    lines = tmp_path / "one.jsonl"
    lines.write_text(customer_line(7) + "\n")
    assert run(instance, "customers", "import", str(lines), "--portfolio", "retail").exit_code == 0
    (customer_id,) = _ids(instance)
    time.sleep(0.02)
    good = datetime.now(UTC).isoformat()
    time.sleep(0.02)
    built = build(Settings.load(instance))
    try:
        with acting_as(OPERATOR):
            built.app.update_customer(customer_id, {"email": "mistake@example.org"})
    finally:
        built.close()

    reverted = run(instance, "customers", "revert", customer_id, "--to", good, "--reason", "wrong record", "--json")
    assert reverted.exit_code == 0, reverted.output
    assert json.loads(reverted.output)["version"] == 3
    shown = json.loads(run(instance, "customers", "show", "--purpose", "support ticket 42", customer_id).output)
    assert shown["email"] == "backup.planted.7@example.org"
    assert run(instance, "customers", "revert", customer_id, "--to", "2000-01-01T00:00:00+00:00",
               "--reason", "too early").exit_code == 1
    assert run(instance, "customers", "revert", customer_id, "--to", "yesterday",
               "--reason", "x").exit_code == 2


def test_a_second_backup_create_while_one_runs_exits_1_naming_the_owner(tmp_path):
    """Fault: the cron job's `backup create` still uploading when an operator starts another."""
    import threading

    from infrastructure.backup.create import create_backup
    from infrastructure.backup.targets import LocalTarget

    instance = tmp_path / "instance"
    assert run(instance, "init", "--json").exit_code == 0
    lines = tmp_path / "customers.jsonl"
    lines.write_text("\n".join(customer_line(n) for n in range(6)) + "\n")
    assert run(instance, "customers", "import", str(lines), "--portfolio", "retail").exit_code == 0

    reached, go = threading.Event(), threading.Event()

    class Paused(LocalTarget):
        def write(self, path, data):
            super().write(path, data)
            reached.set()
            assert go.wait(60)

    first_run = build(Settings.load(instance))
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=create_backup(
        first_run, Paused("local", instance / "backups" / "local"), segment_rows=2)))
    thread.start()
    try:
        assert reached.wait(60)
        second = run(instance, "backup", "create", "--json")
        assert second.exit_code == 1, second.output
        (refused,) = json.loads(second.output)["backups"]
        assert refused["ok"] is False and "locked by another run" in refused["error"]
        assert "backup create by" in refused["error"] and "--wait" in refused["error"]
        text = run(instance, "backup", "create")
        assert text.exit_code == 1 and "local: FAILED: target local is locked by another run" in text.output
    finally:
        go.set()
        thread.join(60)
        first_run.close()
    assert outcome["result"].rows >= 6

    after = run(instance, "backup", "create", "--json")
    assert after.exit_code == 0, after.output
    assert json.loads(after.output)["backups"][0]["after_position"] == outcome["result"].last_position
    assert run(instance, "backup", "verify").exit_code == 0
    drill = run(instance, "backup", "drill")
    assert drill.exit_code == 0, drill.output


def test_a_restored_instance_passes_audit_verify_and_a_killed_restore_is_refused_until_rerun(tmp_path, monkeypatch):
    """Fault: the restore dies (an OSError) after its events are in; verify must not pass it."""
    from infrastructure.backup import restore as restore_module

    instance = tmp_path / "instance"
    assert run(instance, "init", "--json").exit_code == 0
    lines = tmp_path / "customers.jsonl"
    lines.write_text("\n".join(customer_line(n) for n in range(3)) + "\n")
    assert run(instance, "customers", "import", str(lines), "--portfolio", "retail").exit_code == 0
    assert run(instance, "audit", "checkpoint").exit_code == 0
    created = run(instance, "backup", "create", "--json")
    assert created.exit_code == 0, created.output

    restored = tmp_path / "restored"
    restored.mkdir()
    into = f"sqlite:///{restored / 'strongroom.sqlite'}"
    keys_into = f"sqlite:///{restored / 'keys.sqlite'}"
    config = json.loads((instance / "strongroom.json").read_text()) if (instance / "strongroom.json").exists() else {}
    config.update(database_url=into, keys_database_url=keys_into)
    config.pop("backup_targets", None)
    (restored / "strongroom.json").write_text(json.dumps(config))
    (restored / "kek.key").write_bytes((instance / "kek.key").read_bytes())
    (restored / "kek.key").chmod(0o600)
    restore = ["restore", "--from", "local", "--position", str(json.loads(created.output)["backups"][0]["last_position"]),
               "--into", into, "--keys-into", keys_into, "--checkpoints-into", str(restored / "checkpoints"), "--json"]

    def disk_gone(*args, **kwargs):
        raise OSError("injected fault: the disk went away after the events were in")

    with monkeypatch.context() as patched:
        patched.setattr(restore_module, "_restore_checkpoints", disk_gone)
        killed = run(instance, *restore)
    assert killed.exit_code == 1 and "restore failed" in killed.output
    refused = run(restored, "audit", "verify")
    assert refused.exit_code == 2 and "incomplete restore" in refused.output

    again = run(instance, *restore)
    assert again.exit_code == 0, again.output
    outcome = json.loads(again.output)
    assert outcome["started_over"] and outcome["checkpoints_restored"] >= 1
    verified = run(restored, "audit", "verify", "--json")
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.output)
    assert report["passed"] and report["checkpoints_verified"] == outcome["checkpoints_restored"]
