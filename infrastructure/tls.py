"""A self-signed TLS certificate for the embedded default (R1.6).

`strongroom init` makes one for localhost so that even a first run serves HTTPS
only; production replaces it with a certificate from the operator's CA.

It carries the extensions a CA-issued server certificate has (RFC 5280): KeyUsage
limits the key to signatures (ECDHE handshakes), ExtendedKeyUsage to TLS server
authentication, and the key identifiers let a client that pins or chains it find
the issuing key. The groups the server offers are Mozilla "intermediate"'s
(`INTERMEDIATE_GROUPS`), set on gunicorn's context by `restrict_groups`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ctypes
import os
import ssl
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Mozilla server-side TLS, "intermediate" profile (v5.7): the key-exchange groups.
# OpenSSL's defaults add X448, secp521r1 and finite-field groups, which the profile
# leaves out; a scanner (sslyze) then reports the server as not compliant.
INTERMEDIATE_GROUPS = ("X25519", "prime256v1", "secp384r1")
_SSL_CTRL_SET_GROUPS_LIST = 92  # OpenSSL's SSL_CTX_set1_groups_list is this ctrl


class TlsSetupError(RuntimeError):
    """The TLS context could not be restricted as asked; the server must not start."""


def restrict_groups(context: ssl.SSLContext, groups: tuple[str, ...] = INTERMEDIATE_GROUPS) -> None:
    """Offer only `groups` for the key exchange on `context` (TLS 1.2 and 1.3).

    Python 3.11's `ssl` can set one ECDH curve but not a list of groups, so this calls
    OpenSSL's SSL_CTX_set1_groups_list on the context's own SSL_CTX, through the very
    libssl that `_ssl` is linked against. The SSL_CTX pointer is the first field after
    the object header of CPython's PySSLContext. Fails loudly rather than serving the
    defaults.
    """
    if hasattr(context, "set_groups"):  # Python 3.15 and later say it themselves
        context.set_groups(":".join(groups))
        return
    if sys.implementation.name != "cpython":
        raise TlsSetupError("restricting the TLS groups needs CPython's ssl module")
    import _ssl

    libssl = ctypes.CDLL(_ssl.__file__)
    control = libssl.SSL_CTX_ctrl
    control.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    control.restype = ctypes.c_long
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer or control(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, ":".join(groups).encode()) != 1:
        raise TlsSetupError(f"OpenSSL refused the TLS groups {':'.join(groups)}")


def make_self_signed(cert_path: Path, key_path: Path, *, days: int = 365) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                 x509.IPAddress(ipaddress.ip_address("::1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # An ECDSA server key signs handshakes and nothing else: no certificates, no CRLs.
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False,
                          crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        # Self-issued: the authority's key is the certificate's own.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
