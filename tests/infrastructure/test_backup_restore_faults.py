"""A restored store passes `audit verify`; a killed restore is never taken for a
complete one (R3.3, R4.4, R7.6), on SQLite and on PostgreSQL.

Faults injected, each named in its test: a restore to a position between two
checkpoints (the later one must not come along), a backup made before checkpoints
were backed up, a checkpoint segment rewritten to vouch for another head, a restore
that dies after its events are in (an exception), and a restore process SIGKILLed
while it rebuilds the read models.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from application.context import acting_as
from infrastructure.audit.checkpoints import copy_name
from infrastructure.backup.create import create_backup
from infrastructure.backup.manifest import BackupCorrupt, ManifestSigner, canonical, sha256
from infrastructure.backup.restore import restore_backup
from infrastructure.backup.targets import LocalTarget
from infrastructure.backup import restore as restore_module
from infrastructure.backup.eventrows import EventTable, TableRef
from infrastructure.composition import ConfigurationError, Settings, build
from web.app import create_app
from infrastructure.crypto.kek import LocalKek
from tests.application.conftest import OPERATOR, customer_fields, make_components
from tests.conftest import PG_ADMIN_URL, _database_url


@pytest.fixture
def live(tmp_path, database_url):
    built = make_components(tmp_path, database_url)
    with acting_as(OPERATOR):
        yield built
    built.close()


@pytest.fixture
def target(tmp_path):
    return LocalTarget("local", tmp_path / "backups")


@pytest.fixture
def into(tmp_path, database_url):
    """A new, empty store of the same kind as the live one."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.sqlite'}"
        return
    name = f"sr_restore_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _database_url(name)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def register(app, n, start):
    for i in range(start, start + n):
        app.register_customer(customer_fields(email=f"c{i}@example.org", national_id=f"QQ{i:06d}C"))


def three_checkpoints(live):
    """Checkpoints at a, b and c, with rows between b and c; returns (a, b, between, c)."""
    register(live.app, 2, 0)
    a = live.tamper_evidence.checkpoint().position
    register(live.app, 2, 10)
    b = live.tamper_evidence.checkpoint().position
    register(live.app, 1, 20)
    between = live.app.recorder.max_notification_id()
    register(live.app, 2, 30)
    c = live.tamper_evidence.checkpoint().position
    assert a < b < between < c
    return a, b, between, c


def signed_up_to(live, position):
    """Positions of the live checkpoints at or below `position` (the checkpointer's own
    thread may have signed some besides a, b and c)."""
    return [cp.position for cp in live.tamper_evidence.store.in_database() if cp.position <= position]


def restored_instance(live, tmp_path, url, keys_url):
    """The restored store as its own instance would open it: its own checkpoint folder."""
    instance = tmp_path / "restored-instance"
    instance.mkdir(exist_ok=True)
    settings = Settings.load(instance, {"database_url": url, "keys_database_url": keys_url, "blind_index_bits": 8})
    return build(settings, kek=LocalKek.load(live.settings.kek_path))


def test_a_store_restored_between_two_checkpoints_passes_audit_verify(live, target, into, tmp_path):
    """Fault: a restore to a position between checkpoints b and c (c must not come along)."""
    a, b, between, c = three_checkpoints(live)
    create_backup(live, target)
    folder = tmp_path / "restored-instance" / "checkpoints"
    result = restore_backup(live=live, target=target, into_url=into, position=between, checkpoint_dir=folder)
    kept = signed_up_to(live, between)
    assert a in kept and b in kept and c not in [p for p in kept]
    assert result.position == between and result.checkpoints == len(kept)
    assert sorted(p.name for p in folder.iterdir()) == [copy_name(p) for p in kept]
    restored = restored_instance(live, tmp_path, into, result.keys_into)
    try:
        report = restored.tamper_evidence.verify()
        assert report.passed, report.summary()
        assert report.checkpoints_verified == len(kept) and report.latest_checkpoint.position == b
        assert [cp.position for cp in restored.tamper_evidence.store.in_database()] == kept
    finally:
        restored.close()


def test_a_full_restore_carries_every_checkpoint_across_increments(live, target, into, tmp_path):
    """Fault: the checkpoints arrive in two increments; the restore needs both."""
    register(live.app, 2, 0)
    first = live.tamper_evidence.checkpoint().position
    create_backup(live, target)
    register(live.app, 2, 10)
    second = live.tamper_evidence.checkpoint().position
    create_backup(live, target)
    result = restore_backup(live=live, target=target, into_url=into, position=second)
    kept = signed_up_to(live, second)
    assert first in kept and second in kept and result.checkpoints == len(kept)
    restored = restored_instance(live, tmp_path, into, result.keys_into)
    try:
        report = restored.tamper_evidence.verify()
        assert report.passed and report.checkpoints_verified == len(kept), report.summary()
        assert [cp.position for cp in restored.tamper_evidence.store.in_database()] == kept
    finally:
        restored.close()


def _rewrite_manifest(live, target, change):
    (name,) = [n for n in target.list("events") if n.endswith(".manifest.json")]
    document = json.loads(target.read(f"events/{name}"))
    change(document)
    target.write(f"events/{name}", canonical(ManifestSigner(live.keyring).sign(document)))


def test_a_backup_made_before_checkpoints_were_backed_up_still_restores(live, target, into, tmp_path):
    """Fault: an old backup whose manifest lists no checkpoint segment."""
    _, _, between, _ = three_checkpoints(live)
    create_backup(live, target)
    _rewrite_manifest(live, target, lambda document: document.pop("checkpoints"))
    result = restore_backup(live=live, target=target, into_url=into, position=between)
    assert result.checkpoints is None and result.as_json()["checkpoints_restored"] is None
    restored = restored_instance(live, tmp_path, into, result.keys_into)
    try:
        report = restored.tamper_evidence.verify()
        assert report.passed and report.checkpoints_verified == 0, report.summary()
    finally:
        restored.close()


def test_a_checkpoint_that_does_not_match_the_restored_chain_fails_the_restore(live, target, into, tmp_path):
    """Fault: the checkpoint segment rewritten (manifest re-signed) to name another head."""
    _, b, between, _ = three_checkpoints(live)
    create_backup(live, target)
    (name,) = [n for n in target.list("events") if n.endswith(".manifest.json")]
    entry = json.loads(target.read(f"events/{name}"))["checkpoints"]
    checkpoints = json.loads(target.read(entry["file"]))
    for checkpoint in checkpoints:
        if checkpoint["position"] == b:
            checkpoint["head_hash"] = "00" * 32
    data = json.dumps(checkpoints).encode()
    target.write(entry["file"], data)

    def point_at_the_change(document):
        document["checkpoints"].update(sha256=sha256(data), bytes=len(data))

    _rewrite_manifest(live, target, point_at_the_change)
    with pytest.raises(BackupCorrupt, match="does not match the signed checkpoints"):
        restore_backup(live=live, target=target, into_url=into, position=between)


@pytest.mark.parametrize("cut", ["position", "time"])
def test_a_backed_up_row_changed_under_its_old_hash_fails_the_restore(live, target, into, cut):
    """Attack: an operator with the backup-signing key swaps one row's ciphertext in a
    segment and re-signs the manifest, keeping the row's hashes. The restore checks the
    rows against the signed checkpoints: as they go in (a cut by position, issue 15) or
    read back (a cut by time); either way it refuses."""
    from infrastructure.backup.manifest import decode_segment, encode_segment

    a, _, between, _ = three_checkpoints(live)
    create_backup(live, target)
    (name,) = [n for n in target.list("events") if n.endswith(".manifest.json")]
    segment = json.loads(target.read(f"events/{name}"))["segments"][0]
    columns, rows = decode_segment(segment["file"], target.read(segment["file"]))
    at_state = columns.index("state")
    victim = next(row for row in rows if row[0] == a)  # under the first checkpoint
    other = next(row for row in rows if row[0] == a - 1)
    victim[at_state] = other[at_state]  # a real ciphertext, of another row
    data = encode_segment(columns, rows)
    target.write(segment["file"], data)

    def point_at_the_change(document):
        document["segments"][0].update(sha256=sha256(data), bytes=len(data))

    _rewrite_manifest(live, target, point_at_the_change)
    when = {"position": between} if cut == "position" else {
        "to_time": live.app.recorder.recorded_at_of(between)}
    with pytest.raises(BackupCorrupt, match="does not match the signed checkpoints"):
        restore_backup(live=live, target=target, into_url=into, **when)


@pytest.mark.parametrize("change", ["swapped", "past the end", "not a number"])
def test_a_backup_whose_positions_do_not_rise_is_refused(live, target, into, change):
    """Attack: an operator with the backup-signing key reorders a segment's rows (or
    moves one past the backup's end) and re-signs the manifest, on a backup without
    checkpoints to catch it. The read models' workers follow the rows in position
    order (issue 15), so a row behind them would silently never be projected: the
    restore refuses the backup instead of completing with rows missing."""
    from infrastructure.backup.manifest import decode_segment, encode_segment

    register(live.app, 4, 0)
    create_backup(live, target)
    (name,) = [n for n in target.list("events") if n.endswith(".manifest.json")]
    segment = json.loads(target.read(f"events/{name}"))["segments"][0]
    columns, rows = decode_segment(segment["file"], target.read(segment["file"]))
    if change == "swapped":
        rows[1], rows[2] = rows[2], rows[1]
    elif change == "past the end":
        rows[-1][0] = rows[-1][0] + 1000
    else:
        rows[1][0] = str(rows[1][0])
    data = encode_segment(columns, rows)
    target.write(segment["file"], data)

    def point_at_the_change(document):
        document["segments"][0].update(sha256=sha256(data), bytes=len(data))
        document.pop("checkpoints", None)  # nothing else to notice the change

    _rewrite_manifest(live, target, point_at_the_change)
    with pytest.raises(BackupCorrupt, match="out of order or past the backup's last position"):
        restore_backup(live=live, target=target, into_url=into, jobs=2)
    assert multiprocessing.active_children() == []


# -- a killed restore -------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def plant_operator_table(url):
    """A table that was in the destination before any restore: starting over keeps it."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            db.execute("CREATE TABLE operator_notes (note TEXT)")
            db.execute("INSERT INTO operator_notes VALUES ('kept')")
        return
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE operator_notes (note TEXT)")
        db.execute("INSERT INTO operator_notes VALUES ('kept')")


def operator_notes(url):
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return [r[0] for r in db.execute("SELECT note FROM operator_notes")]
    with psycopg.connect(url) as db:
        return [r[0] for r in db.execute("SELECT note FROM operator_notes")]


def events_in(url, live):
    table = EventTable(TableRef(url, live.app.recorder.events_table_name))
    try:
        return table.max_position()
    finally:
        table.close()


def assert_refused_as_incomplete(live, tmp_path, url, keys_url):
    """Neither `audit verify` nor the app will take the half-made store for a store."""
    with pytest.raises(ConfigurationError, match="incomplete restore"):
        restored_instance(live, tmp_path, url, keys_url)
    instance = tmp_path / "restored-instance"
    instance.mkdir(exist_ok=True)
    kek = instance / live.settings.kek_path.name
    if not kek.exists():
        kek.write_bytes(live.settings.kek_path.read_bytes())
        kek.chmod(0o600)
    with pytest.raises(ConfigurationError, match="incomplete restore"):
        create_app({"instance": str(instance), "database_url": url, "keys_database_url": keys_url,
                    "blind_index_bits": 8})


def assert_rerun_completes_and_verifies(live, target, tmp_path, url, between):
    again = restore_backup(live=live, target=target, into_url=url, position=between)
    assert again.started_over and again.position == between and again.rows == between
    assert again.checkpoints == len(signed_up_to(live, between))
    assert operator_notes(url) == ["kept"]  # not made by the killed run: left alone
    restored = restored_instance(live, tmp_path, url, again.keys_into)
    try:
        report = restored.tamper_evidence.verify()
        assert report.passed and report.checkpoints_verified == again.checkpoints, report.summary()
        assert restored.directory.counts()["rm_customers"] == 5
    finally:
        restored.close()
    with pytest.raises(restore_module.RestoreRefused, match="already holds events"):
        restore_backup(live=live, target=target, into_url=url, position=between)  # complete: never cleared


def test_a_restore_that_dies_after_its_events_are_in_is_refused_and_a_rerun_starts_over(
        live, target, into, tmp_path, monkeypatch):
    """Fault: an exception after the events are in, before checkpoints and read models."""
    _, _, between, _ = three_checkpoints(live)
    create_backup(live, target)
    plant_operator_table(into)

    def killed(*args, **kwargs):
        raise RuntimeError("injected fault: the restore dies after its events are in")

    with monkeypatch.context() as patched:
        patched.setattr(restore_module, "_restore_checkpoints", killed)
        with pytest.raises(RuntimeError, match="injected fault"):
            restore_backup(live=live, target=target, into_url=into, position=between)
    keys_url = restore_module.default_keys_url(into)
    assert events_in(into, live) == between  # the half-made store holds every event...
    assert_refused_as_incomplete(live, tmp_path, into, keys_url)  # ...and is still refused
    assert_rerun_completes_and_verifies(live, target, tmp_path, into, between)


KILLED_RESTORE = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import infrastructure.partitioned_rebuild as partitioned_rebuild
    from infrastructure.backup.restore import restore_backup
    from infrastructure.backup.targets import LocalTarget
    from infrastructure.composition import Settings, build

    args = json.loads(sys.argv[1])

    def rebuild_until_killed(*args, written_to_target=None, **kwargs):
        # A rebuild worker (issue 15: they project as the rows go in): once every
        # row is in, it says so with its process id, and works on until killed.
        # One write(2) a line: print() writes the text and the newline apart when
        # PYTHONUNBUFFERED is set, and two workers' lines then run into one.
        while written_to_target is not None and not written_to_target.value:
            time.sleep(0.01)
        os.write(1, f"rebuilding {os.getpid()}\\n".encode())
        time.sleep(120)

    partitioned_rebuild.project_partition = rebuild_until_killed
    live = build(Settings.load(args["instance"], {"database_url": args["live"], "blind_index_bits": 8}))
    restore_backup(live=live, target=LocalTarget("local", Path(args["backups"])), into_url=args["into"],
                   position=args["position"])
""")


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, ended but not reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_restore_process_sigkilled_during_the_rebuild_is_refused_and_a_rerun_starts_over(
        live, target, into, tmp_path):
    """Fault: the restoring process is SIGKILLed while it rebuilds the read models."""
    _, _, between, _ = three_checkpoints(live)
    create_backup(live, target)
    plant_operator_table(into)
    args = {"instance": str(live.settings.instance), "live": live.settings.database_url,
            "backups": str(tmp_path / "backups"), "into": into, "position": between}
    child = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", KILLED_RESTORE, json.dumps(args)], cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        said, worker = child.stdout.readline().split()
        assert said == "rebuilding", child.stderr.read()
        assert int(worker) != child.pid  # a forked worker, not the restoring process
    finally:
        os.kill(child.pid, signal.SIGKILL)  # also when an assertion above failed, so that it shows
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    # Its workers end with it: none is left writing into the store run again below.
    deadline = time.monotonic() + 10
    while _alive(int(worker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(int(worker)), f"worker {worker} outlived the restore that forked it"
    keys_url = restore_module.default_keys_url(into)
    assert events_in(into, live) == between
    assert_refused_as_incomplete(live, tmp_path, into, keys_url)
    assert_rerun_completes_and_verifies(live, target, tmp_path, into, between)
