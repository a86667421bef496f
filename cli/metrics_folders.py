"""The `strongroom-metrics-*` folders `strongroom serve` shares with its workers.

prometheus_client's multiprocess mode needs one folder per server that every worker
writes into. The master makes it in the temporary directory and removes it when it
stops; a master killed with SIGKILL (or by the OOM killer) cannot, so each folder
names its owner in a file (`master`: the pid and, on Linux, the process's start
time), and every `strongroom serve` removes, at start, the folders whose owner is
gone. A folder is removed only when its owner is provably not running: a pid that
no longer exists, or one the kernel has since given to another process (its start
time differs). A folder without an owner file is left alone: it may belong to a
server that is starting right now, between making the folder and naming itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

PREFIX = "strongroom-metrics-"
OWNER_FILE = "master"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), if known."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours to judge
        return True
    return True


def owner_running(folder: Path) -> bool | None:
    """Whether the master named in `folder` still runs; None when the folder names none."""
    try:
        recorded = (folder / OWNER_FILE).read_text().split()
        pid = int(recorded[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid <= 0 or not _alive(pid):
        return False
    started = recorded[1] if len(recorded) > 1 else None
    now = _start_time(pid)
    # The same pid with another start time is a different process: the owner is gone.
    return not (started is not None and now is not None and started != now)


def make_metrics_folder() -> str:
    """A new folder for this master's metrics, naming this process as its owner."""
    folder = Path(tempfile.mkdtemp(prefix=PREFIX))
    pid = os.getpid()
    (folder / OWNER_FILE).write_text(f"{pid} {_start_time(pid) or ''}".strip() + "\n")
    return str(folder)


def remove_stale_metrics_folders(parent: Path | None = None) -> list[Path]:
    """Remove the metrics folders in `parent` (the temporary directory) whose master is gone."""
    parent = Path(parent or tempfile.gettempdir())
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        candidates = sorted(parent.glob(f"{PREFIX}*"))
        for folder in candidates:
            try:
                info = folder.lstat()
            except OSError:
                continue
            # Only real folders of our own user: a symlink or another user's folder
            # planted under the prefix must not steer a removal elsewhere.
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            if owner_running(folder) is False:
                shutil.rmtree(folder, ignore_errors=True)
                if not folder.exists():
                    removed.append(folder)
    return removed
