"""Segment files and signed manifests: what a backup looks like on a target.

    events/<backup id>/000001.seg ...      rows as stored, JSON lines
    events/<backup id>/checkpoints.json    the signed checkpoints up to its last position
    events/<backup id>.manifest.json       written last, atomically
    keys/<backup id>/keys.seg              wrapped data keys and the erasure ledger
    keys/<backup id>.manifest.json

A manifest names every segment with its SHA-256, size, row count and positions,
the chain head (when the table has chain columns), the previous increment (by id
and the SHA-256 of its manifest, so a deleted or swapped increment breaks the
link), and an Ed25519 signature over all of that. Its presence is what makes a
backup complete: segments without a manifest are an interrupted run.

The signing key is an installation data key (system subject, kind
"backup-signing"), wrapped by the KEK like every other: whoever can forge a
manifest can also read the keys, so the signature adds nothing for them, and
stops everyone else (someone with write access to the backup folder only).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from application.clock import utc_now
from infrastructure.exact_json import orjson_reads_exactly
from infrastructure.crypto.keyring import SYSTEM_SUBJECT, KeyRing

FORMAT = "strongroom-backup/1"
SEGMENT_FORMAT = "strongroom-backup-segment/1"
SIGNING_KIND = "backup-signing"
EVENTS, KEYS = "events", "keys"
MANIFEST_SUFFIX = ".manifest.json"
CHECKPOINTS_SEGMENT = "checkpoints.json"


class BackupCorrupt(Exception):
    """A backup file does not match its manifest, or the manifest its signature."""

    def __init__(self, file: str, problem: str) -> None:
        super().__init__(f"{file}: {problem}")
        self.file = file
        self.problem = problem


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_backup_id(now: datetime | None = None) -> str:
    """Sortable by time, unique across concurrent runs."""
    now = now or utc_now()
    return f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(3)}"


def manifest_path(kind: str, backup_id: str) -> str:
    return f"{kind}/{backup_id}{MANIFEST_SUFFIX}"


def segment_path(kind: str, backup_id: str, name: str) -> str:
    return f"{kind}/{backup_id}/{name}"


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


# -- segments -------------------------------------------------------------------------------


def encode_segment(columns: list[str], rows: list[list[Any]]) -> bytes:
    lines = [json.dumps({"format": SEGMENT_FORMAT, "columns": columns}, separators=(",", ":"))]
    lines.extend(json.dumps(row, separators=(",", ":")) for row in rows)
    return ("\n".join(lines) + "\n").encode()


def decode_segment(file: str, data: bytes) -> tuple[list[str], list[list[Any]]]:
    """A segment's columns and rows. The rows are parsed by orjson where it reads them
    exactly (infrastructure/exact_json.py; issue 15: the standard library's parser
    was a sixth of a restore's insert); otherwise, or where orjson refuses what the
    standard library takes, by the standard library, as before."""
    try:
        header, *body = data.decode().splitlines()
        head = json.loads(header)
        if head.get("format") != SEGMENT_FORMAT:
            raise BackupCorrupt(file, "not a Strongroom backup segment")
        columns = list(head["columns"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BackupCorrupt(file, "segment does not parse") from None
    rows = _orjson_rows(body) if orjson_reads_exactly(data) else None
    if rows is not None:
        return columns, rows
    try:
        return columns, [json.loads(line) for line in body]
    except ValueError:
        raise BackupCorrupt(file, "segment does not parse") from None


def _orjson_rows(lines: list[str]) -> list[list[Any]] | None:
    """The lines parsed by orjson, or None where it refuses one (NaN, say)."""
    try:
        return [orjson.loads(line) for line in lines]
    except orjson.JSONDecodeError:
        return None


# -- signatures -----------------------------------------------------------------------------


class ManifestSigner:
    """Signs and checks manifests with the installation's backup-signing key."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring  # also asked whether a key backup's generation expired (generations.py)
        seed = keyring.raw_key(SYSTEM_SUBJECT, SIGNING_KIND)
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._private.public_key()
        raw = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key_b64 = base64.b64encode(raw).decode()
        self.fingerprint = sha256(raw)[:16]

    def sign(self, document: dict[str, Any]) -> dict[str, Any]:
        unsigned = {k: v for k, v in document.items() if k != "signature"}
        unsigned["signed_by"] = {"algorithm": "Ed25519", "public_key": self.public_key_b64,
                                 "fingerprint": self.fingerprint}
        signature = self._private.sign(canonical(unsigned))
        return {**unsigned, "signature": base64.b64encode(signature).decode()}

    def check(self, file: str, document: dict[str, Any]) -> None:
        """Raise BackupCorrupt unless this installation's key signed `document`.

        The public key inside the manifest is never trusted: a forger would put
        their own there. The check uses the key this installation holds.
        """
        try:
            signature = base64.b64decode(document["signature"], validate=True)
        except (KeyError, ValueError, TypeError):
            raise BackupCorrupt(file, "manifest is not signed") from None
        unsigned = {k: v for k, v in document.items() if k != "signature"}
        try:
            self.public_key.verify(signature, canonical(unsigned))
        except InvalidSignature:
            raise BackupCorrupt(file, "manifest signature does not verify (forged or altered)") from None


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text))


def parse_manifest(file: str, data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError:
        raise BackupCorrupt(file, "manifest is not valid JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BackupCorrupt(file, "not a Strongroom backup manifest")
    return document
