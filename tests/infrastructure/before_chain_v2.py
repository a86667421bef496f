"""Strongroom as it wrote events before chain v2, to make a store that predates it.

An upgraded store holds rows written by the version before: envelope format 1 (no
metadata digest in a clear header, none in the associated data), row hashes v1
(the ciphertext only), and no `audit_chain_format` table. `before_chain_v2(patch)`
makes this process write exactly so, until the patch is undone; everything else is
today's code. The old mapper is restated here as it was; the old insert function
is today's with the v2 tag and the digest taken back out.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Literal

from application.context import require_context
from domain.catalogue import KeyKind
from infrastructure.audit.chain import CHAIN_TAG, CHAIN_TAG_V2, epoch_micros, row_hash, state_digest
from infrastructure.crypto import envelope
from infrastructure.eventstore import postgres, sqlite


def _to_stored_event_v1(self: envelope.SubjectMapper, domain_event: Any) -> StoredEvent:
    """SubjectMapper.to_stored_event before chain v2 (envelope format 1)."""
    context = require_context()
    topic = get_topic(domain_event.__class__)
    state = dict(vars(domain_event))
    originator_id = state.pop("originator_id")
    version = state.pop("originator_version")
    class_version = getattr(type(domain_event), "class_version", 1)
    if class_version > 1:
        state["class_version"] = class_version
    parts = envelope.split_by_key(state, isinstance(domain_event, Snapshot))
    parts[KeyKind.SYSTEM][envelope.META] = context.as_metadata()
    personal = [str(kind) for kind in parts if kind is not KeyKind.SYSTEM]
    if version == 1 and personal:
        self.keyring.create_subject(str(originator_id), sorted({*personal, "profile", "kyc"}))
    sealed = [envelope.MAGIC, bytes((1, len(parts)))]
    for kind, fields in parts.items():
        aead = self.keyring.aead(self._subject_for(kind, originator_id), kind, create=True)
        nonce = os.urandom(12)
        ciphertext = aead.encrypt(nonce, self.transcoder.encode(fields),
                                  envelope.associated_data(originator_id, version, topic, kind))
        sealed.append(envelope._PART_HEADER.pack(envelope._KIND_CODES[kind], nonce, len(ciphertext)))
        sealed.append(ciphertext)
    return StoredEvent(originator_id=originator_id, originator_version=version, topic=topic,
                       state=b"".join(sealed))


def _sqlite_chain_hash_v1(prev: bytes, position: int, stream_id: str, version: int, topic: str,
                          stamp: str, state: bytes) -> bytes:
    from datetime import datetime

    return row_hash(prev, position, stream_id, version, topic, epoch_micros(datetime.fromisoformat(stamp)),
                    state_digest(state))


def _postgres_function_v1(**kwargs: Any) -> SQL:
    text = _V2_FUNCTION(**kwargs).as_string(None)
    v1 = text.replace(Literal(CHAIN_TAG_V2).as_string(None), Literal(CHAIN_TAG).as_string(None))
    v1 = v1.replace(" || sha256(e.state) || md); ", " || sha256(e.state)); ")
    assert v1.count(Literal(CHAIN_TAG).as_string(None)) == 1 and " || md)" not in v1
    return SQL(v1)  # type: ignore[arg-type]


def _sqlite_statements_v1(self: Any) -> list[str]:
    return [s for s in _SQLITE_CREATE(self) if "audit_chain_format" not in s]


_SQLITE_CREATE = sqlite.TimedSQLiteApplicationRecorder.construct_create_table_statements
_V2_FUNCTION = postgres.chained_insert_function


def before_chain_v2(patch: pytest.MonkeyPatch) -> None:
    """Write as the version before chain v2 did, until `patch` is undone."""
    patch.setattr(envelope.SubjectMapper, "to_stored_event", _to_stored_event_v1)
    patch.setattr(sqlite, "_chain_hash", _sqlite_chain_hash_v1)
    patch.setattr(sqlite.TimedSQLiteApplicationRecorder, "construct_create_table_statements", _sqlite_statements_v1)
    patch.setattr(postgres, "chained_insert_function", _postgres_function_v1)
    patch.setattr(postgres, "chain_format_statements", lambda **_: [])
