"""Staff password hashing (R2.1): argon2id with parameters chosen on purpose.

RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes) costs about 0.1 s
on this project's 2-core machines: slow enough that a stolen hash table resists
offline guessing, fast enough that login stays under a second.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from typing import TypeVar

from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError

from application.ports import PasswordHasher
from application.throttle import PasswordCheckBusy

T = TypeVar("T")

ARGON2_PARAMETERS = {"time_cost": 3, "memory_cost": 64 * 1024, "parallelism": 4}


class Argon2PasswordHasher:
    def __init__(self) -> None:
        self._hasher = _Argon2(**ARGON2_PARAMETERS)

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


class BoundedHasher:
    """At most `slots` hashes at once in this process; the next caller gets
    PasswordCheckBusy (503) at once instead of waiting.

    Each argon2id check takes 64 MiB and about 0.1 s of a core: 16 logins in
    parallel held every request thread of a worker for seconds, /healthz included
    (issue 10, item 8). A full pool answers fast and leaves the threads free.
    """

    def __init__(self, inner: PasswordHasher, slots: int) -> None:
        self.inner = inner
        self._slots = threading.BoundedSemaphore(slots)

    def _run(self, work: Callable[[], T]) -> T:
        if not self._slots.acquire(blocking=False):
            raise PasswordCheckBusy()
        try:
            return work()
        finally:
            self._slots.release()

    def hash(self, password: str) -> str:
        return self._run(lambda: self.inner.hash(password))

    def verify(self, password_hash: str, password: str) -> bool:
        return self._run(lambda: self.inner.verify(password_hash, password))


def new_recovery_codes(count: int = 10) -> tuple[list[str], list[str]]:
    """Ten one-time recovery codes (R2.2) and their hashes.

    Each code carries 80 random bits, so a fast hash is enough: nobody can guess
    their way through 2**80 candidates, and checking stays cheap.
    """
    codes = ["-".join(secrets.token_hex(5)[i : i + 5] for i in (0, 5)) for _ in range(count)]
    return codes, [recovery_code_hash(code) for code in codes]


def recovery_code_hash(code: str) -> str:
    return hashlib.sha256(b"strongroom-recovery-code\x00" + code.strip().lower().encode()).hexdigest()
