"""The per-subject encrypting mapper (R1.1, R1.2): events in, ciphertext out.

The library's `Cipher` sees only bytes, never the stream id, so it cannot choose a
customer's key; a `Mapper` sees the whole event, so encryption lives here.

Each event's attributes are split by the field catalogue into up to three parts
(system, profile, KYC), each sealed with AES-256-GCM under that key. The associated
data binds every part to its stream id, version, event type and key kind: moving a
ciphertext to another row, another customer or another event type fails
authentication, which stops row-swapping by anyone with write access to the table.
The acting context (who, session, request, address, purpose) travels in the system
part, so it stays readable after the customer's keys are destroyed (R3.1, R3.5).

Stored layout (format 2, written since chain v2):

    b"SR" | 0x02 | meta_digest (32) | part count (1) | parts, each
    kind code (1) | nonce (12) | length (4, big-endian) | ciphertext

`meta_digest` is clear on purpose: it is what the row hash commits to about the
row's metadata (infrastructure/audit/chain.py), and PostgreSQL's insert function
reads it from here. The system part holds, beside the acting context (`_meta`),
the salt and canonical text it was computed from (`_chain`, audit/metadata.py).
The associated data of every part also binds the digest, so a header swapped
between rows fails authentication. Format 1 (no digest) is still read.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import (
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
    TranscodingNotRegisteredError,
    find_id_convertor,
)
from eventsourcing.utils import get_topic, resolve_topic

from application.context import require_context
from application.errors import SubjectErased
from domain.catalogue import KeyKind, key_for
from infrastructure.audit.chain import HASH_BYTES, SALT_BYTES, meta_digest
from infrastructure.audit.metadata import CHAIN_META, auditor_view, canonical
from infrastructure.crypto.keyring import SYSTEM_SUBJECT, KeyRing
from infrastructure.exact_json import orjson_reads_exactly

MAGIC = b"SR"
FORMAT = 2
READABLE_FORMATS = (1, 2)
_KIND_CODES = {KeyKind.SYSTEM: 0, KeyKind.PROFILE: 1, KeyKind.KYC: 2}
_CODE_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
_PART_HEADER = struct.Struct(">B12sI")
META = "_meta"


class TamperedEvent(MapperDeserialisationError):
    """A stored event failed authentication: changed, moved or corrupted at rest."""


def associated_data(
    originator_id: object, version: int, topic: str, kind: KeyKind, meta_digest: bytes | None = None
) -> bytes:
    """What each part's authentication binds: its row, its key kind and (format 2)
    the clear metadata digest."""
    fields = [
        b"strongroom/event/v1",
        str(originator_id).encode(),
        str(version).encode(),
        topic.encode(),
        str(kind).encode(),
    ]
    if meta_digest is not None:
        fields.append(meta_digest.hex().encode())
    return b"|".join(fields)


def split_by_key(state: dict[str, Any], snapshot: bool) -> dict[KeyKind, dict[str, Any]]:
    """Group attributes by the key the catalogue assigns them (snapshots: one level in)."""
    parts: dict[KeyKind, dict[str, Any]] = {}
    for name, value in state.items():
        if snapshot and name == "state":
            for inner_name, inner_value in value.items():
                part = parts.setdefault(key_for(inner_name), {})
                part.setdefault("state", {})[inner_name] = inner_value
            continue
        parts.setdefault(key_for(name), {})[name] = value
    parts.setdefault(KeyKind.SYSTEM, {})
    return parts


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    for name, value in part.items():
        if name == "state" and isinstance(value, dict) and isinstance(into.get("state"), dict):
            into["state"].update(value)
        else:
            into[name] = value


@dataclass(frozen=True)
class OpenedEvent:
    """A stored event opened once (`SubjectMapper.open_event`): application.ports.OpenedEvent."""

    meta: dict[str, Any]
    attributes: dict[str, Any]
    erased: bool = False


def _revive(value: Any, names: dict[str, Any]) -> Any:
    """What `JSONTranscoder`'s object hook does, over an already parsed document:
    inner objects first, then each `{"_type_": name, "_data_": ...}` made its type."""
    if type(value) is dict:
        for key, inner in value.items():
            if type(inner) is dict or type(inner) is list:
                value[key] = _revive(inner, names)
        if len(value) == 2 and "_type_" in value and "_data_" in value:
            try:
                transcoding = names[value["_type_"]]
            except KeyError:
                raise TranscodingNotRegisteredError(
                    f"Data serialized with name {value['_type_']!r} is not deserializable"
                ) from None
            return transcoding.decode(value["_data_"])
        return value
    if type(value) is list:
        return [_revive(inner, names) if type(inner) is dict or type(inner) is list else inner
                for inner in value]
    return value


class SubjectMapper(Mapper[UUID]):
    """Encrypts each event under its stream's (its subject's) data keys."""

    def __init__(self, transcoder: Transcoder, keyring: KeyRing) -> None:
        super().__init__(transcoder=transcoder)
        self.keyring = keyring
        # Decoding is most of the cost of reading a row (three times the AES-GCM):
        # the same JSON parsed by orjson, then the library's transcodings applied
        # as its object hook would (`_decode`). Writing is unchanged.
        self._names = transcoder.names if isinstance(transcoder, JSONTranscoder) else None
        self._class_versions: dict[str, int] = {}

    def _subject_for(self, kind: KeyKind, originator_id: object) -> str:
        return SYSTEM_SUBJECT if kind is KeyKind.SYSTEM else str(originator_id)

    # -- writing --------------------------------------------------------------------

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        context = require_context()  # fails closed: no actor, no write (R3.1)
        topic = get_topic(domain_event.__class__)
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        version = state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        snapshot = isinstance(domain_event, Snapshot)
        parts = split_by_key(state, snapshot)
        system = parts[KeyKind.SYSTEM]
        system[META] = context.as_metadata()
        # What the auditor will read, committed to by the row hash (chain v2): a
        # salted digest, so the clear header says nothing about who or why. The salt
        # and every part's nonce come from the OS in one call (issue 15: one system
        # call, and one hand-over of the interpreter lock, rather than one each).
        randomness = os.urandom(SALT_BYTES + 12 * len(parts))
        salt, nonces = randomness[:SALT_BYTES], randomness[SALT_BYTES:]
        text = canonical(auditor_view(topic, system[META], system, () if snapshot else state))
        digest = meta_digest(salt, text)
        system[CHAIN_META] = {"salt": salt.hex(), "canonical": text.decode("utf-8")}
        personal = [str(kind) for kind in parts if kind is not KeyKind.SYSTEM]
        if version == 1 and personal:
            # A new stream is a new subject: make all its keys in one transaction
            # rather than probing for each and creating them one at a time.
            self.keyring.create_subject(str(originator_id), sorted({*personal, "profile", "kyc"}))
        sealed = [MAGIC, bytes((FORMAT,)), digest, bytes((len(parts),))]
        for n, (kind, fields) in enumerate(parts.items()):
            aead = self.keyring.aead(self._subject_for(kind, originator_id), kind, create=True)
            nonce = nonces[12 * n:12 * n + 12]
            ciphertext = aead.encrypt(
                nonce,
                self.transcoder.encode(fields),
                associated_data(originator_id, version, topic, kind, digest),
            )
            sealed.append(_PART_HEADER.pack(_KIND_CODES[kind], nonce, len(ciphertext)))
            sealed.append(ciphertext)
        return StoredEvent(
            originator_id=originator_id,
            originator_version=version,
            topic=topic,
            state=b"".join(sealed),
        )

    # -- reading --------------------------------------------------------------------

    def open_parts(
        self, stored: StoredEvent, only: KeyKind | None = None
    ) -> dict[KeyKind, dict[str, Any]]:
        """Decrypt the parts of a stored event (or just one kind of them).

        Raises SubjectErased when a needed key was destroyed and TamperedEvent when
        a ciphertext fails authentication.
        """
        digest, parts = self._sealed_parts(stored)
        return {kind: self._open_part(stored, digest, kind, nonce, ciphertext)
                for kind, nonce, ciphertext in parts if only is None or kind is only}

    def _sealed_parts(self, stored: StoredEvent) -> tuple[bytes | None, list[tuple[KeyKind, bytes, bytes]]]:
        """The envelope's clear digest and its parts (kind, nonce, ciphertext), unopened."""
        data = stored.state
        if data[:2] != MAGIC or len(data) < 4 or data[2] not in READABLE_FORMATS or (
            data[2] == 2 and len(data) < 4 + HASH_BYTES
        ):
            raise TamperedEvent(
                f"stored event {stored.originator_id} v{stored.originator_version} "
                "is not in Strongroom's envelope format"
            )
        digest = data[3:3 + HASH_BYTES] if data[2] == 2 else None
        offset = 3 + (HASH_BYTES if digest is not None else 0)
        count = data[offset]
        offset += 1
        parts = []
        for _ in range(count):
            code, nonce, length = _PART_HEADER.unpack_from(data, offset)
            offset += _PART_HEADER.size
            ciphertext = data[offset : offset + length]
            offset += length
            kind = _CODE_KINDS.get(code)
            if kind is None:
                raise TamperedEvent("unknown key kind in stored event")
            parts.append((kind, nonce, ciphertext))
        return digest, parts

    def _open_part(self, stored: StoredEvent, digest: bytes | None, kind: KeyKind, nonce: bytes,
                   ciphertext: bytes) -> dict[str, Any]:
        try:
            aead = self.keyring.aead(self._subject_for(kind, stored.originator_id), kind)
        except KeyError:
            raise TamperedEvent(
                f"stored event {stored.originator_id} v{stored.originator_version}: "
                f"no {kind} key exists for this stream"
            ) from None
        try:
            plaintext = aead.decrypt(
                nonce,
                ciphertext,
                associated_data(
                    stored.originator_id, stored.originator_version, stored.topic, kind, digest
                ),
            )
        except InvalidTag:
            raise TamperedEvent(
                f"stored event {stored.originator_id} v{stored.originator_version} "
                f"failed authentication ({kind} part)"
            ) from None
        return self._decode(plaintext)

    def _decode(self, plaintext: bytes) -> dict[str, Any]:
        """The part's attributes, as `self.transcoder.decode` gives them (tested
        against it over every kind of event: tests/infrastructure/test_envelope.py)."""
        if self._names is None:
            return cast(dict[str, Any], self.transcoder.decode(plaintext))
        if not orjson_reads_exactly(plaintext):
            # orjson reads an integer beyond 64 bits as a float, silently: a run of 19
            # digits (a number, or only digits inside a string) is read by the library.
            return cast(dict[str, Any], self.transcoder.decode(plaintext))
        try:
            parsed = orjson.loads(plaintext)
        except orjson.JSONDecodeError:  # what orjson refuses and json takes (NaN, Infinity)
            return cast(dict[str, Any], self.transcoder.decode(plaintext))
        typed = plaintext.count(b'"_type_"')  # a key or the exact string: quotes inside strings are escaped
        if not typed or type(parsed) is not dict:
            return cast(dict[str, Any], parsed if not typed else _revive(parsed, self._names))
        # Most typed values are attributes' own (a timestamp): revive those first and
        # walk the whole document only if some are nested deeper.
        for name, value in parsed.items():
            if (type(value) is dict and len(value) == 2 and "_type_" in value and "_data_" in value
                    and type(value["_data_"]) is not dict and type(value["_data_"]) is not list):
                parsed[name] = _revive(value, self._names)
                typed -= 1
        return cast(dict[str, Any], parsed if not typed else _revive(parsed, self._names))

    def _class_version(self, topic: str) -> int:
        try:
            return self._class_versions[topic]
        except KeyError:
            version = self._class_versions[topic] = getattr(resolve_topic(topic), "class_version", 1)
            return version

    # -- application.ports.EventMetadata: what survives erasure -------------------------

    def metadata(self, stored: StoredEvent) -> dict[str, Any]:
        """Who, when, where and why of a stored event, readable after erasure."""
        system = self.open_parts(stored, only=KeyKind.SYSTEM).get(KeyKind.SYSTEM, {})
        return cast(dict[str, Any], system.get(META, {}))

    def system_attributes(self, stored: StoredEvent) -> dict[str, Any]:
        """The attributes the catalogue seals under the system key (never destroyed),
        without the acting context: what an erased subject's event still says."""
        system = self.open_parts(stored, only=KeyKind.SYSTEM).get(KeyKind.SYSTEM, {})
        return {name: value for name, value in system.items() if name not in (META, CHAIN_META)}

    def open_event(self, stored: StoredEvent) -> OpenedEvent:
        """The acting context and the attributes of a stored event, each part opened
        (one AES-GCM decryption, one decoding) once: the audit trail's and the
        monitor's reader (application/audit_trail.py). The system part comes first;
        when a personal key was destroyed the attributes are the system part's alone
        and `erased` is set, as `system_attributes` would say. Upcast like
        `to_domain_event`, so both readers see the same attributes."""
        digest, parts = self._sealed_parts(stored)
        system: dict[str, Any] = {}
        for kind, nonce, ciphertext in parts:
            if kind is KeyKind.SYSTEM:
                system = self._open_part(stored, digest, kind, nonce, ciphertext)
        meta = cast(dict[str, Any], system.pop(META, {}))
        system.pop(CHAIN_META, None)
        state = system
        try:
            personal = [self._open_part(stored, digest, kind, nonce, ciphertext)
                        for kind, nonce, ciphertext in parts if kind is not KeyKind.SYSTEM]
        except SubjectErased:
            return OpenedEvent(meta, system, erased=True)
        for fields in personal:
            _merge(state, fields)
        class_version = self._class_version(stored.topic)
        from_version = state.pop("class_version", 1)
        if from_version < class_version:
            cls = resolve_topic(stored.topic)
            while from_version < class_version:
                getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
                from_version += 1
        return OpenedEvent(meta, state)

    def authenticate(self, stored: StoredEvent) -> None:
        """Check every part's authentication tag and nothing more (no decoding, which
        costs ten times the AES-GCM): raises TamperedEvent if the row was changed. For a
        reader that skips a row's content but must still notice tampering. A part whose
        key was destroyed cannot be checked and is passed over."""
        digest, parts = self._sealed_parts(stored)
        for kind, nonce, ciphertext in parts:
            try:
                aead = self.keyring.aead(self._subject_for(kind, stored.originator_id), kind)
            except SubjectErased:
                continue
            except KeyError:
                raise TamperedEvent(
                    f"stored event {stored.originator_id} v{stored.originator_version}: "
                    f"no {kind} key exists for this stream"
                ) from None
            try:
                aead.decrypt(nonce, ciphertext, associated_data(
                    stored.originator_id, stored.originator_version, stored.topic, kind, digest))
            except InvalidTag:
                raise TamperedEvent(
                    f"stored event {stored.originator_id} v{stored.originator_version} "
                    f"failed authentication ({kind} part)"
                ) from None

    def chained_metadata(self, stored: StoredEvent) -> tuple[bytes, str] | None:
        """(salt, canonical text) of a format-2 event: what its meta_digest was made
        from; None for a format-1 event, which has none."""
        system = self.open_parts(stored, only=KeyKind.SYSTEM).get(KeyKind.SYSTEM, {})
        chained = system.get(CHAIN_META)
        if not isinstance(chained, dict):
            return None
        return bytes.fromhex(chained["salt"]), str(chained["canonical"])

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        state: dict[str, Any] = {}
        for fields in self.open_parts(stored_event).values():
            _merge(state, fields)
        return self.event_from_state(stored_event, state)

    @staticmethod
    def event_from_state(stored_event: Any, state: dict[str, Any]) -> Any:
        """The domain event of `stored_event` from its opened attributes (`state`, which
        is consumed): bookkeeping dropped, id converted, upcast to the class's version."""
        cls = resolve_topic(stored_event.topic)
        state.pop(META, None)
        state.pop(CHAIN_META, None)
        id_convertor = find_id_convertor(cls, cast(Hashable, type(stored_event.originator_id)))
        state["originator_id"] = id_convertor(stored_event.originator_id)
        state["originator_version"] = stored_event.originator_version
        class_version = getattr(cls, "class_version", 1)
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", state)
        return domain_event
