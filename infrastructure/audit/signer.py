"""The checkpoint signing key (R3.3, R6.3): Ed25519, held like a data key.

The private half is a 32-byte seed kept in the key store wrapped by the KEK, as the
system subject's `audit-signing` key, so it is backed up, rotated and protected
exactly like every data key and never written anywhere in clear. With the `pkcs11`
key provider the key is a non-extractable object in the token, which signs. The
public half is not secret: it is written beside the instance (`audit-signing.pub`)
and into every evidence bundle, and its fingerprint (`key_id`) names it in each
checkpoint.

Why a signature and not just the chain: anyone who can write the table can also
recompute every later hash after changing a row; only someone holding this key can
sign a head that agrees with the rewritten history.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from infrastructure.crypto.keyring import SYSTEM_SUBJECT, KeyRing
from infrastructure.crypto.pkcs11_token import Pkcs11Token, TokenSigningKey

AUDIT_SIGNING_KIND = "audit-signing"
PUBLIC_KEY_FILE = "audit-signing.pub"


class PublicKeyError(Exception):
    """A public key file that is not an Ed25519 public key in PEM."""


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key (first 16 hex digits of its SHA-256)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(b"strongroom-audit-key\x00" + raw).hexdigest()[:16]


def fingerprint_of(public_key: Ed25519PublicKey) -> str:
    """The whole SHA-256 behind `key_id_of` (64 hex digits): what a verifier pins. The
    16-digit key id names a key; it is too short to stand in for one against a forger."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(b"strongroom-audit-key\x00" + raw).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise PublicKeyError("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PublicKeyError("not an Ed25519 public key")
    return key


def signature_valid(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


class CheckpointSigner:
    """Signs checkpoints and evidence manifests with the instance's audit key.

    The key is either in this process (`local` provider: an Ed25519 private key) or
    in a PKCS#11 token (`pkcs11`: anything with `sign` and the raw public key), which
    signs without ever letting the private key out.
    """

    def __init__(self, private_key: Ed25519PrivateKey | None = None, *,
                 token_key: TokenSigningKey | None = None) -> None:
        if (private_key is None) == (token_key is None):
            raise ValueError("a signer needs exactly one key: in memory or in a token")
        self._private = private_key
        self._token_key = token_key
        if private_key is not None:
            self.public_key = private_key.public_key()
        else:
            assert token_key is not None  # nosec B101 - narrowed by the check above
            self.public_key = Ed25519PublicKey.from_public_bytes(token_key.public_raw)
        self.key_id = key_id_of(self.public_key)

    @classmethod
    def from_keyring(cls, keyring: KeyRing) -> CheckpointSigner:
        """The instance's signer; the key is made (and wrapped) on first use."""
        seed = keyring.raw_key(SYSTEM_SUBJECT, AUDIT_SIGNING_KIND)
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def in_token(cls, token: Pkcs11Token, keyring: KeyRing) -> CheckpointSigner:
        """The instance's signer in the token (pkcs11). A key ring that already holds a
        wrapped audit key (the instance began with a local KEK) has it imported into
        the token, non-extractable, on first use, so checkpoints signed before still
        verify with the same `audit-signing.pub`; otherwise the token makes the key."""
        found = TokenSigningKey.find(token)
        if found is not None:
            return cls(token_key=found)
        seed = None
        if keyring.has_key(SYSTEM_SUBJECT, AUDIT_SIGNING_KIND):
            seed = keyring.raw_key(SYSTEM_SUBJECT, AUDIT_SIGNING_KIND)
        return cls(token_key=TokenSigningKey.create(token, seed=seed))

    def sign(self, message: bytes) -> bytes:
        if self._token_key is not None:
            signature = self._token_key.sign(message)
            # A token that signed with another key than the one published would make
            # every checkpoint fail verification later; fail now instead.
            if not signature_valid(self.public_key, signature, message):
                raise InvalidSignature("the token's signature does not verify with its public key")
            return signature
        assert self._private is not None  # nosec B101 - one of the two is set
        return self._private.sign(message)

    def public_pem(self) -> bytes:
        return public_pem(self.public_key)
