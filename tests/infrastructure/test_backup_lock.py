"""One `backup create` at a time per target (R7.6), with the faults injected for real.

Faults tried: a second run started while the first is between segments (it used
to remove the first run's segments as "interrupted" and build on the same base,
leaving a target that never verified again); a run killed with SIGKILL in the
middle of an upload (its lock must not block the target forever); a lock whose
owner stopped beating on another host; a lock replaced between being judged
stale and being broken; and a run whose lock was broken while it worked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from application.context import acting_as
from infrastructure.backup.create import create_backup
from infrastructure.backup.drill import run_drill
from infrastructure.backup.lock import LOCK_FILE, LockHeld, LockLost, TargetLock
from infrastructure.backup.manifest import ManifestSigner
from infrastructure.backup.restore import restore_backup
from infrastructure.backup.targets import LocalTarget
from infrastructure.backup.verify import verify_target
from tests.application.conftest import OPERATOR, customer_fields, make_components

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def live(tmp_path, database_url):
    built = make_components(tmp_path, database_url)
    with acting_as(OPERATOR):
        for i in range(20):
            built.app.register_customer(customer_fields(email=f"l{i}@example.org", national_id=f"QQ{i:06d}C"))
        yield built
    built.close()


class PausedBetweenSegments(LocalTarget):
    """A target whose run stops after its second segment until `go` is set."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reached, self.go, self.writes = threading.Event(), threading.Event(), 0

    def write(self, path, data):
        super().write(path, data)
        self.writes += 1
        if self.writes == 2:
            self.reached.set()
            assert self.go.wait(60), "the test never let the first run go on"


def _start_paused_run(live, root):
    paused = PausedBetweenSegments("local", root)
    outcome: dict = {}

    def first_run():
        try:
            outcome["result"] = create_backup(live, paused, segment_rows=4)
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=first_run)
    thread.start()
    assert paused.reached.wait(60), outcome
    return paused, thread, outcome


def _manifests(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "events").glob("*.manifest.json"))


def test_a_second_run_while_the_first_is_mid_upload_is_refused_and_the_target_stays_whole(live, tmp_path):
    """Fault: two overlapping `backup create` runs on one target (the cron job and an operator)."""
    root = tmp_path / "backups"
    paused, thread, outcome = _start_paused_run(live, root)
    try:
        segments_so_far = sorted(p.relative_to(root) for p in (root / "events").rglob("*.seg"))
        assert len(segments_so_far) == 2
        with pytest.raises(LockHeld) as refused:
            create_backup(live, LocalTarget("local", root), segment_rows=4)
        message = str(refused.value)
        assert "locked by another run" in message and f"pid {os.getpid()}" in message
        assert "backup create by" in message and "last heartbeat" in message
        # The first run's segments are untouched: nothing took them for leftovers.
        assert sorted(p.relative_to(root) for p in (root / "events").rglob("*.seg")) == segments_so_far
    finally:
        paused.go.set()
        thread.join(60)
    assert "error" not in outcome, outcome
    first = outcome["result"]
    assert first.rows == 20 and first.after_position == 0
    assert not (root / LOCK_FILE).exists()  # released in finally

    live.app.register_customer(customer_fields(email="after@example.org", national_id="QQ999999C"))
    target = LocalTarget("local", root)
    second = create_backup(live, target)
    assert second.after_position == first.last_position and second.rows == 1
    assert len(_manifests(root)) == 2
    assert verify_target(target, ManifestSigner(live.keyring)).ok
    assert run_drill(live, target).failures == []
    restored = restore_backup(live=live, target=target, into_url=f"sqlite:///{tmp_path / 'r.sqlite'}",
                              position=second.last_position)
    assert restored.rows == second.last_position and restored.problems == []


def test_waiting_for_the_lock_runs_after_the_first_run_finishes(live, tmp_path):
    """Fault: overlapping runs where the operator asked to wait rather than give up."""
    root = tmp_path / "backups"
    paused, thread, outcome = _start_paused_run(live, root)
    threading.Timer(1.0, paused.go.set).start()
    waited = create_backup(live, LocalTarget("local", root), segment_rows=4, wait=30)
    thread.join(60)
    first = outcome["result"]
    assert waited.after_position == first.last_position and waited.rows == 0
    assert verify_target(LocalTarget("local", root), ManifestSigner(live.keyring)).ok


KILLED_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from infrastructure.backup.create import create_backup
    from infrastructure.backup.targets import LocalTarget
    from tests.application.conftest import make_components

    tmp, url, ready = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

    class Hangs(LocalTarget):
        writes = 0
        def write(self, path, data):
            super().write(path, data)
            Hangs.writes += 1
            if Hangs.writes == 2:
                ready.write_text("mid-upload")
                time.sleep(600)

    create_backup(make_components(tmp, url), Hangs("local", tmp / "backups"), segment_rows=4)
""")


def test_a_run_killed_mid_upload_leaves_a_stale_lock_that_the_next_run_breaks(live, tmp_path, database_url):
    """Fault: `backup create` killed with SIGKILL mid-upload (OOM killer, reboot): no `finally` runs."""
    root, ready = tmp_path / "backups", tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(tmp_path), database_url, str(ready)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert process.poll() is None, "the run died before reaching the middle of its upload"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    owner = json.loads((root / LOCK_FILE).read_text())
    assert owner["pid"] == process.pid and owner["purpose"] == "backup create"
    assert len(list((root / "events").rglob("*.seg"))) == 2 and _manifests(root) == []

    target = LocalTarget("local", root)
    done = create_backup(live, target, segment_rows=4)
    (broken,) = done.stale_locks_broken
    assert f"pid {process.pid}" in broken and "no longer runs" in broken
    assert done.after_position == 0 and done.rows == 20
    assert [p.name for p in (root / "events").iterdir() if p.is_dir()] == [done.backup_id]
    assert not (root / LOCK_FILE).exists()
    assert verify_target(target, ManifestSigner(live.keyring)).ok
    restored = restore_backup(live=live, target=target, into_url=f"sqlite:///{tmp_path / 'r.sqlite'}",
                              position=done.last_position)
    assert restored.rows == done.last_position


def _plant_lock(root: Path, *, host: str, pid: int, age: float, token: str = "f" * 32) -> bytes:
    root.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"purpose": "backup create", "host": host, "pid": pid, "pid_started": None,
                       "user": "cron", "token": token, "started_at": "2026-12-04T03:00:00+00:00"}).encode()
    (root / LOCK_FILE).write_bytes(data)
    then = time.time() - age
    os.utime(root / LOCK_FILE, (then, then))
    return data


def test_a_lock_from_another_host_holds_until_its_heartbeat_is_older_than_the_limit(live, tmp_path):
    """Fault: a run on another host that died (its pid cannot be checked from here) or still runs."""
    root = tmp_path / "backups"
    _plant_lock(root, host="other-host.example", pid=4242, age=30)
    target = LocalTarget("local", root, lock_stale_after=600)
    with pytest.raises(LockHeld, match="cron@other-host.example pid 4242"):
        create_backup(live, target)
    assert _manifests(root) == [] and (root / LOCK_FILE).exists()

    _plant_lock(root, host="other-host.example", pid=4242, age=601)
    done = create_backup(live, target)
    assert ["no heartbeat for 601s" in note for note in done.stale_locks_broken] == [True]
    assert verify_target(target, ManifestSigner(live.keyring)).ok


def test_a_lock_naming_a_dead_pid_on_this_host_is_broken_at_once(live, tmp_path):
    """Fault: a lock left by a run whose process has ended, however fresh its heartbeat."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = tmp_path / "backups"
    _plant_lock(root, host=socket.gethostname(), pid=dead.pid, age=0)
    done = create_backup(live, LocalTarget("local", root))
    assert len(done.stale_locks_broken) == 1 and f"process {dead.pid}" in done.stale_locks_broken[0]


def test_a_lock_replaced_after_it_was_judged_stale_is_put_back_not_broken(tmp_path):
    """Fault: two runs break the same stale lock; the slower must not remove the faster one's new lock."""
    root = tmp_path / "backups"
    judged = _plant_lock(root, host="other-host.example", pid=1, age=9999, token="a" * 32)
    judged_at = (root / LOCK_FILE).stat().st_mtime
    newer = _plant_lock(root, host="other-host.example", pid=2, age=0, token="b" * 32)  # the faster run's lock
    lock = TargetLock(LocalTarget("local", root), purpose="backup create")
    lock._break(judged, judged_at, "no heartbeat")
    assert (root / LOCK_FILE).read_bytes() == newer and lock.broken == []
    assert [p.name for p in root.iterdir()] == [LOCK_FILE]


def test_a_run_whose_lock_was_broken_stops_before_its_manifest(live, tmp_path):
    """Fault: a run judged stale (hung past the limit) wakes up after another run took the target."""
    root = tmp_path / "backups"
    paused, thread, outcome = _start_paused_run(live, root)
    (root / LOCK_FILE).unlink()
    _plant_lock(root, host="other-host.example", pid=7, age=0)  # the run that broke it
    paused.go.set()
    thread.join(60)
    assert isinstance(outcome.get("error"), LockLost)
    assert _manifests(root) == []
    assert json.loads((root / LOCK_FILE).read_text())["pid"] == 7  # the other run's lock is left alone


def test_the_holder_beats_the_heartbeat_so_a_long_run_is_not_taken_for_stale(tmp_path):
    """Fault: a run longer than `lock_stale_after` broken while it still works (it beats as it writes)."""
    now = [time.time()]
    target = LocalTarget("local", tmp_path / "backups", lock_stale_after=40)
    with TargetLock(target, purpose="backup create", clock=lambda: now[0]) as lock:
        os.utime(target.root / LOCK_FILE, (now[0] - 35, now[0] - 35))
        now[0] += 5  # less than a heartbeat interval (10 s here): no touch yet
        lock.confirm()
        assert time.time() - (target.root / LOCK_FILE).stat().st_mtime > 30
        now[0] += 6
        lock.confirm()  # a segment written a beat later: the heartbeat is fresh again
        assert time.time() - (target.root / LOCK_FILE).stat().st_mtime < 5
        with pytest.raises(LockHeld):
            TargetLock(target, purpose="backup create").acquire()
    assert not (target.root / LOCK_FILE).exists()


def test_lock_stale_after_is_configured_per_target(tmp_path):
    from infrastructure.backup.targets import TargetError, targets_from_config

    (short, default) = targets_from_config(tmp_path, [
        {"name": "a", "kind": "local", "path": "a", "lock_stale_after": 120},
        {"name": "b", "kind": "local", "path": "b"},
    ])
    assert (short.lock_stale_after, default.lock_stale_after) == (120.0, 3600.0)
    for bad in ("soon", 0, -5):
        with pytest.raises(TargetError, match="lock_stale_after"):
            targets_from_config(tmp_path, [{"name": "a", "kind": "local", "path": "a", "lock_stale_after": bad}])
