"""Key-encryption keys (R1.4): the one secret that unlocks every data key.

A `KekProvider` wraps and unwraps data keys; it never hands out the KEK itself, so a
hardware module (PKCS#11) can implement the same interface with the key inside it.
Wrapping is AES-256-GCM with the subject and key kind as associated data: a wrapped
key copied onto another customer's row fails to unwrap, which stops an attacker with
write access to the key table from making one customer's data readable as another's.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEK_BYTES = 32
NONCE_BYTES = 12


class KekError(Exception):
    """The KEK is missing, unreadable, exposed, or not the one the store was made with."""


class KekProvider(Protocol):
    """Wraps data keys under a key-encryption key that never leaves the provider."""

    @property
    def kek_id(self) -> str:
        """A fingerprint naming the KEK (not secret, not derived reversibly)."""

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        """Encrypt `data_key`, bound to `context` (who the key belongs to)."""

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Decrypt a wrapped key; raises KekError when the KEK or context is wrong."""


class LocalKek:
    """The embedded default: 32 random bytes in a file readable by its owner only."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEK_BYTES:
            raise KekError(f"the KEK must be {KEK_BYTES} bytes")
        self._aead = AESGCM(key)
        # A fingerprint lets `keys status` and start-up name which KEK is in use
        # without revealing anything about it (one-way, domain-separated).
        self._kek_id = hashlib.sha256(b"strongroom-kek-id\x00" + key).hexdigest()[:16]

    @classmethod
    def create(cls, path: Path) -> LocalKek:
        """Make a new KEK file with mode 0600; refuses to overwrite an existing one."""
        key = AESGCM.generate_key(bit_length=256)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> LocalKek:
        """Read the KEK file; a missing, short or group/world-readable file is refused."""
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise KekError(
                f"no KEK file at {path}: run `strongroom init`, or point "
                "STRONGROOM_INSTANCE at the instance folder that holds kek.key"
            ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Another local user could copy the key that unlocks every customer.
            raise KekError(f"{path} is readable by others: run `chmod 600 {path}`")
        key = path.read_bytes()
        if len(key) != KEK_BYTES:
            raise KekError(f"{path} does not hold a {KEK_BYTES}-byte key")
        return cls(key)

    @property
    def kek_id(self) -> str:
        return self._kek_id

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context)
        except (InvalidTag, ValueError):
            raise KekError("a data key does not unwrap under this KEK") from None
