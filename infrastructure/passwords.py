"""Staff password hashing (R2.1): argon2id with parameters chosen on purpose.

RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes) costs about 0.1 s
on this project's 2-core machines: slow enough that a stolen hash table resists
offline guessing, fast enough that login stays under a second.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

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


def new_recovery_codes(count: int = 10) -> tuple[list[str], list[str]]:
    """Ten one-time recovery codes (R2.2) and their hashes.

    Each code carries 80 random bits, so a fast hash is enough: nobody can guess
    their way through 2**80 candidates, and checking stays cheap.
    """
    codes = ["-".join(secrets.token_hex(5)[i : i + 5] for i in (0, 5)) for _ in range(count)]
    return codes, [recovery_code_hash(code) for code in codes]


def recovery_code_hash(code: str) -> str:
    return hashlib.sha256(b"strongroom-recovery-code\x00" + code.strip().lower().encode()).hexdigest()


def activation_code_hasher(key: bytes) -> Callable[[str], str]:
    """HMAC-SHA256 of an activation code (R2.9) under a key of the installation: a copy
    of the table without the key cannot test a guessed code. The codes carry 128
    random bits, so one keyed hash (not argon2) is enough."""
    derived = hmac.new(key, b"strongroom/activation-code/v1", hashlib.sha256).digest()

    def code_hash(code: str) -> str:
        return hmac.new(derived, code.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    return code_hash
