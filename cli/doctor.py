"""`strongroom doctor` (R7.1): is this instance fit to start, and in production?"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import click

from cli.context import EXIT_CHECK_FAILED, SETUP_ERRORS, load_settings
from infrastructure.composition import Settings, build
from infrastructure.software_inventory import installed, pin_mismatches, read_constraints
from infrastructure.sql import is_postgres
from infrastructure.webhooks import WebhookRefused, check_url, read_secret

# The pins the product was released with (R7.5), beside the source tree in a checkout.
CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"
PINS_CHECK = "installed packages are the pinned versions (constraints.txt)"


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


def _check_pins(constraints: Path) -> tuple[bool, str]:
    """(passed, detail): every installed package at its pinned version (PCI DSS 6.3.3):
    a package that drifted from its pin may be one without the patch the pin brought."""
    try:
        problems = pin_mismatches(read_constraints(constraints), installed())
    except (OSError, ValueError) as exc:
        return False, f"the pins cannot be read: {exc}"
    if not problems:
        return True, f"{constraints}"
    shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    return False, shown


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
@click.option("--constraints", type=click.Path(dir_okay=False, path_type=Path), default=CONSTRAINTS,
              show_default="constraints.txt beside the source", help="The pinned versions to compare with.")
@click.pass_context
def doctor_command(ctx: click.Context, as_json: bool, constraints: Path) -> None:
    """Check the instance; refuses a production start with development keys,
    without TLS, or with a key file others can read (exit 1). Installed packages
    that differ from their pins fail in production and warn in development."""
    settings = load_settings(ctx)
    checks = _check_instance(settings)
    pinned, pin_detail = _check_pins(constraints)
    # Development warns (a developer trying a newer library); production refuses.
    warning = not pinned and settings.environment != "production"
    rows = [{"check": c, "passed": ok, "detail": d} for c, ok, d in checks]
    rows.append({"check": PINS_CHECK, "passed": pinned, "detail": pin_detail,
                 **({"severity": "warning"} if warning else {})})
    if as_json:
        click.echo(json.dumps(rows))
    else:
        for row in rows:
            label = "ok  " if row["passed"] else ("WARN" if row.get("severity") == "warning" else "FAIL")
            click.echo(f"{label}  {row['check']}  ({row['detail']})")
    if not all(row["passed"] or row.get("severity") == "warning" for row in rows):
        sys.exit(EXIT_CHECK_FAILED)
