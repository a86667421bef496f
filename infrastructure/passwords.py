"""Staff password hashing (R2.1): argon2id with parameters chosen on purpose.

RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes) costs about 0.1 s
on this project's 2-core machines: slow enough that a stolen hash table resists
offline guessing, fast enough that login stays under a second.
"""

from __future__ import annotations

import hashlib
import hmac
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


# Recovery codes (R2.2, issue 10 item 10a): 16 characters of Crockford's base32, 80
# random bits, shown as XXXX-XXXX-XXXX-XXXX. Crockford's alphabet has no I, L, O or U,
# so a code read aloud or retyped from paper survives O/0 and I/L/1 confusions.
RECOVERY_CODE_BYTES = 10  # 80 bits
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_READING = str.maketrans({"O": "0", "I": "1", "L": "1"})
# Stored form: "rc2$<salt>$<HMAC-SHA256(salt, code)>", a salt of 128 bits per code, so
# that equal codes never share a stored value and no table is precomputed across
# accounts. A fast keyed hash is enough for 80 random bits: 2**80 candidates per code
# stays out of reach of any offline search.
_SCHEME = "rc2"
# Before: ten hex characters (only 40 bits, despite what the comment said) under one
# unsalted SHA-256. Still accepted, since people hold them on paper; the first such
# code used replaces the whole set (Identity.complete_mfa).
_LEGACY_PREFIX = b"strongroom-recovery-code\x00"


def _base32(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    return "".join(_CROCKFORD[(number >> shift) & 31] for shift in range(len(data) * 8 - 5, -1, -5))


def new_recovery_codes(count: int = 10) -> tuple[list[str], list[str]]:
    """`count` one-time recovery codes (R2.2), and their salted hashes (what is kept)."""
    codes = []
    while len(codes) < count:
        raw = _base32(secrets.token_bytes(RECOVERY_CODE_BYTES))
        code = "-".join(raw[i : i + 4] for i in range(0, 16, 4))
        if code not in codes:
            codes.append(code)
    return codes, [_stored(code, secrets.token_bytes(16)) for code in codes]


def _normalised(code: str) -> bytes:
    kept = "".join(code.split()).replace("-", "").upper().translate(_CROCKFORD_READING)
    return kept.encode("utf-8", "replace")


def _stored(code: str, salt: bytes) -> str:
    digest = hmac.new(salt, _normalised(code), hashlib.sha256).hexdigest()
    return f"{_SCHEME}${salt.hex()}${digest}"


def _legacy_hash(code: str) -> str:
    return hashlib.sha256(_LEGACY_PREFIX + code.strip().lower().encode("utf-8", "replace")).hexdigest()


def is_legacy_recovery_code(stored: str) -> bool:
    """A hash of the old 40-bit format: the set it belongs to should be replaced."""
    return not stored.startswith(f"{_SCHEME}$")


def recovery_code_matches(code: str, stored: str) -> bool:
    """Whether `code` is the one `stored` was made from; compared in constant time."""
    if is_legacy_recovery_code(stored):
        return hmac.compare_digest(_legacy_hash(code), stored)
    _scheme, salt, _digest = stored.split("$", 2)
    try:
        expected = _stored(code, bytes.fromhex(salt))
    except ValueError:
        return False
    return hmac.compare_digest(expected, stored)


def activation_code_hasher(key: bytes) -> Callable[[str], str]:
    """HMAC-SHA256 of an activation code (R2.9) under a key of the installation: a copy
    of the table without the key cannot test a guessed code. The codes carry 128
    random bits, so one keyed hash (not argon2) is enough."""
    derived = hmac.new(key, b"strongroom/activation-code/v1", hashlib.sha256).digest()

    def code_hash(code: str) -> str:
        return hmac.new(derived, code.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    return code_hash
