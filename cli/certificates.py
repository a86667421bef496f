"""`strongroom audit verify-certificate FILE --public-key PEM` (R5.4).

Checks an erasure certificate offline, as an auditor or the customer would: no
database, no instance, no key but the instance's public audit key. Exit 0 and the
certificate's statements when it verifies; 1 when it was changed or signed by
another key; 2 when the files cannot be read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cli.context import EXIT_CHECK_FAILED, fail
from infrastructure.audit.erasure_certificate import CertificateInvalid, verify_certificate
from infrastructure.audit.signer import PublicKeyError, load_public_key


@click.command("verify-certificate")
@click.argument("certificate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--public-key", "public_key", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The instance's audit-signing.pub (PEM), obtained from the instance, not from the certificate.")
@click.option("--json", "as_json", is_flag=True)
def verify_certificate_command(certificate: Path, public_key: Path, as_json: bool) -> None:
    """Verify a signed erasure certificate offline (no database, no keys)."""
    try:
        key = load_public_key(public_key.read_bytes())
    except PublicKeyError as exc:
        fail(f"{public_key}: {exc}")
    try:
        document = json.loads(certificate.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        click.echo(f"INVALID: {certificate} is not JSON", err=True)
        sys.exit(EXIT_CHECK_FAILED)
    try:
        body = verify_certificate(document, key)
    except CertificateInvalid as exc:
        if as_json:
            click.echo(json.dumps({"valid": False, "problem": str(exc)}))
        else:
            click.echo(f"INVALID: {exc}")
        sys.exit(EXIT_CHECK_FAILED)
    if as_json:
        click.echo(json.dumps({"valid": True, "certificate": body}))
        return
    click.echo(f"valid: erasure of subject {body.get('subject_id')} at {body.get('erased_at')}, "
               f"chain position {body.get('chain_position')}")
    click.echo(f"  keys destroyed: {', '.join(body.get('keys_destroyed') or [])}")
    for kind, kept in (body.get("keys_kept") or {}).items():
        click.echo(f"  {kind} key kept ({', '.join(kept.get('holds') or [])}) until {kept.get('until')}")
    click.echo(f"  complete in backups by: {body.get('complete_in_backups_by')}")
