"""The hash chain over the event log (R3.3): what a row's hash commits to.

Every stored row, change or access record alike, carries `prev_hash` (the row
hash of the row before it in position order) and `row_hash`:

    row_hash = SHA-256( "strongroom/chain/v1\\0"
                        || prev_hash                      32 bytes (zeros for the first row)
                        || position                       int64, big-endian
                        || len(stream_id) || stream_id    int32 + UTF-8 (canonical UUID text)
                        || version                        int64
                        || len(topic) || topic            int32 + UTF-8
                        || recorded_at                    int64 microseconds since the Unix epoch, UTC
                        || SHA-256(ciphertext) )          32 bytes

Everything hashed is stored in clear beside the ciphertext, so verifying needs no
decryption key and still works after a customer's keys are destroyed. The
ciphertext enters through its own digest: the commitment is as strong (SHA-256 is
collision resistant) and an evidence bundle can carry 32 bytes per row instead of
the ciphertext itself, so checking the chain offline never ships encrypted
personal data to an auditor (R6.3).

The encoding is fixed-width or length-prefixed, so no two different rows encode to
the same bytes; PostgreSQL computes the very same bytes in its insert function
(`int8send`, `int4send`, `sha256`), which is why the integers are big-endian.

A chain alone cannot stop someone with write access from recomputing every hash
after a change; signed checkpoints (`checkpoints.py`) pin the head, so rewriting
anything at or before a checkpoint shows.
"""

from __future__ import annotations

import hashlib
import struct
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

CHAIN_TAG = b"strongroom/chain/v1\x00"
GENESIS = bytes(32)
HASH_BYTES = 32

_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def epoch_micros(when: datetime) -> int:
    """Exact microseconds since the Unix epoch (no float rounding)."""
    if when.tzinfo is None:
        raise ValueError("expected a timezone-aware time")
    return (when - _EPOCH) // _MICROSECOND


def from_epoch_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def state_digest(state: bytes) -> bytes:
    return hashlib.sha256(state).digest()


def row_hash(
    prev_hash: bytes,
    position: int,
    stream_id: str,
    version: int,
    topic: str,
    recorded_at_us: int,
    digest: bytes,
) -> bytes:
    """The hash a row must carry, given its predecessor's hash and its own contents."""
    sid = stream_id.encode()
    top = topic.encode()
    return hashlib.sha256(
        b"".join((
            CHAIN_TAG,
            prev_hash,
            _INT64.pack(position),
            _INT32.pack(len(sid)),
            sid,
            _INT64.pack(version),
            _INT32.pack(len(top)),
            top,
            _INT64.pack(recorded_at_us),
            digest,
        ))
    ).digest()


class ChainRow(NamedTuple):
    """One stored row as the chain sees it: clear metadata, the ciphertext's digest.

    A named tuple rather than a dataclass: verification builds one per row, and a
    tuple is several times cheaper to make.
    """

    position: int
    stream_id: str
    version: int
    topic: str
    recorded_at_us: int
    digest: bytes
    prev_hash: bytes
    row_hash: bytes
    error: str | None = None  # set when a column could not even be read as its type

    def expected_hash(self) -> bytes:
        return row_hash(
            self.prev_hash, self.position, self.stream_id, self.version, self.topic,
            self.recorded_at_us, self.digest,
        )

    @property
    def recorded_at(self) -> datetime:
        return from_epoch_micros(self.recorded_at_us)


def canonical_uuid_hex(stored: str) -> str:
    """`str(UUID(stored))` for the 32-digit hex SQLite stores, without making a UUID."""
    h = stored.lower()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def unreadable_row(position: int, prev_hash: Any, row_hash_value: Any, exc: Exception) -> ChainRow:
    """A row whose columns do not parse (a mangled stamp, a non-UTF-8 topic...).

    Verification names it rather than stopping at an exception; its stored hashes
    are kept when they are bytes, so the rows after it are still checked.
    """
    def as_hash(value: Any) -> bytes:
        return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else b""

    return ChainRow(
        position=position, stream_id="", version=0, topic="", recorded_at_us=0, digest=b"",
        prev_hash=as_hash(prev_hash), row_hash=as_hash(row_hash_value),
        error=f"{type(exc).__name__} reading its columns",
    )
