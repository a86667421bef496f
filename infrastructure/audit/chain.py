"""The hash chain over the event log (R3.3): what a row's hash commits to.

Every stored row, change or access record alike, carries `prev_hash` (the row
hash of the row before it in position order) and `row_hash`. Two versions exist;
which one a row uses is decided by its position against `v2_from`, the first
position chained the v2 way, recorded per event table in `audit_chain_format`
(a store that had rows before the upgrade keeps them as they were):

    row_hash v1 = SHA-256( "strongroom/chain/v1\\0"
                        || prev_hash                      32 bytes (zeros for the first row)
                        || position                       int64, big-endian
                        || len(stream_id) || stream_id    int32 + UTF-8 (canonical UUID text)
                        || version                        int64
                        || len(topic) || topic            int32 + UTF-8
                        || recorded_at                    int64 microseconds since the Unix epoch, UTC
                        || SHA-256(ciphertext) )          32 bytes

    row_hash v2 = SHA-256( "strongroom/chain/v2\\0" || the same fields as v1
                        || meta_digest )                  32 bytes (zeros: the state has no header)

    meta_digest = SHA-256( "strongroom/event-metadata/v1\\0" || salt (16 bytes) || canonical )

`canonical` is what an auditor reads about the row (`metadata.py`: who, session,
request, address, purpose; for an access record its kind, outcome, customer ids,
fields and details) as canonical JSON; the salt is random per row, so the digest
says nothing about low-entropy metadata to someone without the KEK. Both live
inside the encrypted system part; `meta_digest` itself travels in the clear header
of the stored state (envelope format 2, `infrastructure/crypto/envelope.py`).

Why v2: a v1 hash commits to the ciphertext only, so the metadata in an evidence
bundle was covered by the export signature alone, and anyone holding the KEK
could export a reveal moved onto another member of staff. With v2 the bundle
carries the salt and canonical metadata per row and the verifier recomputes the
digest into the row hash, which the signed checkpoints pin.

Why a clear header and not a column: the digest is made where the event is
encrypted (the mapper), and the state bytes are the one thing that travels
unchanged from there through both of the library's insert paths, its PostgreSQL
composite type, backups and restores. A column would need a fifth field in the
library's `StoredEvent` and its composite type, and a table migration on both
stores; the header needs none, and cannot be separated from its row.

Everything hashed is readable without decryption (the header is clear), so
verifying needs no key and still works after a customer's keys are destroyed.
The ciphertext enters through its own digest: an evidence bundle carries 32
bytes per row instead of the ciphertext itself (R6.3); `meta_digest` is hashed
beside it (though the ciphertext's digest covers it too) so that a bundle can
check metadata against the chain without the ciphertext.

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
CHAIN_TAG_V2 = b"strongroom/chain/v2\x00"
META_TAG = b"strongroom/event-metadata/v1\x00"
SALT_BYTES = 16
# Where each events table's chain turns v2: (events_table, version 2, from_position).
CHAIN_FORMAT_TABLE = "audit_chain_format"
# The clear header of a format-2 state: b"SR", the format byte 2, then the
# 32-byte meta_digest (envelope.py); PostgreSQL's insert function reads it too.
V2_HEADER = b"SR\x02"
GENESIS = bytes(32)
# What a v2 row hash takes for a state with no metadata header. Strongroom's mapper
# always writes one; the library's own conformance suites write bare states, which
# the stores accept and `audit verify` names as rows whose metadata is not chained.
NO_METADATA = bytes(32)
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


def meta_digest_of_state(state: bytes) -> bytes | None:
    """The meta_digest in a format-2 state's clear header, or None (a v1-era state)."""
    if state[:3] == V2_HEADER and len(state) >= 3 + HASH_BYTES:
        return state[3:3 + HASH_BYTES]
    return None


def meta_digest(salt: bytes, canonical: bytes) -> bytes:
    """What a v2 row hash commits to about the row's metadata (salted, see above)."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"a metadata salt is {SALT_BYTES} bytes")
    return hashlib.sha256(META_TAG + salt + canonical).digest()


def row_hash(
    prev_hash: bytes,
    position: int,
    stream_id: str,
    version: int,
    topic: str,
    recorded_at_us: int,
    digest: bytes,
    meta: bytes | None = None,
) -> bytes:
    """The hash a row must carry, given its predecessor's hash and its own contents:
    v1 without `meta`, v2 (committing to the metadata digest) with it."""
    sid = stream_id.encode()
    top = topic.encode()
    return hashlib.sha256(
        b"".join((
            CHAIN_TAG if meta is None else CHAIN_TAG_V2,
            prev_hash,
            _INT64.pack(position),
            _INT32.pack(len(sid)),
            sid,
            _INT64.pack(version),
            _INT32.pack(len(top)),
            top,
            _INT64.pack(recorded_at_us),
            digest,
            b"" if meta is None else meta,
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
    meta_digest: bytes | None = None  # from a format-2 state's header; None for a v1-era state

    def expected_hash(self, v2: bool | None = None) -> bytes:
        """The hash this row must carry: v2 when `v2` (or, when not said, when its
        state carries a metadata digest)."""
        chained_v2 = self.meta_digest is not None if v2 is None else v2
        return row_hash(
            self.prev_hash, self.position, self.stream_id, self.version, self.topic,
            self.recorded_at_us, self.digest, (self.meta_digest or NO_METADATA) if chained_v2 else None,
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
