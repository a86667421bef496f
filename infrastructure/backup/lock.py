"""One writer per backup target (R7.6): the target's lock.

Two `backup create` runs on one target at once would each take the other's
segments for leftovers of an interrupted run and build on the same base: both
say "ok" and the target is broken for good. So a run holds `backup.lock` at the
top of the target for its whole life, and everything that writes or prunes the
target does so only while holding it (`confirm()` before each write).

The lock is a file created atomically (O_EXCL locally, SSH_FXF_EXCL over SFTP:
of two runs, exactly one creates it) holding its owner as JSON: host, pid,
user, purpose, a random token and the start time. Its modification time is the
heartbeat: the holder touches it as it works. A second run is refused with the
owner and the lock's age, or waits a bounded time for it.

A lock is stale when its process is gone (same host, pid no longer running: a
run killed with SIGKILL never reaches its `finally`) or when it has had no
heartbeat for longer than the target's `lock_stale_after` (any host). A stale
lock is broken safely: renamed aside atomically (only one breaker can win the
rename), then compared with what was judged; if the token differs, or the lock
beat meanwhile, it was not the stale lock and is put back. A holder whose lock
was broken finds out at its next `confirm()` and stops before writing a
manifest, so a run wrongly judged stale can never complete a backup.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from infrastructure.backup.targets import Target, TargetError

LOCK_FILE = "backup.lock"


class LockHeld(TargetError):
    """Another live run holds the target's lock."""


class LockLost(TargetError):
    """This run's lock was broken or replaced: it must not write any further."""


def _process_gone(pid: int, started: str | None) -> bool:
    """True when `pid` no longer runs here (or is a zombie, or is another process now)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    stat = _proc_stat(pid)
    if stat is None:
        return False  # no /proc: trust the signal
    state, start = stat
    return state == "Z" or (started is not None and start != started)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]  # state, start time in clock ticks since boot (tells a reused pid apart)


def _token(data: bytes) -> str:
    try:
        return str(json.loads(data)["token"])
    except (ValueError, KeyError, TypeError):
        return data.hex()  # half-written by its creator: compared as bytes


def describe_owner(data: bytes) -> str:
    try:
        owner = json.loads(data)
        return (f"{owner['purpose']} by {owner['user']}@{owner['host']} pid {owner['pid']}"
                f" (token {str(owner['token'])[:8]}), started {owner['started_at']}")
    except (ValueError, KeyError, TypeError):
        return "a run whose lock file is still being written"


class TargetLock:
    """Hold a target's lock: `with TargetLock(target, purpose="backup create") as lock: ...`."""

    def __init__(self, target: Target, *, purpose: str, wait: float = 0.0, stale_after: float | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.target = target
        self.purpose = purpose
        self.wait = wait
        self.stale_after = stale_after if stale_after is not None else target.lock_stale_after
        self.heartbeat = min(60.0, self.stale_after / 4)
        self.token = secrets.token_hex(16)
        self.broken: list[str] = []  # what stale locks this run broke, for the operator
        self._clock, self._sleep = clock, sleep
        self._held = False
        self._beat = 0.0

    def _document(self) -> bytes:
        stat = _proc_stat(os.getpid())
        return json.dumps({
            "purpose": self.purpose, "host": socket.gethostname(), "pid": os.getpid(),
            "pid_started": stat[1] if stat else None, "user": getpass.getuser(), "token": self.token,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }).encode()

    def acquire(self) -> None:
        deadline = self._clock() + self.wait
        document = self._document()
        while True:
            try:
                self.target.create_exclusive(LOCK_FILE, document)
            except FileExistsError:
                pass
            else:
                self._held, self._beat = True, self._clock()
                self.target.touch(LOCK_FILE)  # the heartbeat is on this side's clock, like every later one
                return
            try:
                modified = self.target.modified_at(LOCK_FILE)
                data = self.target.read(LOCK_FILE)
            except FileNotFoundError:
                continue  # released meanwhile: try again
            age = self._clock() - modified
            stale = self._stale(data, age)
            if stale is not None:
                self._break(data, modified, stale)
                continue
            remaining = deadline - self._clock()
            if remaining <= 0:
                waited = f" after waiting {self.wait:.0f}s" if self.wait else ""
                raise LockHeld(
                    f"target {self.target.name} is locked by another run{waited}: {describe_owner(data)};"
                    f" last heartbeat {age:.0f}s ago (stale after {self.stale_after:.0f}s without one)."
                    f" Try again later or pass --wait SECONDS")
            self._sleep(min(1.0, remaining))

    def _stale(self, data: bytes, age: float) -> str | None:
        try:
            owner = json.loads(data)
            host, pid, started = str(owner["host"]), int(owner["pid"]), owner.get("pid_started")
        except (ValueError, KeyError, TypeError):
            host, pid, started = "", 0, None
        if host == socket.gethostname() and pid > 0 and _process_gone(pid, started):
            return f"its process {pid} on {host} no longer runs"
        if age > self.stale_after:
            return f"no heartbeat for {age:.0f}s (stale after {self.stale_after:.0f}s)"
        return None

    def _break(self, judged: bytes, modified: float, reason: str) -> None:
        aside = f".{LOCK_FILE}.broken.{secrets.token_hex(4)}"
        try:
            self.target.rename(LOCK_FILE, aside)  # atomic: of two breakers, one moves it
        except FileNotFoundError:
            return  # released or broken by someone else meanwhile
        moved = self.target.read(aside)
        if _token(moved) == _token(judged) and self.target.modified_at(aside) <= modified:
            self.target.remove(aside)
            self.broken.append(f"broke the stale lock of {describe_owner(judged)}: {reason}")
            return
        # Not the lock that was judged (a newer run's, or it beat meanwhile): put it back.
        try:
            self.target.create_exclusive(LOCK_FILE, moved)
        except FileExistsError:
            pass
        self.target.remove(aside)

    def confirm(self) -> None:
        """Raise LockLost unless this run still holds the lock; beat the heartbeat when due."""
        try:
            data = self.target.read(LOCK_FILE)
        except FileNotFoundError:
            data = b""
        if not self._held or _token(data) != self.token:
            self._held = False
            raise LockLost(f"target {self.target.name}: this run's lock was broken by another run"
                           f" (judged stale); stopping before writing anything more")
        now = self._clock()
        if now - self._beat >= self.heartbeat:
            self.target.touch(LOCK_FILE)
            self._beat = now

    def release(self) -> None:
        """Remove the lock if it is still this run's; never raises (a left lock is judged stale later)."""
        if not self._held:
            return
        self._held = False
        try:
            if _token(self.target.read(LOCK_FILE)) == self.token:
                self.target.remove(LOCK_FILE)
        # A lost link on the way out must not hide the run's own outcome.
        except Exception:  # noqa: BLE001, S110  # nosec B110
            pass

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()
