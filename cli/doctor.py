"""`strongroom doctor` (R7.1): is this instance fit to start, and in production?"""

from __future__ import annotations

import json
import stat
import sys

import click

from cli.context import EXIT_CHECK_FAILED, SETUP_ERRORS, load_settings
from infrastructure.composition import Settings, build
from infrastructure.sql import is_postgres
from infrastructure.webhooks import WebhookRefused, check_url, read_secret


def _owner_only(mode: int) -> bool:
    return not mode & (stat.S_IRWXG | stat.S_IRWXO)


def _check_instance(settings: Settings) -> list[tuple[str, bool, str]]:
    """(check, passed, detail) for everything a production start depends on."""
    checks: list[tuple[str, bool, str]] = []
    production = settings.environment == "production"
    kek = settings.kek_path
    if settings.key_provider == "local":
        if kek.exists():
            mode = kek.stat().st_mode
            checks.append(("KEK file readable by its owner only", _owner_only(mode), f"{kek} mode {oct(mode & 0o777)}"))
        else:
            checks.append(("KEK file present", False, f"no {kek}"))
        # A local KEK file is a development key: anyone with a shell as its owner (or a
        # copy of the disk) can take it and unwrap every data key elsewhere. Production
        # keeps the KEK in an HSM (key_provider=pkcs11), or says it accepts the risk.
        accepted = " (allow_local_kek: accepted on purpose)" if settings.allow_local_kek else ""
        checks.append(("production does not use a development (local file) KEK",
                       not production or settings.allow_local_kek,
                       f"key_provider={settings.key_provider}, environment={settings.environment}{accepted}"))
    cert, key = settings.tls_cert, settings.tls_key
    checks.append(("TLS certificate and key present", cert.exists() and key.exists(), f"{cert}, {key}"))
    if key.exists():
        mode = key.stat().st_mode
        checks.append(("TLS key readable by its owner only", _owner_only(mode), f"mode {oct(mode & 0o777)}"))
    if production and is_postgres(settings.database_url):
        verified = "sslmode=verify-full" in settings.database_url
        checks.append(("PostgreSQL connection verifies the server (sslmode=verify-full)", verified, "R1.6"))
    checks.extend(_check_webhooks(settings, production))
    try:
        built = build(settings, create_schema=False)
        try:
            kek_id = built.operations.key_status()["kek_id"]  # the key store answers a query too
        finally:
            built.close()
    except (*SETUP_ERRORS, ValueError) as exc:
        checks.append(("KEK unlocks the key store and the database answers", False, str(exc)))
    else:
        checks.append(("KEK unlocks the key store and the database answers", True, kek_id))
    return checks


def _check_webhooks(settings: Settings, production: bool) -> list[tuple[str, bool, str]]:
    """Issue 12 (R3.6): webhooks over https (plain http only to loopback, never in
    production; the settings refuse it too) and a usable signing secret. Details name
    receivers by scheme and host only, and never show the secret."""
    if not settings.webhook_urls:
        return []
    labels = ", ".join(check_url(url).label for url in settings.webhook_urls)
    plain = [url for url in settings.webhook_urls if not url.startswith("https://")]
    checks = [("webhooks use https" + ("" if production else " (plain http to loopback allowed outside production)"),
               not plain or not production, labels)]
    try:
        read_secret(settings.webhook_secret_file)
    except WebhookRefused as exc:
        checks.append(("webhook signing secret usable", False, str(exc)))
    else:
        source = "STRONGROOM_WEBHOOK_SECRET" if settings.webhook_secret_file is None else str(settings.webhook_secret_file)
        checks.append(("webhook signing secret usable", True, f"from {source}"))
    return checks


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def doctor_command(ctx: click.Context, as_json: bool) -> None:
    """Check the instance; refuses a production start with development keys,
    without TLS, or with a key file others can read (exit 1)."""
    checks = _check_instance(load_settings(ctx))
    if as_json:
        click.echo(json.dumps([{"check": c, "passed": ok, "detail": d} for c, ok, d in checks]))
    else:
        for check, ok, detail in checks:
            click.echo(f"{'ok  ' if ok else 'FAIL'}  {check}  ({detail})")
    if not all(ok for _, ok, _ in checks):
        sys.exit(EXIT_CHECK_FAILED)
