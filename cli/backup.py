"""`strongroom backup create | list | status | verify | drill` and `strongroom restore`
(R4.1-R4.4).

Exit status as everywhere: 0 success, 1 a check failed (a backup that could not be
written, a verify or drill that found a problem), 2 usage or configuration errors
(an unknown target, a restore that would write into the live store).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from application.context import acting_as
from application.restore import RecoveryRecords
from cli.context import EXIT_CHECK_FAILED, ISO_TIME, components, fail, operator_context
from infrastructure.backup.create import create_backup
from infrastructure.backup.drill import run_drill
from infrastructure.backup.generations import expire_key_backups
from infrastructure.backup.manifest import BackupCorrupt, ManifestSigner
from infrastructure.backup.restore import RestoreRefused, restore_backup
from infrastructure.backup.targets import Target, TargetError, targets_from_config
from infrastructure.backup.verify import list_backups, verify_target
from infrastructure.composition import Components
from infrastructure.partitioned_rebuild import RebuildInterrupted
from infrastructure.sql import DatabaseUnavailable

BACKUP_ERRORS = (TargetError, BackupCorrupt, OSError, DatabaseUnavailable, LookupError)


@contextmanager
def _targets(built: Components, name: str | None) -> Iterator[list[Target]]:
    try:
        targets = targets_from_config(built.settings.instance, built.settings.backup_targets)
    except TargetError as exc:
        fail(str(exc))
    if name is not None:
        targets = [t for t in targets if t.name == name]
        if not targets:
            fail(f"no backup target named {name!r} in the instance configuration")
    try:
        yield targets
    finally:
        for target in targets:
            target.close()


def _emit(as_json: bool, document: Any, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(document, default=str))
    else:
        for line in lines:
            click.echo(line)


@click.group("backup")
def backup_group() -> None:
    """Backups of the event store and, apart, the key store (R4.1-R4.3)."""


@backup_group.command("create")
@click.option("--target", "target_name", help="Only this configured target.")
@click.option("--wait", "wait", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds to wait for another run's lock on a target before giving up on it.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def backup_create(ctx: click.Context, target_name: str | None, wait: float, as_json: bool) -> None:
    """Write an incremental backup to every configured target (manifest last), one run per target at a time."""
    results, failed = [], False
    with components(ctx) as built, acting_as(operator_context("backup")), _targets(built, target_name) as targets:
        signer = ManifestSigner(built.keyring)
        # Expired key backups go first (issue 13): destroyed generation keys, pruned copies.
        expire_key_backups(built.keyring, targets, timedelta(days=built.settings.key_backup_retention_days),
                           built.identity.now())
        for target in targets:
            try:
                result = create_backup(built, target, signer=signer, wait=wait)
            except BACKUP_ERRORS as exc:
                failed = True
                results.append({"target": target.name, "ok": False, "error": str(exc)})
                continue
            RecoveryRecords(built.app).record_backup(target.name, result.backup_id, result.last_position)
            results.append({"ok": True, **vars(result)})
    lines = []
    for r in results:
        if not r["ok"]:
            lines.append(f"{r['target']}: FAILED: {r['error']}")
            continue
        lines.extend(f"{r['target']}: {note}" for note in r["stale_locks_broken"])
        lines.append(f"{r['target']}: backup {r['backup_id']} positions {r['after_position'] + 1}..{r['last_position']}"
                     f" ({r['rows']} rows, {r['segments']} segments, {r['seconds']:.2f}s);"
                     f" {r['checkpoints_witnessed']} new checkpoints in its checkpoints/ folder")
    _emit(as_json, {"backups": results}, lines)
    if failed:
        sys.exit(EXIT_CHECK_FAILED)


@backup_group.command("list")
@click.option("--target", "target_name", help="Only this configured target.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def backup_list(ctx: click.Context, target_name: str | None, as_json: bool) -> None:
    """Complete backups per target, and when the last backup and drill ran."""
    with components(ctx) as built, _targets(built, target_name) as targets:
        signer = ManifestSigner(built.keyring)
        status = RecoveryRecords(built.app).status()
        reports = []
        for target in targets:
            try:
                reports.append({**list_backups(target, signer).as_json(), "where": target.describe()})
            except BACKUP_ERRORS as exc:
                reports.append({"target": target.name, "ok": False, "backups": [], "problems": [{"file": "", "problem": str(exc)}]})
    lines = []
    for report in reports:
        lines.append(f"{report['target']} ({report.get('where', '')}):")
        lines.extend(f"  {b['backup_id']}  positions {b['after_position'] + 1}..{b['last_position']}"
                     f"  {b['rows']} rows  {b['segments']} segments" for b in report["backups"])
        lines.extend(f"  problem: {p['file']}: {p['problem']}" for p in report["problems"])
    good = status.get("last_good_drill")
    lines.append(f"last good drill: {good['at'] if good else 'never'}")
    _emit(as_json, {"targets": reports, "status": status}, lines)


@backup_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def backup_status(ctx: click.Context, as_json: bool) -> None:
    """When the last backup reached each target, and the last (good) drill."""
    with components(ctx) as built:
        status = RecoveryRecords(built.app).status()
    lines = [f"last backup to {name}: {entry['at']} (position {entry['position']})"
             for name, entry in status["last_backups"].items()] or ["no backup recorded"]
    for key in ("last_drill", "last_good_drill"):
        drill = status[key]
        lines.append(f"{key.replace('_', ' ')}: " + (
            f"{drill['at']} {drill['outcome']} (RPO {drill['rpo_seconds']}s, RTO {drill['rto_seconds']}s)"
            if drill else "never"))
    _emit(as_json, status, lines)


@backup_group.command("verify")
@click.option("--target", "target_name", help="Only this configured target.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def backup_verify(ctx: click.Context, target_name: str | None, as_json: bool) -> None:
    """Check every segment hash, the chain across increments and the signatures."""
    with components(ctx) as built, _targets(built, target_name) as targets:
        signer = ManifestSigner(built.keyring)
        recorded = RecoveryRecords(built.app).status()["last_backups"]
        reports = []
        for target in targets:
            last = recorded.get(target.name, {}).get("backup_id")
            try:
                reports.append(verify_target(target, signer, last_recorded=last).as_json())
            except BACKUP_ERRORS as exc:
                reports.append({"target": target.name, "ok": False, "backups": [],
                                "problems": [{"file": target.describe(), "problem": str(exc)}]})
    lines = []
    for report in reports:
        state = "ok" if report["ok"] else "FAILED"
        lines.append(f"{report['target']}: {state} ({len(report['backups'])} backups)")
        lines.extend(f"  {p['file']}: {p['problem']}" for p in report["problems"])
    _emit(as_json, {"targets": reports}, lines)
    if not all(r["ok"] for r in reports):
        sys.exit(EXIT_CHECK_FAILED)


@backup_group.command("drill")
@click.option("--target", "target_name", help="Drill this target (default: the first configured).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes rebuilding the read models (default: the number of cores).")
@click.pass_context
def backup_drill(ctx: click.Context, target_name: str | None, as_json: bool, jobs: int | None) -> None:
    """Restore the newest backup into a scratch store, compare, record RPO/RTO (R4.3)."""
    with components(ctx) as built, acting_as(operator_context("restore drill")), \
            _targets(built, target_name) as targets:
        try:
            result = run_drill(built, targets[0], jobs=jobs)
        except BACKUP_ERRORS as exc:
            fail(f"drill could not run: {exc}", EXIT_CHECK_FAILED)
    _emit(as_json, result.as_json(), [
        f"drill of {result.target}: {result.outcome}",
        f"  backup {result.backup_id or '-'} up to position {result.position}",
        f"  RPO {result.rpo_seconds:.1f}s (age of the newest backed-up event)",
        f"  RTO {result.rto_seconds:.2f}s (to a verified, usable restored store)",
        f"  compared with: {result.reference or '-'}",
        *(f"  failure: {f}" for f in result.failures),
    ])
    if result.failures:
        sys.exit(EXIT_CHECK_FAILED)


@click.command("restore")
@click.option("--from", "source", required=True, help="Configured backup target to restore from.")
@click.option("--to", "when", type=ISO_TIME,
              help="Restore the events recorded up to this time (ISO-8601; UTC if no zone).")
@click.option("--position", type=click.IntRange(min=0), help="Restore the events up to this log position.")
@click.option("--into", "into_url", required=True, help="DATABASE_URL of a new, empty store.")
@click.option("--keys-into", "keys_into_url",
              help="Where the restored keys go (default: beside the restored events).")
@click.option("--checkpoints-into", "checkpoint_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The restored instance's checkpoint folder: the restored checkpoints are copied there too.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes rebuilding the read models (default: the number of cores).")
@click.pass_context
def restore_command(ctx: click.Context, source: str, when: datetime | None, position: int | None, into_url: str,
            keys_into_url: str | None, checkpoint_dir: Path | None, as_json: bool, jobs: int | None) -> None:
    """Build a new store holding exactly the events up to a point, with read models (R4.4)."""
    from rich.progress import Progress

    if (when is None) == (position is None):
        fail("give exactly one of --to TIME or --position N")
    with components(ctx) as built, _targets(built, source) as targets, \
            Progress(transient=True, disable=as_json) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, advance: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.advance(tasks[phase], advance)

        try:
            result = restore_backup(live=built, target=targets[0], into_url=into_url, keys_into_url=keys_into_url,
                                    position=position, to_time=when, progress=progress,
                                    checkpoint_dir=checkpoint_dir, jobs=jobs)
        except RestoreRefused as exc:
            fail(str(exc))
        except ValueError as exc:  # an unusable --into URL
            fail(str(exc))
        except BACKUP_ERRORS as exc:
            fail(f"restore failed: {exc}", EXIT_CHECK_FAILED)
        except RebuildInterrupted as exc:  # a read-model worker died: the rerun starts over
            fail(f"restore failed: {exc}", EXIT_CHECK_FAILED)
    _emit(as_json, result.as_json(), [
        f"restored {result.rows} events up to position {result.position}"
        f" (recorded {result.last_recorded_at or '-'}) in {result.seconds:.2f}s",
        f"  keys: {result.keys.restored} restored, {result.keys.withheld} kept destroyed by the erasure ledger",
        f"  read models rebuilt from {result.read_model_events} events; hash chain: {result.chain}",
        f"  signed checkpoints: {result.checkpoints} verified and restored" if result.checkpoints is not None
        else "  signed checkpoints: none in this backup (made before they were backed up); the chain alone is checked",
        *(["  started over: the tables a killed restore into this destination had made were dropped first"]
          if result.started_over else []),
        *(f"  problem: {p}" for p in result.problems),
    ])
    if result.problems:
        sys.exit(EXIT_CHECK_FAILED)
