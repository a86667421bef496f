"""The off-site target against a real OpenSSH server on loopback (R4.1).

Each test starts `/usr/sbin/sshd` on a free 127.0.0.1 port with a throwaway host
key and user key (made here), and talks SFTP to it through paramiko: no mock of
the transport. `.ci/run` installs openssh-server when sshd is missing; a missing
sshd fails these tests rather than skipping them.

Attacks tried: a connection killed in the middle of an upload (the partial backup
must never look complete), a server whose host key is not the pinned one (a
man in the middle must receive nothing), two overlapping runs on the off-site
target (the second must refuse, not prune the first one's segments), and a lock
left on the server by a run that died (the next run must break it, and only it).
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from application.context import acting_as
from cli.main import main
from infrastructure.backup.create import create_backup
from infrastructure.backup.drill import run_drill
from infrastructure.backup.lock import LOCK_FILE, LockHeld
from infrastructure.backup.manifest import ManifestSigner
from infrastructure.backup.restore import restore_backup
from infrastructure.backup.targets import SftpSettings, SftpTarget, TargetError
from infrastructure.backup.verify import verify_target
from tests.application.conftest import OPERATOR, customer_fields, make_components

SSHD = "/usr/sbin/sshd"


def _keypair(folder: Path, name: str) -> str:
    key = Ed25519PrivateKey.generate()
    private = folder / name
    private.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    private.chmod(0o600)
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    (folder / f"{name}.pub").write_text(public + "\n")
    return public


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class SshServer:
    def __init__(self, folder: Path) -> None:
        if not Path(SSHD).exists():
            pytest.fail(f"{SSHD} is missing: apt-get install openssh-server (.ci/run does)")
        self.folder = folder
        self.port = _free_port()
        host_public = _keypair(folder, "host_ed25519")
        user_public = _keypair(folder, "user_ed25519")
        (folder / "authorized_keys").write_text(user_public + "\n")
        self.known_hosts = folder / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_public}\n")
        self.root = folder / "remote"
        self.root.mkdir(mode=0o700)
        config = folder / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_ed25519'}",
            f"PidFile {folder / 'sshd.pid'}", f"AuthorizedKeysFile {folder / 'authorized_keys'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
            "Subsystem sftp internal-sftp", "LogLevel VERBOSE", "",
        ]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        self.process = subprocess.Popen(  # noqa: S603 - fixed path, our own config
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL, stderr=(folder / "sshd.log").open("wb"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"sshd exited: {(folder / 'sshd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail("sshd did not start listening")

    def settings(self, **changes) -> SftpSettings:
        values = dict(host="127.0.0.1", port=self.port, username=getpass.getuser(),
                      key_file=str(self.folder / "user_ed25519"), known_hosts=str(self.known_hosts),
                      path=str(self.root), timeout=5.0)
        values.update(changes)
        return SftpSettings(**values)

    def kill_sessions(self) -> None:
        """Cut every open connection as a network failure would: kill the session processes."""
        for pid in _descendants(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        self.kill_sessions()
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def sshd(tmp_path):
    folder = tmp_path / "sshd"
    folder.mkdir()
    server = SshServer(folder)
    yield server
    server.stop()


@pytest.fixture
def live(tmp_path):
    built = make_components(tmp_path, f"sqlite:///{tmp_path / 'live.sqlite'}")
    with acting_as(OPERATOR):
        for i in range(30):
            built.app.register_customer(customer_fields(email=f"s{i}@example.org"))
        yield built
    built.close()


def _manifests(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "events").glob("*.manifest.json"))


def test_a_backup_lands_on_the_sftp_host_verifies_and_restores(sshd, live, tmp_path):
    target = SftpTarget("offsite", sshd.settings())
    try:
        result = create_backup(live, target, segment_rows=7)
        assert result.rows == 30 and result.segments == 5
        assert _manifests(sshd.root) == [f"{result.backup_id}.manifest.json"]
        assert oct((sshd.root / "events" / f"{result.backup_id}.manifest.json").stat().st_mode)[-3:] == "600"
        assert verify_target(target, ManifestSigner(live.keyring)).ok
        restored = restore_backup(live=live, target=target, into_url=f"sqlite:///{tmp_path / 'r.sqlite'}",
                                  position=30)
        assert restored.rows == 30 and restored.read_model_events == 30
    finally:
        target.close()


def test_a_connection_killed_mid_upload_leaves_no_manifest_and_the_next_run_completes(sshd, live):
    class CutAfterTwoSegments(SftpTarget):
        writes = 0

        def write(self, path, data):
            self.writes += 1
            if self.writes == 3:
                sshd.kill_sessions()  # the link drops while the third segment uploads
            super().write(path, data)

    cut = CutAfterTwoSegments("offsite", sshd.settings())
    try:
        with pytest.raises(TargetError, match="connection .* lost"):
            create_backup(live, cut, segment_rows=7)
    finally:
        cut.close()
    assert len(list((sshd.root / "events").rglob("*.seg"))) == 2  # two segments landed ...
    assert _manifests(sshd.root) == []  # ... and nothing claims a complete backup

    target = SftpTarget("offsite", sshd.settings())
    try:
        assert verify_target(target, ManifestSigner(live.keyring)).backups == []
        done = create_backup(live, target, segment_rows=7)
        assert done.after_position == 0 and done.rows == 30
        assert _manifests(sshd.root) == [f"{done.backup_id}.manifest.json"]
        assert [p.name for p in (sshd.root / "events").iterdir() if p.is_dir()] == [done.backup_id]
        assert verify_target(target, ManifestSigner(live.keyring)).ok
    finally:
        target.close()


def test_a_host_with_another_key_receives_nothing(sshd, live, tmp_path):
    impostor = tmp_path / "impostor_known_hosts"
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    impostor.write_text(f"[127.0.0.1]:{sshd.port} {other.decode()}\n")
    target = SftpTarget("offsite", sshd.settings(known_hosts=str(impostor)))
    with pytest.raises(TargetError, match="cannot connect"):
        create_backup(live, target)
    assert not (sshd.root / "events").exists()


@pytest.mark.controls("PCI-DSS-10.3.3")
def test_the_command_line_backs_up_to_both_places(sshd, tmp_path):
    instance = tmp_path / "instance"
    runner = CliRunner()
    assert runner.invoke(main, ["--instance", str(instance), "init", "--json"]).exit_code == 0
    config = json.loads((instance / "strongroom.json").read_text())
    assert config["backup_targets"] == [{"name": "local", "kind": "local", "path": "backups/local"}]
    s = sshd.settings()
    config["backup_targets"].append({"name": "offsite", "kind": "sftp", "host": s.host, "port": s.port,
                                     "username": s.username, "key_file": s.key_file,
                                     "known_hosts": s.known_hosts, "path": s.path})
    (instance / "strongroom.json").write_text(json.dumps(config))

    created = runner.invoke(main, ["--instance", str(instance), "backup", "create", "--json"])
    assert created.exit_code == 0, created.output
    assert [b["target"] for b in json.loads(created.output)["backups"]] == ["local", "offsite"]
    assert len(_manifests(sshd.root)) == 1 and len(_manifests(instance / "backups" / "local")) == 1
    # Every signed checkpoint is witnessed off-site, byte for byte as in the instance's
    # own folder, and the store verifies against that witness (issue 11, item 2).
    witnessed = sorted(p.name for p in (sshd.root / "checkpoints").glob("checkpoint-*.json"))
    assert witnessed and all((sshd.root / "checkpoints" / name).read_bytes()
                             == (instance / "checkpoints" / name).read_bytes() for name in witnessed)
    assert witnessed == sorted(p.name for p in (instance / "backups" / "local" / "checkpoints").iterdir())
    against = runner.invoke(main, ["--instance", str(instance), "audit", "verify",
                                   "--witness", str(sshd.root / "checkpoints")])
    assert against.exit_code == 0 and "witness: " in against.output, against.output
    verified = runner.invoke(main, ["--instance", str(instance), "backup", "verify", "--target", "offsite"])
    assert verified.exit_code == 0, verified.output
    drilled = runner.invoke(main, ["--instance", str(instance), "backup", "drill", "--target", "offsite"])
    assert drilled.exit_code == 0, drilled.output

    sshd.stop()  # the off-site host goes away: the local copy is still made, the run says it failed
    again = runner.invoke(main, ["--instance", str(instance), "backup", "create", "--json"])
    assert again.exit_code == 1, again.output
    outcome = {b["target"]: b["ok"] for b in json.loads(again.output)["backups"]}
    assert outcome == {"local": True, "offsite": False}


def test_two_overlapping_runs_on_the_sftp_target_one_refuses_and_the_target_stays_whole(sshd, live, tmp_path):
    """Fault: a second `backup create` to the off-site host while the first is between segments."""
    reached, go = threading.Event(), threading.Event()

    class PausedAfterTwoSegments(SftpTarget):
        writes = 0

        def write(self, path, data):
            super().write(path, data)
            self.writes += 1
            if self.writes == 2:
                reached.set()
                assert go.wait(60)

    paused = PausedAfterTwoSegments("offsite", sshd.settings())
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=create_backup(live, paused, segment_rows=7)))
    thread.start()
    second = SftpTarget("offsite", sshd.settings())
    try:
        assert reached.wait(60)
        owner = json.loads((sshd.root / LOCK_FILE).read_text())
        assert owner["pid"] == os.getpid() and owner["purpose"] == "backup create"
        with pytest.raises(LockHeld, match="locked by another run"):
            create_backup(live, second, segment_rows=7)
        assert len(list((sshd.root / "events").rglob("*.seg"))) == 2  # the first run's segments stay
    finally:
        go.set()
        thread.join(60)
        paused.close()
    try:
        first = outcome["result"]
        assert first.rows == 30 and not (sshd.root / LOCK_FILE).exists()
        live.app.register_customer(customer_fields(email="later@example.org"))
        again = create_backup(live, second)
        assert again.after_position == first.last_position and again.rows == 1
        assert verify_target(second, ManifestSigner(live.keyring)).ok
        assert run_drill(live, second).failures == []
        restored = restore_backup(live=live, target=second, into_url=f"sqlite:///{tmp_path / 'r.sqlite'}",
                                  position=again.last_position)
        assert restored.rows == again.last_position
    finally:
        second.close()


def test_a_lock_left_on_the_sftp_host_by_a_dead_run_is_broken_and_the_next_run_completes(sshd, live):
    """Fault: a run killed mid-upload to the off-site host left its lock (and segments) behind."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])  # a pid that has surely ended
    dead.wait()
    (sshd.root / "events" / "interrupted").mkdir(parents=True)
    (sshd.root / "events" / "interrupted" / "000001.seg").write_bytes(b"half")
    (sshd.root / LOCK_FILE).write_text(json.dumps({
        "purpose": "backup create", "host": socket.gethostname(), "pid": dead.pid, "pid_started": None,
        "user": "cron", "token": "d" * 32, "started_at": "2026-12-04T03:00:00+00:00"}))
    target = SftpTarget("offsite", sshd.settings())
    try:
        done = create_backup(live, target, segment_rows=7)
        assert len(done.stale_locks_broken) == 1 and f"pid {dead.pid}" in done.stale_locks_broken[0]
        assert done.after_position == 0 and done.rows == 30
        assert [p.name for p in (sshd.root / "events").iterdir() if p.is_dir()] == [done.backup_id]
        # no lock, nothing aside: the backup, the keys and the witnessed checkpoints
        assert sorted(p.name for p in sshd.root.iterdir()) == ["checkpoints", "events", "keys"]
        assert verify_target(target, ManifestSigner(live.keyring)).ok
    finally:
        target.close()


def test_the_sftp_lock_is_created_exclusively_on_the_server(sshd):
    """Fault: two runs creating the lock at the same instant: the server's O_EXCL lets one through."""
    one, two = SftpTarget("offsite", sshd.settings()), SftpTarget("offsite", sshd.settings())
    try:
        one.create_exclusive(LOCK_FILE, b"one")
        with pytest.raises(FileExistsError):
            two.create_exclusive(LOCK_FILE, b"two")
        assert (sshd.root / LOCK_FILE).read_bytes() == b"one"
        assert oct((sshd.root / LOCK_FILE).stat().st_mode)[-3:] == "600"
    finally:
        one.close()
        two.close()
