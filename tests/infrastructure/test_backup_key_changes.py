"""Incremental key backups (issue 15 item 5; R4.2, R4.6), on SQLite and on PostgreSQL.

An increment copies only the wrapped keys made and the ledger entries added since
the key backup before it; a restore reads the chain back to its full export and
gives exactly the key store as it was, erased customers still erased. Attacks and
faults named: a key backup in the chain swapped for another (the restore and verify
refuse), an increment whose base generation key has expired (the restore is
refused, never completed with keys missing).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from application.errors import CustomerErased
from infrastructure.backup import create as create_module
from infrastructure.backup.create import create_backup
from infrastructure.backup.generations import GENERATIONS_SUBJECT, generation_kind, open_keys
from infrastructure.backup.manifest import KEYS, ManifestSigner, manifest_path, segment_path
from infrastructure.backup.restore import RestoreRefused, restore_backup
from infrastructure.backup.verify import verify_target
from tests.infrastructure.test_backup import _restored_app, live, register, target  # noqa: F401 - fixtures


def keys_manifest(target, backup_id):
    return json.loads(target.read(manifest_path(KEYS, backup_id)))


def keys_copied(live, target, backup_id):
    return open_keys(live.keyring, target.read(segment_path(KEYS, backup_id, "keys.seg")))


def live_keys(built):
    return {(k.subject_id, k.kind) for k in built.keyring.store.all_keys() if k.subject_id != GENERATIONS_SUBJECT}


def test_an_increment_copies_only_the_keys_made_or_destroyed_since_the_last_backup(live, target):
    old = register(live.app, 6)
    full = create_backup(live, target)
    assert keys_manifest(target, full.backup_id)["changes"] is False
    assert len(keys_copied(live, target, full.backup_id)["data_keys"]) == len(live_keys(live))
    at_full = live_keys(live)

    new = register(live.app, 2, start=100)
    live.app.erase_customer(old[2], "GDPR Art. 17 request")
    increment = create_backup(live, target)

    manifest = keys_manifest(target, increment.backup_id)
    assert manifest["changes"] is True and manifest["base"]["backup_id"] == full.backup_id
    assert manifest["previous"]["backup_id"] == full.backup_id
    copied = keys_copied(live, target, increment.backup_id)
    # Exactly the keys made since the full backup: the new customers' (unless their keys
    # were made ahead before it, issue 15 item 1) and any made ahead for the next ones.
    made_since = live_keys(live) - at_full
    assert {(s, k) for s, k, *_ in copied["data_keys"]} == made_since
    assert {key for key in live_keys(live) if key[0] in new} <= made_since | at_full
    assert {(s, k) for s, k, _ in copied["destroyed_keys"]} == {(old[2], "profile"), (old[2], "kyc")}

    nothing = create_backup(live, target)  # nothing changed: nothing copied
    assert keys_copied(live, target, nothing.backup_id)["data_keys"] == []
    assert verify_target(target, ManifestSigner(live.keyring)).ok


def test_a_restore_from_a_full_backup_and_increments_gives_exactly_the_key_store_then(live, target, tmp_path):
    ids = register(live.app, 4)
    create_backup(live, target)
    ids += register(live.app, 3, start=10)
    live.app.erase_customer(ids[1], "GDPR Art. 17 request")  # in the full copy, erased since
    create_backup(live, target)
    ids += register(live.app, 2, start=20)
    live.app.erase_customer(ids[5], "GDPR Art. 17 request")  # made in the first increment
    create_backup(live, target)
    expected = live_keys(live)

    result = restore_backup(live=live, target=target, into_url=f"sqlite:///{tmp_path / 'r.sqlite'}")
    restored = _restored_app(live, result.into, result.keys_into)
    try:
        assert live_keys(restored) == expected
        for erased in (ids[1], ids[5]):
            assert restored.keyring.status(erased) == {"profile": "destroyed", "kyc": "destroyed"}
            with pytest.raises(CustomerErased):
                restored.app.get_customer(erased)
        assert restored.app.get_customer(ids[0])["email"] == "c0@example.org"
        assert restored.app.get_customer(ids[8])["email"] == "c21@example.org"
    finally:
        restored.close()


def test_a_key_backup_swapped_into_the_chain_is_refused(live, target, tmp_path):
    """The attack: replace the full key backup an increment builds on with another
    signed one (an older or a different backup's), to restore other keys."""
    register(live.app, 2)
    first = create_backup(live, target)
    register(live.app, 2, start=10)
    second = create_backup(live, target)
    register(live.app, 1, start=20)
    create_backup(live, target)
    # The second key manifest, signed, put where the first one was.
    target.write(manifest_path(KEYS, first.backup_id), target.read(manifest_path(KEYS, second.backup_id)))

    assert not verify_target(target, ManifestSigner(live.keyring)).ok
    with pytest.raises(Exception, match="SHA-256"):
        restore_backup(live=live, target=target, into_url=f"sqlite:///{tmp_path / 'r.sqlite'}")


def test_an_increment_never_outlives_the_generation_of_the_backup_it_adds_to(live, target, tmp_path):
    """An increment holds only the keys made since its base, so once the base's
    generation key is destroyed (expired) the chain is refused, not restored with
    the older keys missing; and the next backup after half the retention is full
    again, so the newest chain never leans on a generation about to expire."""
    register(live.app, 2)
    full = create_backup(live, target)
    register(live.app, 1, start=10)
    create_backup(live, target)
    live.keyring.destroy(GENERATIONS_SUBJECT, [generation_kind(full.backup_id)])
    with pytest.raises(RestoreRefused, match="expired"):
        restore_backup(live=live, target=target, into_url=f"sqlite:///{tmp_path / 'r.sqlite'}")


def test_past_half_the_retention_the_next_key_backup_is_full_again(live, target, monkeypatch):
    register(live.app, 2)
    create_backup(live, target)
    register(live.app, 1, start=10)
    assert keys_manifest(target, create_backup(live, target).backup_id)["changes"] is True
    later = create_module.utc_now() + timedelta(days=live.settings.key_backup_retention_days / 2 + 1)
    monkeypatch.setattr(create_module, "utc_now", lambda: later)
    rebased = create_backup(live, target)
    manifest = keys_manifest(target, rebased.backup_id)
    assert manifest["changes"] is False and manifest["base"]["backup_id"] == rebased.backup_id
    assert len(keys_copied(live, target, rebased.backup_id)["data_keys"]) == len(live_keys(live))


def test_when_the_newest_key_is_destroyed_the_next_key_backup_stays_exact(live, target, tmp_path):
    """SQLite reuses the rowid of a deleted newest row, so a rowid mark at it no longer
    tells new keys from old: the next key backup copies everything there (PostgreSQL's
    snapshot mark still holds, and copies only the changes)."""
    ids = register(live.app, 2)
    create_backup(live, target)
    ids += register(live.app, 1, start=10)
    second = create_backup(live, target)
    sqlite = live.keyring.store.db.dialect == "sqlite"
    marked = keys_manifest(target, second.backup_id)["mark"]["data_keys"][1] if sqlite else None
    live.app.erase_customer(ids[2], "GDPR Art. 17 request")
    ids += register(live.app, 1, start=20)
    third = create_backup(live, target)
    expected = live_keys(live)

    # On SQLite the increment holds only while the row at the mark is still there. Since
    # keys are made ahead (issue 15), the newest row at a backup is often a made-ahead
    # pair or the generation key rather than the last customer's, so whether this
    # erasure removed the marked row depends on what was newest: the check follows it.
    gone = sqlite and marked not in {k.subject_id for k in live.keyring.store.all_keys()}
    assert keys_manifest(target, third.backup_id)["changes"] is (not sqlite or not gone)
    result = restore_backup(live=live, target=target, into_url=f"sqlite:///{tmp_path / 'r.sqlite'}")
    restored = _restored_app(live, result.into, result.keys_into)
    try:
        assert live_keys(restored) == expected
        assert restored.app.get_customer(ids[3])["email"] == "c20@example.org"
        with pytest.raises(CustomerErased):
            restored.app.get_customer(ids[2])
    finally:
        restored.close()
