"""`strongroom keys status | rotate-kek | sweep-orphans`: the KEK in use and the data
keys by state (R1.4, R5.4), moving the KEK into a PKCS#11 token, and the removal of
keys whose subject's events never committed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from application.operations import OrphanSweepRefused
from cli.context import EXIT_CHECK_FAILED, SETUP_ERRORS, components, fail, load_settings
from infrastructure.crypto.keystore import KeyRotationRaced
from infrastructure.crypto.pkcs11_token import PIN_ENV, TokenConfig, read_pin
from infrastructure.kek_rotation import rotate_kek_into_token, token_settings

NEW_PIN_ENV = "STRONGROOM_NEW_PKCS11_PIN"


@contextmanager
def _pin_for_this_process(pin: str) -> Iterator[None]:
    """The target token's PIN where the instance's settings look for it, for the
    check that the rotated instance opens; restored after."""
    before = os.environ.get(PIN_ENV)
    os.environ[PIN_ENV] = pin
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PIN_ENV, None)
        else:
            os.environ[PIN_ENV] = before


@click.group("keys")
def keys_group() -> None:
    """The KEK and the data keys."""


@keys_group.command("status")
@click.option("--customer", help="Show one customer's keys.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_status(ctx: click.Context, customer: str | None, as_json: bool) -> None:
    """Which KEK is in use and how many data keys are active or destroyed."""
    with components(ctx) as built:
        status: dict[str, Any] = {"key_provider": built.settings.key_provider,
                                  **built.operations.key_status(customer)}
        if built.settings.key_provider == "pkcs11":
            status["token"] = built.settings.pkcs11_token_label
    if as_json:
        click.echo(json.dumps(status))
    else:
        for key, value in status.items():
            click.echo(f"{key}: {value}")


@keys_group.command("sweep-orphans")
@click.option("--grace-hours", default=24.0, show_default=True, type=click.FloatRange(min=0),
              help="Leave keys younger than this: their subject's first events may still be committing.")
@click.option("--dry-run", is_flag=True, help="List the orphaned keys without removing them.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_sweep_orphans(ctx: click.Context, grace_hours: float, dry_run: bool, as_json: bool) -> None:
    """Remove the keys of subjects whose events never committed (a write killed between
    making its keys and committing its events); each enters the erasure ledger."""
    with components(ctx) as built:
        try:
            sweep = built.operations.sweep_orphan_keys(timedelta(hours=grace_hours), dry_run=dry_run)
        except OrphanSweepRefused as exc:
            fail(str(exc), EXIT_CHECK_FAILED)
    if as_json:
        click.echo(json.dumps({"examined": sweep.examined, "removed": sweep.removed,
                               "orphans": [{"subject_id": s, "kinds": k} for s, k in sweep.orphans.items()]}))
        return
    verb = "removed" if sweep.removed else "would remove"
    click.echo(f"{verb} the keys of {len(sweep.orphans)} subject(s) with no events "
               f"(of {sweep.examined} older than {grace_hours:g} h)")
    for subject, kinds in sweep.orphans.items():
        click.echo(f"  {subject}: {', '.join(kinds)}")


@keys_group.command("rotate-kek")
@click.option("--to", "provider", type=click.Choice(["pkcs11"]), required=True,
              help="Where the new KEK lives: a PKCS#11 token (made there, non-extractable).")
@click.option("--module", help="The PKCS#11 module (default: the pkcs11_module setting).")
@click.option("--token-label", help="The target token (default: the pkcs11_token_label setting).")
@click.option("--kek-label", help="The KEK's label in the token (default: the pkcs11_kek_label setting).")
@click.option("--signing-key-label", help="The audit key's label (default: pkcs11_signing_key_label).")
@click.option("--pin-file", type=click.Path(path_type=Path, dir_okay=False),
              help=f"A file (mode 0600) with the target token's PIN; or set {NEW_PIN_ENV}.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_rotate_kek(ctx: click.Context, provider: str, module: str | None, token_label: str | None,
                    kek_label: str | None, signing_key_label: str | None, pin_file: Path | None,
                    as_json: bool) -> None:
    """Re-wrap every data key under a KEK inside a PKCS#11 token (from the local KEK
    file, or from another token) and point the instance at it. Stop servers and
    workers first. Killed part-way, run it again: it finishes. Events are untouched.

    The target's PIN comes from STRONGROOM_NEW_PKCS11_PIN or --pin-file (else the
    instance's own STRONGROOM_PKCS11_PIN or pkcs11_pin_file), never from an argument."""
    settings = load_settings(ctx)
    try:
        # A PIN typed as an argument would be readable by every local user (ps).
        pin = os.environ.get(NEW_PIN_ENV) or read_pin(pin_file or settings.pkcs11_pin_file)
        target = TokenConfig(
            module=module or settings.pkcs11_module, token_label=token_label or settings.pkcs11_token_label,
            kek_label=kek_label or settings.pkcs11_kek_label,
            signing_key_label=signing_key_label or settings.pkcs11_signing_key_label, pin=pin)
        rotation = rotate_kek_into_token(
            settings, target, {"pkcs11_pin_file": str(pin_file.resolve())} if pin_file else None)
    except KeyRotationRaced as exc:
        fail(str(exc))
    except SETUP_ERRORS as exc:
        fail(f"{exc}; nothing was changed")
    # The new settings must open the instance: this also moves the audit key into the
    # token (infrastructure/audit/signer.py) and proves the next start will work.
    written = token_settings(target)
    overridden = [name for name, value in written.items()
                  if os.environ.get(f"STRONGROOM_{name.upper()}") not in (None, str(value))]
    with _pin_for_this_process(pin), components(ctx) as built:
        status = {"key_provider": built.settings.key_provider, "kek_id": built.keyring.kek_id(),
                  "rewrapped": rotation.rewrapped, "resumed": rotation.resumed,
                  "audit_key_id": built.tamper_evidence.signer.key_id}
    if as_json:
        click.echo(json.dumps(status))
    else:
        done = "finished an earlier run" if rotation.resumed else f"re-wrapped {rotation.rewrapped} data key(s)"
        click.echo(f"{done}; the KEK is now {rotation.new_kek_id} in token {target.token_label!r}")
        if settings.key_provider == "local":
            click.echo(f"move {settings.kek_path} offline: backups made before now need it, "
                       "this instance no longer does")
    if overridden:
        click.echo(f"warning: STRONGROOM_* variables override the new settings: {', '.join(overridden)}", err=True)
