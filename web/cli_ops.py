"""Operator commands: `strongroom doctor` (R7.1) and `compliance inventory` (R5.1)."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import click

from domain.catalogue import FIELDS
from infrastructure.composition import ConfigurationError, Settings, build
from infrastructure.crypto.kek import KekError
from infrastructure.sql import DatabaseUnavailable, is_postgres


def _check_instance(settings: Settings) -> list[tuple[str, bool, str]]:
    """(check, passed, detail) for everything a production start depends on."""
    checks: list[tuple[str, bool, str]] = []
    production = settings.environment == "production"
    kek = settings.kek_path
    if settings.key_provider == "local":
        if kek.exists():
            mode = kek.stat().st_mode
            private = not mode & (stat.S_IRWXG | stat.S_IRWXO)
            checks.append(("KEK file readable by its owner only", private, f"{kek} mode {oct(mode & 0o777)}"))
        else:
            checks.append(("KEK file present", False, f"no {kek}"))
        # A local KEK file is a development key: production keeps the KEK in an HSM.
        checks.append(("production does not use a development (local file) KEK", not production,
                       f"key_provider={settings.key_provider}, environment={settings.environment}"))
    cert = Path(settings.extra.get("tls_cert") or settings.instance / "tls" / "cert.pem")
    key = Path(settings.extra.get("tls_key") or settings.instance / "tls" / "key.pem")
    checks.append(("TLS certificate and key present", cert.exists() and key.exists(), f"{cert}, {key}"))
    if key.exists():
        mode = key.stat().st_mode
        checks.append(("TLS key readable by its owner only", not mode & (stat.S_IRWXG | stat.S_IRWXO),
                       f"mode {oct(mode & 0o777)}"))
    if production and is_postgres(settings.database_url):
        verified = "sslmode=verify-full" in settings.database_url
        checks.append(("PostgreSQL connection verifies the server (sslmode=verify-full)", verified, "R1.6"))
    try:
        built = build(settings, create_schema=False)
    except (KekError, ConfigurationError, DatabaseUnavailable, ValueError) as exc:
        checks.append(("KEK unlocks the key store and the database answers", False, str(exc)))
    else:
        built.close()
        checks.append(("KEK unlocks the key store and the database answers", True, built.keyring.kek.kek_id))
    return checks


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def doctor_command(ctx: click.Context, as_json: bool) -> None:
    """Check the instance; refuses a production start with development keys,
    without TLS, or with a key file others can read (exit 1)."""
    try:
        settings = Settings.load(ctx.obj.get("instance"))
    except ConfigurationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    checks = _check_instance(settings)
    if as_json:
        click.echo(json.dumps([{"check": c, "passed": ok, "detail": d} for c, ok, d in checks]))
    else:
        for check, ok, detail in checks:
            click.echo(f"{'ok  ' if ok else 'FAIL'}  {check}  ({detail})")
    if not all(ok for _, ok, _ in checks):
        sys.exit(1)


@click.group("compliance")
def compliance_group() -> None:
    """Privacy and compliance records."""


@compliance_group.command("inventory")
@click.option("--json", "as_json", is_flag=True)
def inventory_command(as_json: bool) -> None:
    """The record of processing activities (GDPR Art. 30) from the field catalogue."""
    rows = [
        {"field": f.name, "classification": str(f.classification), "purpose": f.purpose,
         "legal_basis": f.legal_basis, "retention": f.retention, "key": str(f.key),
         "blind_index": f.searchable}
        for f in FIELDS
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Record of processing activities (GDPR Art. 30)")
    for column in ("field", "classification", "purpose", "legal basis", "retention", "key"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["field"], row["classification"], row["purpose"], row["legal_basis"],
                      row["retention"], row["key"])
    Console(width=200).print(table)
