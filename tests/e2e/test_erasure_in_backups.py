"""After an erasure and the key-backup retention, no backup on any target opens the
customer's data, even with the KEK (R4.2, R4.6, R5.4; issue 13 item 6).

The attack, as an operator holding the KEK would try it: take a `keys.seg` from a
backup made before the erasure (from the local target or the SFTP host, or a copy of
one kept aside), find the erased customer's wrapped profile key in it, unwrap it with
the KEK, and decrypt the customer's events. Before the key backup's generation
expires this still works (the window the certificate states); after `retention run`
with the clock moved past the retention, the generation key is destroyed and the
copies pruned on every target, and nothing opens. Then planted values are searched
in the raw store files, their dumps and both targets.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from application.context import acting_as
from cli.main import main
from domain.catalogue import KeyKind
from infrastructure.backup.generations import GENERATIONS_SUBJECT, SEALED_FORMAT, _aad, generation_kind
from infrastructure.composition import Settings, build
from infrastructure.crypto.envelope import SubjectMapper
from infrastructure.crypto.kek import KekError, LocalKek
from infrastructure.crypto.keyring import _context
from tests.application.conftest import OPERATOR
from tests.cli.test_cli import NEEDLES, PLANTED
from tests.e2e.test_sftp_backup import sshd  # noqa: F401 - the real OpenSSH server fixture

DAY = timedelta(days=1)


def cli(instance: Path, *args: str):
    result = CliRunner().invoke(main, ["--instance", str(instance), *args], catch_exceptions=False)
    return result


class _OneKey:
    """The key ring the attacker assembles: one recovered data key."""

    def __init__(self, subject: str, kind: str, key: bytes) -> None:
        self.wanted, self.key = (subject, kind), key

    def aead(self, subject: str, kind: object) -> AESGCM:
        if (subject, str(kind)) != self.wanted:
            raise KeyError(kind)
        return AESGCM(self.key)


def operator_opens(keys_seg: bytes, instance: Path, customer_id: str, live) -> str | None:
    """What an operator with the KEK and this key backup reads of the customer's
    profile (the planted email), or None when the backup no longer opens."""
    kek = LocalKek.load(instance / "kek.key")
    document = json.loads(keys_seg)
    if document.get("format") == SEALED_FORMAT:
        generation = document["generation"]
        with sqlite3.connect(instance / "keys.sqlite") as db:  # the live key store, read raw
            row = db.execute("SELECT wrapped FROM data_keys WHERE subject_id = ? AND kind = ?",
                             (GENERATIONS_SUBJECT, generation_kind(generation))).fetchone()
        if row is None:
            return None
        key = kek.unwrap(bytes(row[0]), _context(GENERATIONS_SUBJECT, generation_kind(generation)))
        document = json.loads(AESGCM(key).decrypt(base64.b64decode(document["nonce"]),
                                                  base64.b64decode(document["ciphertext"]), _aad(generation)))
    wrapped = [k for k in document["data_keys"] if k[0] == customer_id and k[1] == "profile"]
    if not wrapped:
        return None
    try:
        dek = kek.unwrap(base64.b64decode(wrapped[0][2]), _context(customer_id, "profile"))
    except KekError:
        return None
    mapper = SubjectMapper(live.app.mapper.transcoder, _OneKey(customer_id, "profile", dek))  # type: ignore[arg-type]
    from uuid import UUID
    first = live.app.recorder.select_events(UUID(customer_id))[0]
    return str(mapper.open_parts(first, only=KeyKind.PROFILE)[KeyKind.PROFILE]["email"])


def _grep(root: Path) -> dict[str, list[bytes]]:
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits = [n for n in NEEDLES if n in data]
            if hits:
                found[str(path)] = hits
    return found


@pytest.mark.controls("GDPR-17", "PCI-DSS-3.7.5")
def test_no_backup_on_any_target_opens_an_erased_customer_after_the_retention(sshd, tmp_path):  # noqa: F811
    instance = tmp_path / "instance"
    assert cli(instance, "init", "--json").exit_code == 0
    config = json.loads((instance / "strongroom.json").read_text())
    s = sshd.settings()
    config["backup_targets"].append({"name": "offsite", "kind": "sftp", "host": s.host, "port": s.port,
                                     "username": s.username, "key_file": s.key_file,
                                     "known_hosts": s.known_hosts, "path": s.path})
    (instance / "strongroom.json").write_text(json.dumps(config))
    local_root = instance / "backups" / "local"

    live = build(Settings.load(instance))
    try:
        with acting_as(OPERATOR):
            customer = live.app.register_customer({
                "type": "individual", "full_name": PLANTED["full_name"], "date_of_birth": PLANTED["date_of_birth"],
                "national_id": PLANTED["national_id"], "email": PLANTED["email"], "phone": PLANTED["phone"],
                "address": PLANTED["address"], "portfolio": "retail", "risk_rating": "low",
                "cards": [{"pan": PLANTED["pan"], "expiry": "11/30"}], "bank_accounts": [{"iban": PLANTED["iban"]}],
            })
            cid = customer["id"]
            live.app.record_interaction(cid, kind="call", channel="phone", notes="Plantedname called")
    finally:
        live.close()

    created = cli(instance, "backup", "create", "--json")
    assert created.exit_code == 0, created.output
    old_segments = {root: next((root / "keys").rglob("keys.seg")) for root in (local_root, sshd.root)}
    kept_aside = {root: path.read_bytes() for root, path in old_segments.items()}  # the attacker's copies

    erased = cli(instance, "customers", "erase", cid, "--reason", "DSR-2026-9", "--certificate",
                 str(tmp_path / "certificate.json"), "--json")
    assert erased.exit_code == 0, erased.output
    outcome = json.loads(erased.output)
    assert outcome["keys_destroyed"] == ["profile"] and outcome["kept"] == {"kyc": ["aml_retention"]}
    certificate = json.loads((tmp_path / "certificate.json").read_text())["certificate"]
    erased_at = datetime.fromisoformat(certificate["erased_at"])
    assert certificate["complete_in_backups_by"] == (
        datetime.fromisoformat(certificate["hold_until"]) + 35 * DAY).isoformat()
    verified = cli(instance, "audit", "verify-certificate", str(tmp_path / "certificate.json"),
                   "--public-key", str(instance / "audit-signing.pub"))
    assert verified.exit_code == 0, verified.output

    live = build(Settings.load(instance))
    try:
        # Within the key backup's retention the old copies still open: the window the
        # certificate states, and proof that the attack below is a real one.
        for root, data in kept_aside.items():
            assert operator_opens(data, instance, cid, live) == PLANTED["email"], root
        # The newest backup, made after the erasure, never held the key.
        assert cli(instance, "backup", "create", "--json").exit_code == 0
        newest = max((local_root / "keys").rglob("keys.seg"), key=lambda p: p.parent.name)
        assert operator_opens(newest.read_bytes(), instance, cid, live) is None
    finally:
        live.close()

    # The retention period passes (the clock moved): generations expire, targets pruned.
    later = (erased_at + 36 * DAY).isoformat()
    ran = cli(instance, "retention", "run", "--now", later, "--json")
    assert ran.exit_code == 0, ran.output
    summary = json.loads(ran.output.splitlines()[-1])["summary"]["key_backups"]
    assert len(summary["generations_expired"]) == 4  # two runs x two targets
    assert {name: len(ids) for name, ids in summary["pruned"].items()} == {"local": 2, "offsite": 2}
    for root, path in old_segments.items():
        assert not path.exists(), root  # pruned on every target
        assert not list((root / "keys").rglob("keys.seg"))
    live = build(Settings.load(instance))
    try:
        for root, data in kept_aside.items():
            assert operator_opens(data, instance, cid, live) is None, root  # even a copy kept aside
        with acting_as(OPERATOR):
            assert live.app.erasure_record(cid)["status"] == "kyc_retained"
    finally:
        live.close()
    # The verifier accepts key backups pruned on purpose (their manifests stay).
    checked = cli(instance, "backup", "verify", "--json")
    assert checked.exit_code == 0, checked.output

    # The AML hold ends: the KYC key goes too.
    done = cli(instance, "retention", "run", "--now", (erased_at + 5 * 365.25 * DAY + DAY).isoformat(), "--json")
    assert json.loads(done.output.splitlines()[0])["action"] == "destroy_kyc"

    # Planted values, searched byte for byte: the instance (SQLite, WAL, keys), both
    # targets, and a dump of each store.
    assert _grep(instance) == {} and _grep(sshd.root) == {}
    for name in ("strongroom.sqlite", "keys.sqlite"):
        with sqlite3.connect(instance / name) as db:
            dump = "\n".join(db.iterdump()).encode()
        assert [n for n in NEEDLES if n in dump] == [], name
