"""Where backups go: a local folder, and an off-site host over SFTP (R4.1).

A target stores named files and nothing else. Every write is atomic: the bytes go
to a temporary name and are renamed into place (`os.replace` locally, the SFTP
`posix-rename` extension remotely), so a reader never sees half a file under its
final name. Together with "manifest last", an interrupted backup can never pass
for a complete one.

Targets come from the instance configuration (`strongroom.json`):

    "backup_targets": [
      {"name": "local", "kind": "local", "path": "backups/local"},
      {"name": "offsite", "kind": "sftp", "host": "backup.example.net", "port": 22,
       "username": "strongroom", "key_file": "/etc/strongroom/backup_ed25519",
       "known_hosts": "/etc/strongroom/backup_known_hosts", "path": "/srv/strongroom"}
    ]

A relative local path is relative to the instance folder. With no
`backup_targets` at all, the instance's `backups/local` folder is the one target.
Any target may set `lock_stale_after` (seconds without a heartbeat before a run's
lock on it counts as stale; default 3600): see lock.py.
"""

from __future__ import annotations

import errno
import os
import posixpath
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from infrastructure.private_files import make_private_folder


class TargetError(Exception):
    """A target cannot be configured or reached."""


class Target(Protocol):
    name: str
    lock_stale_after: float  # seconds without a heartbeat before a run's lock counts as stale


    def write(self, path: str, data: bytes) -> None:
        """Store `data` at `path`, atomically."""

    def read(self, path: str) -> bytes:
        """The bytes at `path`; raises FileNotFoundError when absent."""

    def list(self, folder: str) -> list[str]:
        """Names in `folder` (empty when it does not exist)."""

    def remove(self, path: str) -> None:
        """Remove one file (absent is fine)."""

    def remove_tree(self, folder: str) -> None:
        """Remove `folder` and everything in it (absent is fine)."""

    def create_exclusive(self, path: str, data: bytes) -> None:
        """Create `path` holding `data`; FileExistsError if it exists (atomic test-and-create)."""

    def modified_at(self, path: str) -> float:
        """When `path` was last modified (seconds since the epoch); FileNotFoundError when absent."""

    def touch(self, path: str) -> None:
        """Set the modification time of `path` to now (a lock's heartbeat)."""

    def rename(self, path: str, new_path: str) -> None:
        """Move `path` to the unused name `new_path`; FileNotFoundError if `path` is gone."""

    def describe(self) -> str:
        """Where this target is, for operators (no secrets)."""

    def close(self) -> None: ...


DEFAULT_LOCK_STALE_AFTER = 3600.0


class LocalTarget:
    """A folder on this host (or a mounted volume), owner-only permissions."""

    def __init__(self, name: str, root: Path, lock_stale_after: float = DEFAULT_LOCK_STALE_AFTER) -> None:
        self.name = name
        self.root = root
        self.lock_stale_after = lock_stale_after

    def _path(self, path: str) -> Path:
        full = (self.root / path).resolve()
        if self.root.resolve() not in (full, *full.parents):
            raise TargetError(f"path {path!r} leaves the target folder")
        return full

    def write(self, path: str, data: bytes) -> None:
        final = self._path(path)
        make_private_folder(final.parent)
        temporary = final.with_name(f".{final.name}.{secrets.token_hex(4)}.part")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        # The rename is durable only once the folder itself is synced.
        folder = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def read(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def list(self, folder: str) -> list[str]:
        try:
            return sorted(p.name for p in self._path(folder).iterdir())
        except FileNotFoundError:
            return []

    def remove(self, path: str) -> None:
        self._path(path).unlink(missing_ok=True)

    def remove_tree(self, folder: str) -> None:
        import shutil

        shutil.rmtree(self._path(folder), ignore_errors=True)

    def create_exclusive(self, path: str, data: bytes) -> None:
        final = self._path(path)
        make_private_folder(final.parent)
        # O_EXCL: of two runs creating at once, exactly one succeeds.
        fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def modified_at(self, path: str) -> float:
        return self._path(path).stat().st_mtime

    def touch(self, path: str) -> None:
        os.utime(self._path(path))

    def rename(self, path: str, new_path: str) -> None:
        os.rename(self._path(path), self._path(new_path))

    def describe(self) -> str:
        return f"local folder {self.root}"

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class SftpSettings:
    host: str
    port: int
    username: str
    key_file: str
    known_hosts: str
    path: str
    timeout: float = 15.0


class SftpTarget:
    """A folder on another host over SFTP (paramiko), with a pinned host key.

    The host key must be in `known_hosts` beforehand: an unknown or changed key is
    refused (never trusted on first use), because a man in the middle would
    otherwise receive every backup.
    """

    def __init__(self, name: str, settings: SftpSettings,
                 lock_stale_after: float = DEFAULT_LOCK_STALE_AFTER) -> None:
        self.name = name
        self.settings = settings
        self.lock_stale_after = lock_stale_after
        self._client: Any = None
        self._sftp: Any = None

    def _connect(self) -> Any:
        if self._sftp is not None:
            return self._sftp
        import paramiko

        s = self.settings
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(s.known_hosts)
        except OSError as exc:
            raise TargetError(f"target {self.name}: cannot read known_hosts {s.known_hosts}: {exc}") from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                s.host, port=s.port, username=s.username, key_filename=s.key_file,
                allow_agent=False, look_for_keys=False, timeout=s.timeout,
                banner_timeout=s.timeout, auth_timeout=s.timeout,
            )
            self._sftp = client.open_sftp()
            self._sftp.get_channel().settimeout(s.timeout)
        except (paramiko.SSHException, OSError) as exc:
            client.close()
            raise TargetError(f"target {self.name}: cannot connect to {s.host}:{s.port}: {exc}") from None
        self._client = client
        return self._sftp

    def _remote(self, path: str) -> str:
        joined = posixpath.normpath(posixpath.join(self.settings.path, path))
        if not (joined == self.settings.path.rstrip("/") or joined.startswith(self.settings.path.rstrip("/") + "/")):
            raise TargetError(f"path {path!r} leaves the target folder")
        return joined

    def _makedirs(self, sftp: Any, folder: str) -> None:
        parts, current = folder.strip("/").split("/"), "/" if folder.startswith("/") else ""
        for part in parts:
            current = posixpath.join(current, part) if current else part
            try:
                sftp.stat(current)
            except FileNotFoundError:
                try:
                    sftp.mkdir(current, mode=0o700)
                except OSError:
                    sftp.stat(current)  # made meanwhile by another run: fine

    def _lost(self, exc: BaseException) -> TargetError:
        # The session is unusable after a transport error; the next call reconnects.
        self.close()
        return TargetError(f"target {self.name}: connection to {self.settings.host} lost ({type(exc).__name__})")

    def write(self, path: str, data: bytes) -> None:
        import paramiko

        try:
            self._write(path, data)
        except (paramiko.SSHException, EOFError, ConnectionError, TimeoutError) as exc:
            raise self._lost(exc) from None

    def _write(self, path: str, data: bytes) -> None:
        sftp = self._connect()
        final = self._remote(path)
        self._makedirs(sftp, posixpath.dirname(final))
        temporary = posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}.{secrets.token_hex(4)}.part")
        with sftp.open(temporary, "wb") as handle:
            handle.set_pipelined(True)
            for start in range(0, len(data), 32768):
                handle.write(data[start:start + 32768])
        sftp.chmod(temporary, 0o600)
        sftp.posix_rename(temporary, final)

    def read(self, path: str) -> bytes:
        import paramiko

        sftp = self._connect()
        try:
            with sftp.open(self._remote(path), "rb") as handle:
                handle.prefetch()
                return bytes(handle.read())
        except (paramiko.SSHException, EOFError, ConnectionError, TimeoutError) as exc:
            raise self._lost(exc) from None
        except OSError as exc:
            if getattr(exc, "errno", None) == errno.ENOENT or isinstance(exc, FileNotFoundError):
                raise FileNotFoundError(path) from None
            raise

    def list(self, folder: str) -> list[str]:
        sftp = self._connect()
        try:
            return sorted(sftp.listdir(self._remote(folder)))
        except FileNotFoundError:
            return []

    def remove(self, path: str) -> None:
        try:
            self._connect().remove(self._remote(path))
        except FileNotFoundError:
            pass

    def remove_tree(self, folder: str) -> None:
        sftp = self._connect()
        remote = self._remote(folder)
        try:
            entries = sftp.listdir_attr(remote)
        except FileNotFoundError:
            return
        for entry in entries:
            child = posixpath.join(remote, entry.filename)
            if stat.S_ISDIR(entry.st_mode or 0):
                self.remove_tree(posixpath.relpath(child, self.settings.path))
            else:
                sftp.remove(child)
        sftp.rmdir(remote)

    def _guarded(self, call: Callable[[], Any]) -> Any:
        import paramiko

        try:
            return call()
        except (paramiko.SSHException, EOFError, ConnectionError, TimeoutError) as exc:
            raise self._lost(exc) from None

    def create_exclusive(self, path: str, data: bytes) -> None:
        self._guarded(lambda: self._create_exclusive(path, data))

    def _create_exclusive(self, path: str, data: bytes) -> None:
        sftp = self._connect()
        final = self._remote(path)
        self._makedirs(sftp, posixpath.dirname(final))
        try:
            # SSH_FXF_EXCL: the server creates with O_EXCL, so one of two runs wins.
            with sftp.open(final, "wx") as handle:
                handle.write(data)
        except FileNotFoundError:
            raise
        except OSError:
            # SFTP v3 reports "exists" as a bare failure: tell it apart by looking.
            try:
                sftp.stat(final)
            except FileNotFoundError:
                raise TargetError(f"target {self.name}: cannot create {path}") from None
            raise FileExistsError(path) from None
        sftp.chmod(final, 0o600)

    def modified_at(self, path: str) -> float:
        return float(self._guarded(lambda: self._connect().stat(self._remote(path)).st_mtime) or 0)

    def touch(self, path: str) -> None:
        import time

        now = time.time()
        self._guarded(lambda: self._connect().utime(self._remote(path), (now, now)))

    def rename(self, path: str, new_path: str) -> None:
        self._guarded(lambda: self._connect().posix_rename(self._remote(path), self._remote(new_path)))

    def describe(self) -> str:
        s = self.settings
        return f"sftp://{s.username}@{s.host}:{s.port}{s.path}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._sftp = None


def targets_from_config(instance: Path, config: Any) -> list[Target]:
    """The configured targets; with none configured, `<instance>/backups/local`."""
    if config is None:
        config = [{"name": "local", "kind": "local", "path": "backups/local"}]
    if not isinstance(config, list) or not config:
        raise TargetError("backup_targets must be a non-empty list")
    targets: list[Target] = []
    names: set[str] = set()
    for entry in config:
        if not isinstance(entry, dict) or not entry.get("name") or entry.get("kind") not in ("local", "sftp"):
            raise TargetError("each backup target needs a name and a kind of 'local' or 'sftp'")
        name = str(entry["name"])
        if name in names:
            raise TargetError(f"backup target {name!r} is configured twice")
        names.add(name)
        if entry["kind"] == "local":
            if not entry.get("path"):
                raise TargetError(f"backup target {name!r} needs a path")
            root = Path(entry["path"])
            targets.append(LocalTarget(name, root if root.is_absolute() else instance / root,
                                       _stale_after(name, entry)))
            continue
        missing = [k for k in ("host", "username", "key_file", "known_hosts", "path") if not entry.get(k)]
        if missing:
            raise TargetError(f"SFTP target {name!r} needs {', '.join(missing)}")
        try:
            port = int(entry.get("port", 22))
        except (TypeError, ValueError):
            raise TargetError(f"SFTP target {name!r}: port must be a number") from None
        targets.append(SftpTarget(name, SftpSettings(
            host=str(entry["host"]), port=port, username=str(entry["username"]),
            key_file=str(entry["key_file"]), known_hosts=str(entry["known_hosts"]),
            path=str(entry["path"]), timeout=float(entry.get("timeout", 15.0)),
        ), _stale_after(name, entry)))
    return targets


def _stale_after(name: str, entry: dict[str, Any]) -> float:
    try:
        value = float(entry.get("lock_stale_after", DEFAULT_LOCK_STALE_AFTER))
    except (TypeError, ValueError):
        raise TargetError(f"backup target {name!r}: lock_stale_after must be a number of seconds") from None
    if value <= 0:
        raise TargetError(f"backup target {name!r}: lock_stale_after must be positive")
    return value
