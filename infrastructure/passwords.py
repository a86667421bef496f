"""Staff password hashing (R2.1): argon2id with parameters chosen on purpose.

RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes) costs about 0.1 s
on this project's 2-core machines: slow enough that a stolen hash table resists
offline guessing, fast enough that login stays under a second.
"""

from __future__ import annotations

from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError

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
