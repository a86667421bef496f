"""`strongroom audit ...` from the outside, as an operator and an auditor use it.

A store filled through the command line verifies (exit 0); one byte flipped in the
raw store with the triggers dropped is found (exit 1, naming the position), on
SQLite and on PostgreSQL; replay answers who did what and who saw what, with the
purpose; an evidence bundle verifies offline with no database and no keys, and
fails when one byte of any of its files changes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from application.context import RequestContext, acting_as
from cli.main import main
from infrastructure.audit.bundle import MANIFEST_TAG
from infrastructure.composition import Settings, build
from tests.application.conftest import customer_fields
from tests.infrastructure.chain_attacks import RawStore

AGENT = RequestContext(actor_id="staff-agent-7", via="api", session_id="s-7", client_addr="10.0.0.7",
                       purpose="customer called about a refund")


def run(instance: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--instance", str(instance), *args], catch_exceptions=False)


@pytest.fixture
def instance(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`strongroom init`, then three customers imported through the command line."""
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", database_url)
    monkeypatch.setenv("STRONGROOM_CHECKPOINT_SECONDS", "3600")
    folder = tmp_path / "instance"
    assert run(folder, "init", "--json").exit_code == 0
    lines = tmp_path / "customers.jsonl"
    lines.write_text("".join(
        json.dumps(customer_fields(email=f"ada.{n}@example.org", full_name=f"Ada Testperson {n}")) + "\n"
        for n in range(3)
    ))
    result = run(folder, "customers", "import", str(lines), "--json")
    assert result.exit_code == 0, result.output
    yield folder


def _customers(instance: Path) -> list[str]:
    result = run(instance, "audit", "replay", "--kind", "change", "--format", "jsonl", "--no-values")
    return [e["stream_id"] for e in map(json.loads, result.output.splitlines()) if e["event"] == "Customer.Registered"]


def _as_the_api(instance: Path, action: Any) -> None:
    built = build(Settings.load(instance))
    try:
        with acting_as(AGENT):
            action(built)
    finally:
        built.close()


def test_a_store_filled_through_the_command_line_verifies(instance: Path) -> None:
    assert (instance / "audit-signing.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    result = run(instance, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("chain intact:")
    report = json.loads(run(instance, "audit", "verify", "--json").output)
    assert report["intact"] is True and report["rows_checked"] >= 4
    # Every process that wrote left a checkpoint of what it wrote, in both places.
    assert report["latest_checkpoint"]["position"] == report["head"]["position"]
    assert list((instance / "checkpoints").glob("checkpoint-*.json"))


def test_one_flipped_byte_in_the_raw_store_is_found(instance: Path, database_url: str) -> None:
    raw = RawStore(database_url)
    target = raw.positions()[2]
    raw.flip_byte(target)
    result = run(instance, "audit", "verify")
    assert result.exit_code == 1
    assert result.output.startswith(f"TAMPERING FOUND at position {target}: the row's contents do not match its hash")


def test_a_checkpoint_on_demand(instance: Path) -> None:
    with_rows = json.loads(run(instance, "audit", "checkpoint", "--json").output)["checkpoint"]
    _as_the_api(instance, lambda b: b.app.access_log.record(kind="view", customer_ids=[], fields=[]))
    result = run(instance, "audit", "checkpoint")
    assert result.exit_code == 0
    assert f"checkpoint at position {with_rows['position'] + 1}" in result.output


@pytest.mark.controls("PCI-DSS-10.2.2", "PCI-DSS-10.4.1", "GDPR-33")
def test_replay_says_who_did_what_and_who_saw_what(instance: Path) -> None:
    ids = _customers(instance)
    _as_the_api(instance, lambda b: b.app.access_log.record(
        kind="reveal", customer_ids=[ids[0]], fields=["national_id"]))
    result = run(instance, "audit", "replay", "--customer", ids[0], "--format", "jsonl", "--purpose", "audit 7")
    assert result.exit_code == 0, result.output
    entries = [json.loads(line) for line in result.output.splitlines()]
    registered, reveal = entries[0], entries[-1]
    assert registered["event"] == "Customer.Registered" and registered["kind"] == "change"
    assert registered["actor_id"].startswith("operator:") and registered["purpose"] == "customer import"
    assert registered["values"]["cards"][0]["pan"] == "411111******1111"  # never more than BIN + last four
    assert reveal["kind"] == "access" and reveal["event"] == "reveal" and reveal["fields"] == ["national_id"]
    assert reveal["actor_id"] == "staff-agent-7" and reveal["purpose"] == "customer called about a refund"
    assert reveal["client_addr"] == "10.0.0.7" and reveal["session_id"] == "s-7"
    # By actor, as a table: one line per entry.
    table = run(instance, "audit", "replay", "--actor", "staff-agent-7", "--kind", "access").output
    assert "reveal/allowed" in table and ids[0] in table and "purpose=customer called about a refund" in table
    # The replay itself was recorded (PCI DSS 10.2.1.3).
    reads = run(instance, "audit", "replay", "--kind", "access", "--format", "jsonl").output
    assert any(json.loads(line)["event"] == "audit_read" for line in reads.splitlines())


@pytest.mark.controls("PCI-DSS-10.5.1")
def test_replay_of_an_erased_customer_keeps_who_when_and_why(instance: Path) -> None:
    ids = _customers(instance)
    assert run(instance, "customers", "erase", ids[1], "--reason", "GDPR Art. 17 request").exit_code == 0
    result = run(instance, "audit", "replay", "--customer", ids[1], "--format", "jsonl", "--purpose", "audit 7")
    entries = [json.loads(line) for line in result.output.splitlines()]
    registered = next(e for e in entries if e["event"] == "Customer.Registered")
    assert registered["erased"] is True and registered["values"] == "erased"
    assert registered["actor_id"].startswith("operator:") and registered["purpose"] == "customer import"
    assert "Ada Testperson 1" not in result.output
    erasure = next(e for e in entries if e["subject"] == "erasure")
    assert erasure["purpose"] == "erasure: GDPR Art. 17 request" and erasure["customer_ids"] == [ids[1]]
    assert run(instance, "audit", "verify").exit_code == 0  # the chain needs no customer key


def test_replay_refuses_a_bad_time(instance: Path) -> None:
    result = CliRunner().invoke(main, ["--instance", str(instance), "audit", "replay", "--since", "yesterday"])
    assert result.exit_code == 2 and "ISO-8601" in result.output


# -- evidence bundles ---------------------------------------------------------------------


@pytest.fixture
def bundle(instance: Path, tmp_path: Path) -> Path:
    out = tmp_path / "evidence"
    result = run(instance, "audit", "export", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_a_bundle_verifies_offline_with_no_database_and_no_keys(
    bundle: Path, instance: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The auditor has the bundle and the published public key, nothing else.
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    public_key = auditor / "audit-signing.pub"
    public_key.write_bytes((instance / "audit-signing.pub").read_bytes())
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    result = CliRunner().invoke(main, ["--instance", str(auditor / "no-instance"), "audit", "verify",
                                       "--bundle", str(bundle), "--public-key", str(public_key)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("chain intact:")
    assert not (auditor / "no-instance").exists()
    rows = [json.loads(line) for line in (bundle / "rows.jsonl").read_text().splitlines()]
    assert rows and all("state" not in row and len(row["state_sha256"]) == 64 for row in rows)
    assert "Ada Testperson" not in "".join(p.read_text() for p in bundle.rglob("*") if p.is_file())


def _verify(bundle: Path, instance: Path, *pin: str) -> Result:
    """`audit verify --bundle`, pinned to the instance's published key unless `pin` says otherwise."""
    return CliRunner().invoke(main, ["audit", "verify", "--bundle", str(bundle),
                                     *(pin or ("--public-key", str(instance / "audit-signing.pub")))])


def test_a_bundle_fails_when_one_byte_of_any_file_changes(bundle: Path, instance: Path) -> None:
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"manifest.json", "manifest.sig", "audit-signing.pub", "rows.jsonl",
                                        "checkpoints.jsonl", "verification.json", "activity.json"}
    for path in files:
        original = path.read_bytes()
        changed = bytearray(original)
        changed[len(changed) // 2] ^= 0x01
        path.write_bytes(bytes(changed))
        try:
            result = _verify(bundle, instance)
            assert result.exit_code == 1, f"a changed byte in {path.name} went unnoticed"
            assert "TAMPERING FOUND" in result.output
        finally:
            path.write_bytes(original)
    assert _verify(bundle, instance).exit_code == 0


def test_a_bundle_pinned_to_another_key_fails(bundle: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from infrastructure.audit.signer import public_pem

    other = tmp_path / "other.pub"
    other.write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))
    result = CliRunner().invoke(main, ["audit", "verify", "--bundle", str(bundle), "--public-key", str(other)])
    assert result.exit_code == 1 and "not the pinned key" in result.output


def _resign(bundle: Path, instance: Path) -> None:
    """What an insider holding the KEK can do: rewrite the manifest's file hashes and
    sign it again with the instance's own audit key (issue 11)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (bundle / name).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    (bundle / "manifest.json").write_bytes(manifest_bytes)
    built = build(Settings.load(instance))
    try:
        signature = built.tamper_evidence.signer.sign(MANIFEST_TAG + manifest_bytes)
    finally:
        built.close()
    (bundle / "manifest.sig").write_text(signature.hex() + "\n")


def test_a_bundle_verifies_only_against_a_pinned_key(bundle: Path, instance: Path, tmp_path: Path) -> None:
    # Issue 11, item 4: without a pin, a bundle forged whole (its own key, its own
    # signature) passed with exit 0. The key inside a bundle proves nothing.
    unpinned = CliRunner().invoke(main, ["audit", "verify", "--bundle", str(bundle)])
    assert unpinned.exit_code == 1 and "no pinned key" in unpinned.output
    exported = run(instance, "audit", "export", "--out", str(tmp_path / "again"), "--json")
    fingerprint = json.loads(exported.output)["key_fingerprint"]
    assert len(fingerprint) == 64
    assert _verify(bundle, instance, "--key-fingerprint", fingerprint).exit_code == 0
    wrong = _verify(bundle, instance, "--key-fingerprint", "0" * 64)
    assert wrong.exit_code == 1 and "not the pinned key" in wrong.output


def test_readable_values_that_disagree_with_the_signed_ones_fail_even_when_signed_again(
    bundle: Path, instance: Path
) -> None:
    # Issue 11, item 4: an insider with the signing key rewrites what a person reads
    # (a row's recorded_at, a checkpoint's signed_at, the activity report) and signs
    # the manifest again; the chained and signed values beside them must win.
    def rewrite(name: str, change: Any) -> None:
        (bundle / name).write_text(change((bundle / name).read_text()))

    rows_text = (bundle / "rows.jsonl").read_text()
    first_row = json.loads(rows_text.splitlines()[0])
    checkpoint_text = (bundle / "checkpoints.jsonl").read_text()
    signed_at = json.loads(checkpoint_text.splitlines()[0])["signed_at"]
    activity_text = (bundle / "reports" / "activity.json").read_text()
    tamperings = {
        "a row's recorded_at": ("rows.jsonl", lambda text: text.replace(
            first_row["recorded_at"], "2020-01-01T00:00:00.000000+00:00", 1)),
        "a checkpoint's signed_at": ("checkpoints.jsonl", lambda text: text.replace(
            signed_at, "2020-01-01T00:00:00.000000+00:00", 1)),
        "the activity report": ("reports/activity.json", lambda text: text.replace(
            "operator:", "operator:someone-else-", 1)),
    }
    _resign(bundle, instance)  # signing again unchanged content changes nothing
    assert _verify(bundle, instance).exit_code == 0
    originals = {"rows.jsonl": rows_text, "checkpoints.jsonl": checkpoint_text,
                 "reports/activity.json": activity_text}
    for what, (name, change) in tamperings.items():
        rewrite(name, change)
        assert (bundle / name).read_text() != originals[name], what
        _resign(bundle, instance)
        result = _verify(bundle, instance)
        assert result.exit_code == 1, f"{what} rewritten and signed again went unnoticed"
        (bundle / name).write_text(originals[name])
        _resign(bundle, instance)
    assert _verify(bundle, instance).exit_code == 0


@pytest.mark.parametrize("text", [b"AB" * 64 + b"\n", b" " + b"ab" * 64, b"ab" * 32 + b" " + b"ab" * 32,
                                  b"ab" * 64 + b"\n\n", b"ab" * 63])
def test_the_signature_file_is_parsed_strictly(bundle: Path, instance: Path, text: bytes) -> None:
    signature = (bundle / "manifest.sig").read_bytes().strip()
    # The same signature, spelt loosely: fromhex() alone would take most of these.
    loose = text.replace(b"ab" * 64, signature).replace(b"AB" * 64, signature.upper()).replace(
        b"ab" * 32 + b" " + b"ab" * 32, signature[:64] + b" " + signature[64:])
    (bundle / "manifest.sig").write_bytes(loose)
    result = _verify(bundle, instance)
    assert result.exit_code == 1 and "manifest.sig" in result.output


def test_a_bundle_for_a_window_is_anchored_to_checkpoints(instance: Path, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    middle = datetime.now(UTC)
    _as_the_api(instance, lambda b: [
        b.app.access_log.record(kind="view", customer_ids=[str(uuid.uuid4())], fields=["email"]) for _ in range(3)
    ])
    out = tmp_path / "window"
    result = run(instance, "audit", "export", "--out", str(out), "--since", middle.isoformat(), "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["window"]["rows"] == 3
    assert manifest["range"]["anchor_checkpoint"] is not None  # the rows before are not shipped
    assert manifest["range"]["from_position"] == manifest["range"]["anchor_checkpoint"]
    assert _verify(out, instance).exit_code == 0
    activity = json.loads((out / "reports" / "activity.json").read_text())
    assert activity["by_actor"] == {"staff-agent-7": 3}


# -- a checkpoint folder that cannot be written -------------------------------------------


def _block_checkpoint_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Point `checkpoint_dir` below a regular file: every mkdir and open there fails with
    NotADirectoryError, even for root (chmod would not stop root). Removing the file
    repairs it."""
    blocker = tmp_path / "backup-mount"
    blocker.write_text("not a folder")
    folder = blocker / "checkpoints"
    monkeypatch.setenv("STRONGROOM_CHECKPOINT_DIR", str(folder))
    return blocker, folder


def test_an_unwritable_checkpoint_folder_is_reported_honestly_and_repaired_by_the_next_run(
    instance: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault: the checkpoint folder lies below a regular file (ENOTDIR), then the file is removed."""
    blocker, folder = _block_checkpoint_folder(tmp_path, monkeypatch)
    _as_the_api(instance, lambda b: b.app.access_log.record(kind="view", customer_ids=[], fields=[]))

    result = run(instance, "audit", "checkpoint")
    assert result.exit_code == 1
    assert "stored in the database" in result.stdout and "signed now" in result.stdout
    assert "copied to" not in result.output
    assert f"the copy to {folder} FAILED (NotADirectoryError) after 3 attempts" in result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.output
    head = json.loads(run(instance, "audit", "verify", "--json").output)["head"]["position"]
    assert f"position {head}," in result.stdout  # the row was written all the same

    # The next run signs nothing new, and still does not claim a copy it has not made.
    again = run(instance, "audit", "checkpoint", "--json")
    assert again.exit_code == 1
    answer = json.loads(again.stdout)
    assert answer["signed_now"] is False and answer["copied_to"] is None
    assert answer["copies_failed"]["error"] == "NotADirectoryError"
    assert head in answer["copies_failed"]["positions"]

    # Within the grace period verify passes (with a note); past it, it fails naming the positions.
    assert run(instance, "audit", "verify").exit_code == 0
    monkeypatch.setenv("STRONGROOM_CHECKPOINT_COPY_GRACE_SECONDS", "0")
    failed = run(instance, "audit", "verify")
    assert failed.exit_code == 1
    assert failed.output.startswith("CHECKPOINT COPIES MISSING:")
    assert f"{head}" in failed.output and "the chain itself is intact" in failed.output
    report = json.loads(run(instance, "audit", "verify", "--json").output)
    assert report["intact"] is True and report["passed"] is False
    assert head in report["checkpoint_copies_missing"]

    # The folder is repaired: the next run copies every checkpoint that had no copy.
    blocker.unlink()
    repaired = run(instance, "audit", "checkpoint")
    assert repaired.exit_code == 0, repaired.output
    copy = folder / f"checkpoint-{head:020d}.json"
    assert f"copied to {copy}" in repaired.output
    assert json.loads(copy.read_text())["position"] == head
    assert "earlier checkpoints copied that had no copy" in repaired.output
    assert len(list(folder.glob("checkpoint-*.json"))) == len(report["checkpoint_copies_missing"])
    verified = run(instance, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith("chain intact:")


def test_a_command_that_writes_into_an_unwritable_folder_leaves_the_copy_to_the_next_checkpoint(
    instance: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault: `customers import` runs while the checkpoint folder lies below a regular file."""
    blocker, folder = _block_checkpoint_folder(tmp_path, monkeypatch)
    monkeypatch.setenv("STRONGROOM_CHECKPOINT_COPY_GRACE_SECONDS", "0")
    lines = tmp_path / "more.jsonl"
    lines.write_text(json.dumps(customer_fields(email="grace.hopper@example.org")) + "\n")
    assert run(instance, "customers", "import", str(lines), "--json").exit_code == 0  # the rows are committed
    failed = run(instance, "audit", "verify", "--json")
    assert failed.exit_code == 1
    head = json.loads(failed.output)["head"]["position"]
    assert head in json.loads(failed.output)["checkpoint_copies_missing"]  # its own checkpoint was signed
    blocker.unlink()
    repaired = run(instance, "audit", "checkpoint", "--json")
    assert repaired.exit_code == 0, repaired.output
    assert json.loads(repaired.output)["signed_now"] is False
    assert (folder / f"checkpoint-{head:020d}.json").exists()
    assert run(instance, "audit", "verify").exit_code == 0


@pytest.mark.controls("ASVS-V1")
def test_a_purpose_with_a_new_line_cannot_forge_a_replay_line(instance: Path) -> None:
    """Attack (issue 10, item 10c; R3.5): an agent gives a reveal a purpose that ends the
    line and prints a second, innocent-looking entry, plus a bidi override and a terminal
    escape that would reorder or clear what the operator reads."""
    ids = _customers(instance)
    forged = ("refund\n   99999  2026-01-01T00:00:00Z  access  staff-admin-1  reveal/allowed  -  purpose=x"
              "\u202e\x1b[2J\u2028tail")
    tricky = RequestContext(actor_id="staff-agent-8", via="api", session_id="s-8", purpose=forged)
    built = build(Settings.load(instance))
    try:
        with acting_as(tricky):
            built.app.access_log.record(kind="reveal", customer_ids=[ids[0]], fields=["national_id"])
    finally:
        built.close()
    table = run(instance, "audit", "replay", "--actor", "staff-agent-8", "--kind", "access").output
    lines = [line for line in table.splitlines() if line != "1 entries"]  # the count goes to stderr
    assert len(lines) == 1, lines  # one entry, one line: nothing forged below it
    assert "99999" in lines[0] and "purpose=refund\\n   99999" in lines[0]
    assert "\\u202e" in lines[0] and "\\x1b[2J" in lines[0] and "\\u2028tail" in lines[0]
    assert not any(ch in table for ch in "\u202e\x1b\u2028\r")
    # JSON lines keep the purpose exactly as recorded: escaping is the table's job.
    entries = run(instance, "audit", "replay", "--actor", "staff-agent-8", "--format", "jsonl").output
    assert [json.loads(line)["purpose"] for line in entries.splitlines()] == [forged]
