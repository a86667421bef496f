"""A data-subject export, sealed (R5.3): signed with the audit key, encrypted to the requester.

Inside, a zip: the export's files (`export.json`, `tables/*.csv`), `manifest.json`
(subject id, time, SHA-256 of every file, the audit key's id), `manifest.sig` (the
Ed25519 signature of manifest.json by the instance's audit signing key, the key that
signs checkpoints) and `audit-signing.pub`. Whoever opens it checks the signature
against the public key they pinned (the instance's `audit-signing.pub`), so a file
changed or made up elsewhere does not pass for ours.

Outside, the stored layout:

    b"SRDSAR1\\n" | header length (4, big-endian) | header (JSON) | AES-256-GCM ciphertext

The header says how the content key is reached: `passphrase` (scrypt, n=2^15, r=8,
p=1, a random 16-byte salt), `x25519` (an ephemeral key agreed with the requester's
public key, HKDF-SHA256) or `rsa-oaep` (a random key wrapped with RSA-OAEP-SHA256).
The whole header is the ciphertext's associated data: changing the mode, salt or
nonce fails authentication. The passphrase and the private key never reach us; the
file is useless to whoever intercepts it without one of them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import struct
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from application.ports.privacy import ExportRecipient
from infrastructure.audit.signer import CheckpointSigner, key_id_of, load_public_key, public_pem, signature_valid

MAGIC = b"SRDSAR1\n"
FORMAT = "strongroom-subject-export/1"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
HKDF_INFO = b"strongroom/subject-export/v1"
MANIFEST, SIGNATURE, PUBLIC_KEY = "manifest.json", "manifest.sig", "audit-signing.pub"
MAX_HEADER = 4096


class ExportUnreadable(Exception):
    """The file is not an export, the passphrase or key is wrong, or it was changed."""


def _scrypt(passphrase: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase.encode("utf-8"))


def _hkdf(shared: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=HKDF_INFO).derive(shared)


def _raw_x25519(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class ExportSeal:
    """Implements `application.ports.ExportSealer` with the instance's audit signer."""

    def __init__(self, signer: CheckpointSigner) -> None:
        self.signer = signer

    def seal(self, files: dict[str, bytes], recipient: ExportRecipient, *, subject_id: str) -> bytes:
        manifest = json.dumps({
            "format": FORMAT,
            "subject_id": subject_id,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "key_id": self.signer.key_id,
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
        }, indent=2, sort_keys=True).encode("utf-8")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in sorted(files.items()):
                archive.writestr(name, data)
            archive.writestr(MANIFEST, manifest)
            archive.writestr(SIGNATURE, base64.b64encode(self.signer.sign(manifest)))
            archive.writestr(PUBLIC_KEY, self.signer.public_pem())
        return encrypt(buffer.getvalue(), recipient)


def encrypt(plaintext: bytes, recipient: ExportRecipient) -> bytes:
    """`plaintext` sealed to a passphrase or a public key (see the module text)."""
    header: dict[str, Any] = {"format": FORMAT, "nonce": os.urandom(12).hex()}
    if recipient.passphrase is not None:
        salt = os.urandom(16)
        key = _scrypt(recipient.passphrase, salt)
        header.update(mode="passphrase", kdf={"name": "scrypt", "salt": salt.hex(), "n": SCRYPT_N,
                                              "r": SCRYPT_R, "p": SCRYPT_P})
    elif recipient.public_key_pem is not None:
        try:
            public = serialization.load_pem_public_key(recipient.public_key_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError, TypeError):
            raise ValueError("public_key: not a PEM public key") from None
        if isinstance(public, X25519PublicKey):
            ephemeral = X25519PrivateKey.generate()
            salt = os.urandom(16)
            key = _hkdf(ephemeral.exchange(public), salt)
            header.update(mode="x25519", ephemeral_public=_raw_x25519(ephemeral.public_key()).hex(),
                          salt=salt.hex(), recipient=_raw_x25519(public).hex())
        elif isinstance(public, RSAPublicKey):
            if public.key_size < 2048:
                raise ValueError("public_key: an RSA key must have at least 2048 bits")
            key = AESGCM.generate_key(bit_length=256)
            wrapped = public.encrypt(key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                       algorithm=hashes.SHA256(), label=None))
            header.update(mode="rsa-oaep", wrapped_key=base64.b64encode(wrapped).decode("ascii"))
        else:
            raise ValueError("public_key: must be an X25519 or RSA public key")
    else:
        raise ValueError("give a passphrase or a public key")
    encoded = json.dumps(header, sort_keys=True).encode("utf-8")
    aad = MAGIC + struct.pack(">I", len(encoded)) + encoded
    return aad + AESGCM(key).encrypt(bytes.fromhex(header["nonce"]), plaintext, aad)


def decrypt(blob: bytes, *, passphrase: str | None = None, private_key_pem: bytes | None = None) -> bytes:
    """The zip inside an export; ExportUnreadable for anything wrong, saying what."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise ExportUnreadable("not a Strongroom subject export")
    (length,) = struct.unpack(">I", blob[len(MAGIC):len(MAGIC) + 4])
    if length > MAX_HEADER:
        raise ExportUnreadable("not a Strongroom subject export")
    aad = blob[:len(MAGIC) + 4 + length]
    try:
        header = json.loads(aad[len(MAGIC) + 4:])
        nonce = bytes.fromhex(header["nonce"])
        mode = header["mode"]
    except (ValueError, KeyError, TypeError):
        raise ExportUnreadable("the export's header is damaged") from None
    key = _content_key(header, mode, passphrase, private_key_pem)
    try:
        return AESGCM(key).decrypt(nonce, blob[len(aad):], aad)
    except (InvalidTag, ValueError):
        raise ExportUnreadable("wrong passphrase or key, or the file was changed") from None


def _content_key(header: dict[str, Any], mode: str, passphrase: str | None, private_key_pem: bytes | None) -> bytes:
    try:
        if mode == "passphrase":
            if passphrase is None:
                raise ExportUnreadable("this export opens with a passphrase")
            kdf = header["kdf"]
            if (kdf["n"], kdf["r"], kdf["p"]) != (SCRYPT_N, SCRYPT_R, SCRYPT_P):
                raise ExportUnreadable("unexpected key-derivation parameters")
            return _scrypt(passphrase, bytes.fromhex(kdf["salt"]))
        if private_key_pem is None:
            raise ExportUnreadable("this export opens with a private key")
        private = serialization.load_pem_private_key(private_key_pem, password=None)
        if mode == "x25519" and isinstance(private, X25519PrivateKey):
            peer = X25519PublicKey.from_public_bytes(bytes.fromhex(header["ephemeral_public"]))
            return _hkdf(private.exchange(peer), bytes.fromhex(header["salt"]))
        if mode == "rsa-oaep" and isinstance(private, RSAPrivateKey):
            return private.decrypt(base64.b64decode(header["wrapped_key"]), padding.OAEP(
                mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
        raise ExportUnreadable("the private key is not of the kind this export was sealed to")
    except (KeyError, TypeError) as exc:
        raise ExportUnreadable("the export's header is damaged") from exc
    except ValueError as exc:
        raise ExportUnreadable("wrong passphrase or key, or the file was changed") from exc


@dataclass(frozen=True)
class OpenedExport:
    files: dict[str, bytes]
    manifest: dict[str, Any]
    key_id: str
    pinned: bool  # the signature verified with a key the opener supplied, not the one inside


def open_export(blob: bytes, *, passphrase: str | None = None, private_key_pem: bytes | None = None,
                audit_public_key_pem: bytes | None = None) -> OpenedExport:
    """Decrypt, check every file against the manifest and the manifest's signature.

    With `audit_public_key_pem` (the instance's published `audit-signing.pub`) the
    signature must verify with that key; without it, with the key inside, which proves
    only that the file is intact, not who made it (`pinned` says which)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(decrypt(blob, passphrase=passphrase, private_key_pem=private_key_pem)))
        contents = {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        raise ExportUnreadable("the export's content is damaged") from None
    try:
        manifest_bytes = contents.pop(MANIFEST)
        signature = base64.b64decode(contents.pop(SIGNATURE), validate=True)
        inside = contents.pop(PUBLIC_KEY)
        manifest = json.loads(manifest_bytes)
    except (KeyError, ValueError):
        raise ExportUnreadable("the export has no valid signed manifest") from None
    public = load_public_key(audit_public_key_pem if audit_public_key_pem is not None else inside)
    if not signature_valid(public, signature, manifest_bytes):
        raise ExportUnreadable("the signature does not verify with the audit key")
    if public_pem(public) != public_pem(load_public_key(inside)):
        raise ExportUnreadable("the export was signed with another key than the one it carries")
    listed = manifest.get("files", {})
    if set(listed) != set(contents):
        raise ExportUnreadable("the files do not match the manifest")
    for name, data in contents.items():
        if hashlib.sha256(data).hexdigest() != listed[name]:
            raise ExportUnreadable(f"{name} does not match the manifest")
    return OpenedExport(contents, manifest, key_id_of(public), audit_public_key_pem is not None)
