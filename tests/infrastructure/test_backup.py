"""Backups to a folder, verified and restored (R4.1-R4.4), against the real stores.

Each scenario runs on SQLite and on PostgreSQL. Attacks named in the tests: a
flipped byte in a segment, a deleted segment, a forged manifest, a removed
increment, a removed newest backup, an interrupted run passed off as complete.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime

import psycopg
import pytest

from application.context import acting_as
from application.errors import CustomerErased
from infrastructure.backup.create import create_backup
from infrastructure.backup.eventrows import EventTable, TableRef
from infrastructure.backup.manifest import BackupCorrupt, ManifestSigner, canonical
from infrastructure.backup.restore import RestoreRefused, restore_backup
from infrastructure.backup.targets import LocalTarget
from infrastructure.backup.verify import verify_target
from infrastructure.composition import Settings, build
from infrastructure.crypto.kek import LocalKek
from infrastructure.backup.generations import open_keys
from tests.application.conftest import OPERATOR, customer_fields, make_components
from tests.conftest import PG_ADMIN_URL, _database_url


@pytest.fixture
def live(tmp_path, database_url):
    # No AML retention hold: erasures here destroy both keys, and the backups must
    # keep both destroyed (holds are tests/application/test_erasure_holds.py's).
    built = make_components(tmp_path, database_url, aml_retention_years=0)
    with acting_as(OPERATOR):
        yield built
    built.close()


@pytest.fixture
def target(tmp_path):
    return LocalTarget("local", tmp_path / "backups")


@pytest.fixture
def fresh_pg_url():
    """Another empty PostgreSQL database (restores go into a new store)."""
    name = f"sr_restore_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _database_url(name)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def register(app, n, start=0):
    return [app.register_customer(customer_fields(email=f"c{i}@example.org", national_id=f"QQ{i:06d}C"))["id"]
            for i in range(start, start + n)]


def stored_rows(built):
    """Columns and rows of the events table; times as instants, whatever the dialect's type."""
    table = EventTable(TableRef(built.settings.database_url, built.app.recorder.events_table_name))
    try:
        at = table.columns.index("recorded_at")
        rows = []
        for row in table.rows():
            stamp = row[at]["ts"] if isinstance(row[at], dict) else row[at]
            rows.append([*row[:at], datetime.fromisoformat(stamp), *row[at + 1:]])
        return table.columns, rows
    finally:
        table.close()


def backed_up_rows(target):
    rows = []
    for name in sorted(target.list("events")):
        if name.endswith(".manifest.json"):
            manifest = json.loads(target.read(f"events/{name}"))
            for segment in manifest["segments"]:
                lines = target.read(segment["file"]).decode().splitlines()
                rows.extend(json.loads(line) for line in lines[1:])
    return rows


@pytest.mark.controls("PCI-DSS-10.3.3")
def test_backups_are_incremental_and_hold_rows_exactly_as_stored(live, target):
    register(live.app, 12)
    first = create_backup(live, target, segment_rows=5)
    assert (first.after_position, first.rows, first.segments) == (0, 12, 3)

    register(live.app, 3, start=100)
    second = create_backup(live, target, segment_rows=5)
    # Only the rows after the last backed-up position: cost follows the increment.
    assert second.after_position == first.last_position and second.rows == 3 and second.segments == 1

    columns, _ = stored_rows(live)
    table = EventTable(TableRef(live.settings.database_url, live.app.recorder.events_table_name))
    try:
        assert backed_up_rows(target) == list(table.rows())  # ciphertext, stamps, positions: as stored
    finally:
        table.close()
    assert "recorded_at" in columns and "state" in columns

    third = create_backup(live, target)
    assert third.rows == 0 and third.last_position == second.last_position
    assert verify_target(target, ManifestSigner(live.keyring)).ok


def test_an_interrupted_backup_is_never_taken_for_complete_and_the_next_run_completes_it(live, target):
    register(live.app, 10)

    class Unplugged(LocalTarget):
        writes = 0

        def write(self, path, data):
            if Unplugged.writes == 1:
                raise OSError("link lost")
            Unplugged.writes += 1
            super().write(path, data)

    with pytest.raises(OSError):
        create_backup(live, Unplugged("local", target.root), segment_rows=4)
    assert target.list("events") != []  # a segment landed ...
    assert not [n for n in target.list("events") if n.endswith(".manifest.json")]  # ... but no manifest
    report = verify_target(target, ManifestSigner(live.keyring))
    assert report.backups == []

    done = create_backup(live, target, segment_rows=4)
    assert done.after_position == 0 and done.rows == 10
    assert [n for n in target.list("events") if not n.endswith(".manifest.json")] == [done.backup_id]
    assert verify_target(target, ManifestSigner(live.keyring)).ok


def _two_backups(live, target):
    register(live.app, 6)
    first = create_backup(live, target, segment_rows=3)
    register(live.app, 2, start=50)
    second = create_backup(live, target, segment_rows=3)
    return first, second


def _problems(live, target, **kw):
    return [(p.file, p.problem) for p in verify_target(target, ManifestSigner(live.keyring), **kw).problems]


def test_verify_names_a_segment_with_one_flipped_byte(live, target):
    first, _ = _two_backups(live, target)
    segment = target.root / "events" / first.backup_id / "000002.seg"
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x01
    segment.write_bytes(bytes(data))
    (problem,) = _problems(live, target)
    assert problem[0] == f"events/{first.backup_id}/000002.seg" and "SHA-256" in problem[1]


def test_verify_names_a_missing_segment(live, target):
    first, _ = _two_backups(live, target)
    (target.root / "events" / first.backup_id / "000001.seg").unlink()
    assert (f"events/{first.backup_id}/000001.seg", "segment is missing") in _problems(live, target)


def test_verify_refuses_a_forged_manifest(live, target):
    _, second = _two_backups(live, target)
    path = target.root / "events" / f"{second.backup_id}.manifest.json"
    manifest = json.loads(path.read_bytes())
    manifest["last_position"] += 5  # pretend it covers more
    path.write_bytes(canonical(manifest))
    assert any(file == f"events/{second.backup_id}.manifest.json" and "signature" in problem
               for file, problem in _problems(live, target))

    # Re-signed by an attacker's own key (and their public key written in): still refused.
    attacker_instance = target.root.parent / "attacker"
    attacker_instance.mkdir()
    attacker = make_components(attacker_instance, f"sqlite:///{attacker_instance / 'a.sqlite'}")
    try:
        path.write_bytes(canonical(ManifestSigner(attacker.keyring).sign(manifest)))
    finally:
        attacker.close()
    assert any("signature" in problem for _, problem in _problems(live, target))


def test_verify_finds_a_removed_increment_and_a_removed_newest_backup(live, target):
    first, second = _two_backups(live, target)
    third = create_backup(live, target)
    shutil.rmtree(target.root / "events" / second.backup_id)
    (target.root / "events" / f"{second.backup_id}.manifest.json").unlink()
    problems = _problems(live, target)
    assert any(file == f"events/{third.backup_id}.manifest.json" and "previous" in problem
               for file, problem in problems)

    # Truncation: the newest backup gone entirely; only the audit log knows it existed.
    (target.root / "events" / f"{third.backup_id}.manifest.json").unlink()
    shutil.rmtree(target.root / "events" / third.backup_id, ignore_errors=True)
    assert any("truncated" in problem for _, problem in _problems(live, target, last_recorded=third.backup_id))


@pytest.mark.controls("PCI-DSS-3.6.1")
def test_the_event_backup_holds_no_key_and_the_key_backup_only_wrapped_keys(live, target, tmp_path):
    ids = register(live.app, 3)
    create_backup(live, target)
    event_bytes = b"".join(p.read_bytes() for p in (target.root / "events").rglob("*") if p.is_file())
    key_bytes = b"".join(p.read_bytes() for p in (target.root / "keys").rglob("*") if p.is_file())
    kek = (tmp_path / "instance" / "kek.key").read_bytes()
    for secret in (kek, live.keyring.raw_key(ids[0], "profile"), live.keyring.raw_key(ids[1], "kyc")):
        for encoding in (secret, secret.hex().encode(), __import__("base64").b64encode(secret)):
            assert encoding not in event_bytes and encoding not in key_bytes
    for planted in (b"Plantedname", b"ada.planted", b"QQ000001C", b"4111111111111111"):
        assert planted not in event_bytes and planted not in key_bytes
    assert b"wrapped" not in event_bytes and b"data_keys" in key_bytes


def _restored_app(live, url, keys_url):
    settings = Settings.load(live.settings.instance, {
        "database_url": url, "keys_database_url": keys_url, "blind_index_bits": 8,
    })
    return build(settings, kek=LocalKek.load(live.settings.kek_path))


@pytest.mark.parametrize("into", ["sqlite", "postgres"])
@pytest.mark.controls("GDPR-32")
def test_restore_to_a_position_and_to_a_time_into_a_new_store(live, target, tmp_path, into, request):
    ids = register(live.app, 5)
    live.app.update_customer(ids[0], {"email": "moved@example.org"})
    middle = live.app.recorder.max_notification_id()
    cut_time = live.app.recorder.recorded_at_of(middle)
    register(live.app, 2, start=40)
    create_backup(live, target, segment_rows=3)

    url = f"sqlite:///{tmp_path / 'restored.sqlite'}" if into == "sqlite" else request.getfixturevalue("fresh_pg_url")
    result = restore_backup(live=live, target=target, into_url=url, position=middle)
    assert result.position == middle and result.rows == middle
    assert result.read_model_events == middle and result.chain in ("verified", "no chain columns")
    restored = _restored_app(live, url, result.keys_into)
    try:
        _, rows = stored_rows(restored)
        _, live_rows = stored_rows(live)
        assert rows == live_rows[:middle]  # exactly the events up to that point, as stored
        assert restored.app.get_customer(ids[0])["email"] == "moved@example.org"
        assert [c["id"] for c in restored.app.find_customers("email", "moved@example.org")] == [ids[0]]
        assert restored.directory.counts()["rm_customers"] == 5
        # New writes continue after the restored positions.
        with acting_as(OPERATOR):
            new_id = restored.app.register_customer(customer_fields(email="after@example.org"))["id"]
        assert restored.app.get_customer(new_id)["email"] == "after@example.org"
        assert restored.app.recorder.max_notification_id() > middle
    finally:
        restored.close()

    by_time = restore_backup(live=live, target=target, into_url=f"sqlite:///{tmp_path / 'by_time.sqlite'}",
                             to_time=cut_time)
    assert by_time.position == middle


def test_restore_never_writes_into_the_live_store_or_a_used_one(live, target, tmp_path):
    register(live.app, 2)
    create_backup(live, target)
    with pytest.raises(RestoreRefused):
        restore_backup(live=live, target=target, into_url=live.settings.database_url, position=1)
    with pytest.raises(RestoreRefused):
        restore_backup(live=live, target=target, into_url=f"sqlite:///{tmp_path / 'x.sqlite'}",
                       keys_into_url=live.settings.keys_database_url, position=1)
    used = f"sqlite:///{tmp_path / 'used.sqlite'}"
    restore_backup(live=live, target=target, into_url=used, position=1)
    with pytest.raises(RestoreRefused):
        restore_backup(live=live, target=target, into_url=used, position=1)
    with pytest.raises(RestoreRefused):
        restore_backup(live=live, target=target, into_url=f"sqlite:///{tmp_path / 'y.sqlite'}", position=99)


def test_a_corrupt_segment_stops_the_restore(live, target, tmp_path):
    register(live.app, 4)
    result = create_backup(live, target, segment_rows=2)
    segment = target.root / "events" / result.backup_id / "000002.seg"
    segment.write_bytes(segment.read_bytes().replace(b'"', b"'", 1))
    with pytest.raises(BackupCorrupt) as stopped:
        restore_backup(live=live, target=target, into_url=f"sqlite:///{tmp_path / 'r.sqlite'}", position=4)
    assert stopped.value.file.endswith("000002.seg")


@pytest.mark.controls("GDPR-17")
def test_a_customer_erased_after_the_backup_stays_erased_in_every_restore(live, target, tmp_path):
    """R4.6, one way round: the live erasure ledger is applied to an older backup."""
    ids = register(live.app, 3)
    create_backup(live, target)  # taken while the customer was readable
    live.app.erase_customer(ids[1], "GDPR Art. 17 request")

    result = restore_backup(live=live, target=target, into_url=f"sqlite:///{tmp_path / 'r.sqlite'}",
                            position=3)
    assert result.keys.withheld == 2  # profile and KYC keys kept destroyed
    restored = _restored_app(live, result.into, result.keys_into)
    try:
        with pytest.raises(CustomerErased):
            restored.app.get_customer(ids[1])
        assert restored.directory.get(ids[1]) is None  # nothing projected for them
        assert restored.app.get_customer(ids[0])["email"] == "c0@example.org"
        assert restored.keyring.status(ids[1]) == {"profile": "destroyed", "kyc": "destroyed"}
        # The ledger refuses a fresh key: writing would resurrect the stream.
        with acting_as(OPERATOR), pytest.raises(CustomerErased):
            restored.app.update_customer(ids[1], {"risk_rating": "high"})
    finally:
        restored.close()


@pytest.mark.controls("PCI-DSS-3.7.5")
def test_restoring_a_key_backup_never_brings_a_destroyed_key_back(live, target, tmp_path):
    """R4.6, the other way round: erased before the backup, and the live ledger lost."""
    ids = register(live.app, 2)
    live.app.erase_customer(ids[0], "GDPR Art. 17 request")
    create_backup(live, target)
    keys = open_keys(live.keyring, next((target.root / "keys").rglob("keys.seg")).read_bytes())
    assert not [k for k in keys["data_keys"] if k[0] == ids[0]]  # only the ledger entry travels
    assert {(s, k) for s, k, _ in keys["destroyed_keys"]} == {(ids[0], "profile"), (ids[0], "kyc")}

    with live.keyring.store.db.transaction() as cur:  # a live ledger that lost its rows
        cur.execute("DELETE FROM destroyed_keys")
    result = restore_backup(live=live, target=target, into_url=f"sqlite:///{tmp_path / 'r.sqlite'}",
                            position=live.app.recorder.max_notification_id())
    restored = _restored_app(live, result.into, result.keys_into)
    try:
        assert restored.keyring.status(ids[0]) == {"profile": "destroyed", "kyc": "destroyed"}
        with pytest.raises(CustomerErased):
            restored.app.get_customer(ids[0])
        assert restored.app.is_erased(ids[0])
        assert restored.app.get_customer(ids[1])["email"] == "c1@example.org"
    finally:
        restored.close()


def test_restore_from_postgresql_into_sqlite_and_back_keeps_every_row(tmp_path, pg_url, fresh_pg_url):
    (tmp_path / "pg").mkdir()
    source = make_components(tmp_path / "pg", pg_url)
    target = LocalTarget("local", tmp_path / "backups")
    try:
        with acting_as(OPERATOR):
            ids = register(source.app, 4)
            source.app.record_interaction(ids[0], kind="call", channel="phone", notes="Planted call note")
            create_backup(source, target)
        _, pg_rows = stored_rows(source)
        to_sqlite = restore_backup(live=source, target=target, into_url=f"sqlite:///{tmp_path / 'r.sqlite'}",
                                   position=len(pg_rows))
        restored = _restored_app(source, to_sqlite.into, to_sqlite.keys_into)
        try:
            assert stored_rows(restored)[1] == pg_rows
            assert restored.app.interactions(ids[0])[0]["notes"] == "Planted call note"
            second = LocalTarget("again", tmp_path / "again")
            with acting_as(OPERATOR):
                create_backup(restored, second)
            back = restore_backup(live=restored, target=second, into_url=fresh_pg_url, position=len(pg_rows))
        finally:
            restored.close()
        again = _restored_app(source, back.into, back.keys_into)
        try:
            assert stored_rows(again)[1] == pg_rows
            assert again.app.get_customer(ids[3])["email"] == "c3@example.org"
        finally:
            again.close()
    finally:
        source.close()


def _chained_backup(target, signer, backup_id, rows, previous=None, after=0):
    """A backup of a table with chain columns, written and signed as `create_backup` does."""
    from infrastructure.backup.manifest import encode_segment, sha256

    columns = ["position", "originator_id", "originator_version", "topic", "state", "recorded_at",
               "prev_hash", "row_hash"]
    data = encode_segment(columns, rows)
    segment = f"events/{backup_id}/000001.seg"
    target.write(segment, data)
    keys = canonical(signer.sign({"format": "strongroom-backup/1", "kind": "keys", "backup_id": backup_id,
                                  "segments": []}))
    target.write(f"keys/{backup_id}.manifest.json", keys)
    manifest = signer.sign({
        "format": "strongroom-backup/1", "kind": "events", "backup_id": backup_id, "created_at": "2026-01-01",
        "columns": columns, "previous": previous, "after_position": after, "last_position": rows[-1][0],
        "rows": len(rows), "chain": {"columns": ["prev_hash", "row_hash"], "first_prev": rows[0][6],
                                     "head": rows[-1][7]},
        "segments": [{"file": segment, "sha256": sha256(data), "bytes": len(data), "rows": len(rows)}],
        "keys": {"file": f"keys/{backup_id}.manifest.json", "sha256": sha256(keys)},
    })
    body = canonical(manifest)
    target.write(f"events/{backup_id}.manifest.json", body)
    return {"backup_id": backup_id, "manifest_sha256": sha256(body)}


def _row(position, prev, head):
    return [position, str(uuid.uuid4()), 1, "t", {"b64": "AA=="}, "2026-01-01T00:00:00.000000+00:00",
            {"b64": prev}, {"b64": head}]


def test_verify_follows_the_hash_chain_across_increments(live, target):
    """A row deleted from the store before a backup, in a backup signed in good faith:
    only the chain (prev_hash of each row = row_hash before it) can tell."""
    signer = ManifestSigner(live.keyring)
    first = _chained_backup(target, signer, "20260101T000000000000Z-aaaaaa",
                            [_row(1, "Z0=", "QQ=="), _row(2, "QQ==", "Qg==")])
    _chained_backup(target, signer, "20260101T000001000000Z-bbbbbb",
                    [_row(3, "Qg==", "Qw=="), _row(5, "RA==", "RQ==")], previous=first, after=2)
    problems = _problems(live, target)
    assert problems == [("events/20260101T000001000000Z-bbbbbb/000001.seg", "hash chain broken at position 5")]


def test_a_customer_erased_under_an_aml_hold_after_the_backup_stays_erased_in_a_restore(tmp_path, database_url,
                                                                                       target):
    """R4.6 with a hold (issue 13): the profile key stays destroyed in the restore; the
    KYC key the hold keeps comes back with it, still only behind the erasure."""
    held = make_components(tmp_path, database_url)  # the default 5-year AML retention
    try:
        with acting_as(OPERATOR):
            ids = register(held.app, 2)
            create_backup(held, target)
            result = held.erasures.erase(ids[0], "DSR-2026-12")
            assert result["keys_destroyed"] == ["profile"]
            restored_at = restore_backup(live=held, target=target, into_url=f"sqlite:///{tmp_path / 'r.sqlite'}",
                                         position=2)
        assert restored_at.keys.withheld == 1  # the profile key, kept destroyed
        restored = _restored_app(held, restored_at.into, restored_at.keys_into)
        try:
            with pytest.raises(CustomerErased):
                restored.app.get_customer(ids[0])
            assert restored.keyring.status(ids[0]) == {"profile": "destroyed", "kyc": "active"}
            assert restored.app.get_customer(ids[1])["email"] == "c1@example.org"
        finally:
            restored.close()
    finally:
        held.close()


@pytest.mark.parametrize("value", [2**70, -(2**64), float("nan"), "1234567890123456789012", 42, "plain"])
def test_a_segment_reads_back_every_value_exactly_whichever_parser_reads_it(value):
    """Issue 15: segments are parsed by orjson where it reads them exactly; an integer
    beyond 64 bits (which orjson would read as a float) and NaN (which it refuses)
    go to the standard library, so a value never comes back changed."""
    import math

    from infrastructure.backup.manifest import decode_segment, encode_segment

    columns, rows = decode_segment("s.seg", encode_segment(["position", "v"], [[1, value], [2, "x"]]))
    assert columns == ["position", "v"]
    back = rows[0][1]
    assert type(back) is type(value)
    assert math.isnan(back) if isinstance(value, float) else back == value
