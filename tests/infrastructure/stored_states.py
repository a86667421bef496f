"""Stored states for tests that write through the recorders without the mapper.

Since chain v2 the insert functions refuse a state that carries no metadata digest
in its clear header (envelope format 2: b"SR", 2, 32-byte digest); a state made
here carries a digest of its own payload, which is all a recorder looks at.
"""

from __future__ import annotations

import hashlib

from infrastructure.audit.chain import V2_HEADER


def chained_state(payload: bytes) -> bytes:
    """`payload` behind a format-2 header, as the recorders require."""
    return V2_HEADER + hashlib.sha256(b"test metadata " + payload).digest() + payload
