"""What data-subject requests need from the outside (R5.3): sealing an export.

The application builds the export's files (JSON and CSV); signing them with the audit
key and encrypting them to what the requester gave is infrastructure (STYLE 6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ExportRecipient:
    """Who can open an export: a passphrase, or a public key (PEM: X25519 or RSA),
    given at request time and never stored."""

    passphrase: str | None = None
    public_key_pem: str | None = None


class ExportSealer(Protocol):
    def seal(self, files: dict[str, bytes], recipient: ExportRecipient, *, subject_id: str) -> bytes:
        """One file: the files with a manifest signed by the audit key, encrypted to
        `recipient`. Raises ValueError for a public key it cannot use."""
