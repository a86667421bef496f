"""Signed erasure certificates (R5.4): what an erasure destroyed, what it kept and why.

A certificate is a JSON document the customer can be given and an auditor can check
offline with the instance's public audit key (`audit-signing.pub`), no database and
no other key:

    {"format": "strongroom-erasure-certificate/v1",
     "certificate": {subject_id, erasure_id, keys_destroyed, keys_kept, hold_until,
                     chain_position, erased_at, issued_at, complete_in_backups_by,
                     key_id},
     "signature": base64(Ed25519 over DOMAIN || canonical JSON of "certificate")}

Canonical JSON: keys sorted, no spaces, UTF-8. The domain prefix keeps a certificate
signature from ever passing for a checkpoint's or a bundle manifest's (the same key
signs those). It holds no personal data: ids, key kinds, hold codes and times.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from infrastructure.audit.signer import CheckpointSigner, signature_valid

FORMAT = "strongroom-erasure-certificate/v1"
_DOMAIN = b"strongroom-erasure-certificate/v1\x00"


class CertificateInvalid(Exception):
    """A certificate that is malformed or whose signature does not verify."""


def _message(body: dict[str, Any]) -> bytes:
    return _DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class ErasureCertificates:
    """Signs certificates with the instance's audit key (local or in the token)."""

    def __init__(self, signer: CheckpointSigner) -> None:
        self.signer = signer

    def issue(self, body: dict[str, Any]) -> dict[str, Any]:
        signed = {**body, "key_id": self.signer.key_id}
        return {"format": FORMAT, "certificate": signed,
                "signature": base64.b64encode(self.signer.sign(_message(signed))).decode("ascii")}


def verify_certificate(document: object, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The certificate's content when `document` is one signed by `public_key`;
    CertificateInvalid otherwise (any change to any field breaks the signature)."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CertificateInvalid(f"not a {FORMAT} document")
    body, signature = document.get("certificate"), document.get("signature")
    if not isinstance(body, dict) or not isinstance(signature, str):
        raise CertificateInvalid("the certificate or its signature is missing")
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateInvalid("the signature is not base64") from None
    if not signature_valid(public_key, raw, _message(body)):
        raise CertificateInvalid("the signature does not verify with this public key: "
                                 "the certificate was changed or signed by another key")
    return body
