"""Files and folders only the service's own user may read (R1.3, R1.4, R7.1).

The SQLite stores (and their `-wal` and `-shm` files, which hold the latest pages in
the clear of SQLite's own format), the KEK, checkpoint copies and local backups are
made 0600 in folders made 0700, whatever the process umask: another local user must
not copy an encrypted store and its key side by side, nor read who did what. SQLite
gives its `-wal` and `-shm` files the mode of the database file, so making that one
private first is enough for all three.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def make_private_folder(folder: Path) -> None:
    """`folder` and every missing parent, each made 0700 (`Path.mkdir(parents=True)`
    would give the parents the umask's mode, often 0755)."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=PRIVATE_FOLDER)
        except FileExistsError:
            pass  # another process made it meanwhile


def open_private(path: Path | str, flags: int = os.O_WRONLY | os.O_CREAT | os.O_EXCL) -> int:
    """`os.open` with mode 0600: the file is never readable by others, not even briefly."""
    return os.open(path, flags, PRIVATE_FILE)


def make_private_sqlite(path: str) -> None:
    """Create the SQLite file 0600 before SQLite does (it would use the umask), and
    take group and other access away from an existing one and its `-wal`/`-shm`
    (made by an earlier version), so every page of the store stays private."""
    try:
        os.close(open_private(path))
    except FileExistsError:
        pass
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        try:
            mode = os.stat(name).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISREG(mode) and mode & 0o077:
            os.chmod(name, stat.S_IMODE(mode) & PRIVATE_FOLDER)
