"""`strongroom keys status | sweep-orphans`: the KEK in use and the data keys by state
(R1.4, R5.4), and the removal of keys whose subject's events never committed."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import click

from application.operations import OrphanSweepRefused
from cli.context import EXIT_CHECK_FAILED, components, fail


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
