"""Blind indexes for exact-match search over encrypted fields (R1.3).

A blind index is HMAC-SHA256 of the normalised value under a per-field key derived
(HKDF) from the index root key, truncated to `bits`. Truncation is deliberate: each
index value matches a handful of customers, so a stolen index table cannot confirm
that one particular person is a customer (a full-length keyed hash would be a
perfect membership oracle for anyone who also holds the key). Candidates are then
decrypted and compared exactly.

Tuning (SPEC R1.3): with N rows and b bits a value matches about N / 2**b rows; we
aim for about four, and keep it within 2 <= N / 2**b < sqrt(N).
"""

from __future__ import annotations

import hashlib
import hmac
import math

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def bits_for(expected_rows: int) -> int:
    """Index width giving about four matches per value at `expected_rows`."""
    rows = max(expected_rows, 64)
    bits = int(math.floor(math.log2(rows / 4)))
    # Never so narrow that a value matches sqrt(N) rows or more.
    bits = max(bits, int(math.ceil(math.log2(rows) / 2)) + 1)
    return min(max(bits, 8), 62)


class BlindIndex:
    """Truncated keyed hashes of normalised values, one derived key per field."""

    def __init__(self, root_key: bytes, bits: int) -> None:
        if not 8 <= bits <= 62:
            raise ValueError("blind index width must be between 8 and 62 bits")
        self.bits = bits
        self._field_keys: dict[str, bytes] = {}
        self._root_key = root_key

    def _field_key(self, field: str) -> bytes:
        key = self._field_keys.get(field)
        if key is None:
            key = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=b"strongroom/bidx/" + field.encode()
            ).derive(self._root_key)
            self._field_keys[field] = key
        return key

    def full_digest(self, field: str, normalised_value: str) -> str:
        """The untruncated keyed hash, kept sealed beside a value to confirm a match."""
        return hmac.new(self._field_key(field), normalised_value.encode(), hashlib.sha256).hexdigest()

    def digest(self, field: str, normalised_value: str) -> int:
        """The index value (a non-negative integer of `bits` bits)."""
        mac = hmac.new(self._field_key(field), normalised_value.encode(), hashlib.sha256).digest()
        return int.from_bytes(mac[:8], "big") >> (64 - self.bits)
