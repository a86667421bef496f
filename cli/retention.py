"""`strongroom retention run [--dry-run] [--json] [--now TIME]` (R5.5).

Destroys the keys whose retention has ended (application/retention_run.py), one line
per customer as it goes (ids and key kinds only), each step recorded in the chained
log as the operator's; then expires the key backups older than
`key_backup_retention_days` (their generation keys destroyed, their copies pruned on
every target, infrastructure/backup/generations.py). Safe to run twice or to stop
half-way: run it again.

`--now` runs as of another time, for rehearsals and tests; a production instance
refuses it, since a clock moved forward destroys keys before their time.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from typing import Any

import click

from application.context import acting_as
from application.retention_run import RetentionAction
from cli.context import EXIT_CHECK_FAILED, ISO_TIME, components, fail, operator_context
from infrastructure.backup.generations import expire_key_backups
from infrastructure.backup.targets import TargetError, targets_from_config


@click.group("retention")
def retention_group() -> None:
    """Destroy the keys whose retention has ended (R5.5)."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Say what is due; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, then a summary.")
@click.option("--now", "now", type=ISO_TIME, default=None,
              help="Run as of this time instead of the clock (refused in production).")
@click.pass_context
def run_command(ctx: click.Context, dry_run: bool, as_json: bool, now: datetime | None) -> None:
    """Erase customers whose profile retention ended; destroy KYC keys whose hold ended."""
    with components(ctx) as built:
        if now is not None and built.settings.environment == "production":
            fail("--now is refused in production: a clock moved forward would destroy keys early")

        def say(action: RetentionAction) -> None:
            if as_json:
                click.echo(json.dumps({**action.to_record(), "dry_run": dry_run}))
            else:
                verb = "would " if dry_run else ""
                kept = f" (KYC kept until {action.hold_until})" if action.hold_until else ""
                click.echo(f"{verb}{action.action} {action.customer_id}: {', '.join(action.keys)}{kept}")

        with acting_as(operator_context("retention run (R5.5)")):
            done = built.retention.run(dry_run=dry_run, now=now, progress=say)
            backups: dict[str, Any] = {}
            if not dry_run:
                # Expired key backups: their generation keys destroyed, their copies pruned.
                try:
                    targets = targets_from_config(built.settings.instance, built.settings.backup_targets)
                except TargetError as exc:
                    fail(str(exc))
                try:
                    backups = expire_key_backups(built.keyring, targets,
                                                 timedelta(days=built.settings.key_backup_retention_days),
                                                 now or built.identity.now())
                finally:
                    for target in targets:
                        target.close()
    summary = {"dry_run": dry_run, "customers": len(done),
               "keys": sum(len(a.keys) for a in done), "key_backups": backups}
    click.echo(json.dumps({"summary": summary}) if as_json else
               f"{'dry run: ' if dry_run else ''}{summary['customers']} customer(s), {summary['keys']} key(s); "
               f"key backup generations expired: {len(backups.get('generations_expired', []))}, "
               f"pruned: {sum(len(v) for v in backups.get('pruned', {}).values())}"
               + (f", targets not reached: {', '.join(backups['failed'])}" if backups.get("failed") else ""))
    if backups.get("failed"):
        sys.exit(EXIT_CHECK_FAILED)
