"""`strongroom audit verify | replay | checkpoint | export` (R3.3, R3.5, R6.3).

Exit status: 0 when the chain (or the bundle) is intact, 1 when it is not (naming
the first bad position and what is wrong), 2 on usage or configuration errors.
`verify --bundle PATH` opens no database and needs no secret: it is what an external
auditor runs on the evidence `export` wrote, pinned to the instance's published audit
key (`--public-key` or `--key-fingerprint`); without a pin it fails. `verify` over the store needs no KEK
either: when it is missing or wrong, the chain and checkpoints are checked against
the published `audit-signing.pub`.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from application.audit_trail import AuditEntry, AuditFilter
from application.context import acting_as
from application.errors import ValidationFailed
from cli.context import (
    EXIT_CHECK_FAILED,
    ISO_TIME,
    PURPOSE,
    PURPOSE_HELP,
    components,
    fail,
    load_settings,
    operator_context,
    require_store,
)
from infrastructure.audit.bundle import BundleError, export_bundle, verify_bundle
from infrastructure.audit.checkpoints import COPY_ATTEMPTS, ChainBroken, copy_name
from infrastructure.audit.verify import Report
from infrastructure.composition import (
    ConfigurationError,
    build,
    open_keyless_verification,
)
from infrastructure.crypto.kek import KekError
from infrastructure.sql import DatabaseUnavailable

SHOWN_PROBLEMS = 10


def _print_report(report: Report, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        click.echo(report.summary())
        for problem in sorted(report.problems)[:SHOWN_PROBLEMS]:
            where = f"position {problem.position}" if problem.position else "bundle"
            click.echo(f"  {where}: {problem.what}")
        if len(report.problems) > SHOWN_PROBLEMS:
            click.echo(f"  ... {len(report.problems) - SHOWN_PROBLEMS} more")
        for note in report.notes:
            click.echo(f"  note: {note}")
        missing = report.copies_missing_sentence()
        if missing is not None and not report.intact:  # else the summary says it
            click.echo(f"  also: {missing}")
    if not report.passed:
        sys.exit(EXIT_CHECK_FAILED)


@click.group("audit")
def audit_group() -> None:
    """The audit trail: verify the chain, replay who did what, export evidence."""


@audit_group.command("verify")
@click.option("--bundle", "bundle", type=click.Path(path_type=Path),
              help="Verify an evidence bundle offline (no database, no keys).")
@click.option("--public-key", "public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --bundle: the instance's audit-signing.pub to pin the bundle to.")
@click.option("--key-fingerprint", "fingerprint", envvar="STRONGROOM_AUDIT_KEY_FINGERPRINT",
              help="With --bundle: the audit key's fingerprint (64 hex digits, printed by `audit export`) "
                   "to pin the bundle to. A bundle is verified only against a pinned key.")
@click.option("--from-checkpoint", is_flag=True,
              help="Trust the latest valid checkpoint and recompute only what follows it.")
@click.option("--witness", "witness", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder of witnessed checkpoints (a copy of a backup target's checkpoints/ folder): "
                   "the store or bundle must not be behind, or differ from, any of them.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify_command(ctx: click.Context, bundle: Path | None, public_key: Path | None, fingerprint: str | None,
                   from_checkpoint: bool, witness: Path | None, as_json: bool) -> None:
    """Recompute the hash chain and check every checkpoint signature; with --witness,
    also that nothing was cut off or rewritten behind the witnessed checkpoints.

    Exit 0 when intact; 1 naming the first bad position and what is wrong.
    """
    if bundle is not None:
        pinned = public_key.read_bytes() if public_key is not None else None
        _print_report(verify_bundle(bundle, public_key_pem=pinned, fingerprint=fingerprint, witness=witness),
                      as_json)
        return
    if public_key is not None or fingerprint:
        fail("--public-key and --key-fingerprint go with --bundle")
    _print_report(_verify_store(ctx, from_checkpoint, witness), as_json)


def _verify_store(ctx: click.Context, from_checkpoint: bool, witness: Path | None) -> Report:
    """With the KEK, the full check (the published key must also be the instance's
    signing key); without it, or with a wrong one, the chain and the checkpoints
    against `audit-signing.pub` alone: tamper evidence must survive the loss of the
    key (R3.3), and an auditor given the store need not be given the KEK."""
    settings = load_settings(ctx)
    require_store(settings)
    try:
        built = build(settings)
    except KekError:
        try:
            keyless = open_keyless_verification(settings)
        except (ConfigurationError, DatabaseUnavailable, ValueError) as exc:
            fail(str(exc))
        try:
            return keyless.verify(from_checkpoint=from_checkpoint, witness=witness)
        finally:
            keyless.close()
    except (ConfigurationError, DatabaseUnavailable, ValueError) as exc:
        fail(str(exc))
    try:
        report = built.tamper_evidence.verify(from_checkpoint=from_checkpoint, witness=witness)
        if not report.intact:
            # A failure is recorded in the log, where the monitor alerts on it (R3.6); a
            # clean run stays a pure read. Without the KEK nothing can be sealed.
            with acting_as(operator_context("audit verify")):
                built.audit_trail.record_verification(intact=False, problems=len(report.problems))
        return report
    finally:
        built.close()


@audit_group.command("checkpoint")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def checkpoint_command(ctx: click.Context, as_json: bool) -> None:
    """Sign a checkpoint of the chain head now (after verifying what follows the last one),
    and copy it, and any checkpoint whose copy is still missing, to the checkpoint folder.

    Exit 1 when no checkpoint could be signed, or when a copy could not be made: the
    row stays written, and the next run (or any process's next checkpoint) retries.
    """
    with components(ctx) as built:
        try:
            run = built.tamper_evidence.checkpoint_run()
        except ChainBroken as exc:
            fail(f"no checkpoint signed: {exc}", EXIT_CHECK_FAILED)
    checkpoint, copies = run.checkpoint, run.copies
    if checkpoint is None:
        click.echo(json.dumps({"checkpoint": None}) if as_json else "the event log is empty: nothing to checkpoint")
        return
    path = copies.folder / copy_name(checkpoint.position)
    result: dict[str, Any] = {
        "checkpoint": checkpoint.as_json(),
        "signed_now": run.signed_now,
        "copied_to": str(path) if run.copied else None,
        "copies_made": list(copies.made),
        "copies_failed": None if copies.complete else {
            "folder": str(copies.folder), "error": copies.error, "attempts": COPY_ATTEMPTS,
            "positions": list(copies.failed),
        },
    }
    written = "signed now" if run.signed_now else "already the latest"
    text = (f"checkpoint at position {checkpoint.position}, head {checkpoint.head_hash.hex()}, "
            f"signed {checkpoint.signed_at.isoformat()} by key {checkpoint.key_id} ({written}); "
            "stored in the database")
    if run.copied:
        text += f"; copied to {path}"
    earlier = [p for p in copies.made if p != checkpoint.position]
    if earlier:
        text += f"; {len(earlier)} earlier checkpoint{'s' if len(earlier) != 1 else ''} copied that had no copy"
    click.echo(json.dumps(result) if as_json else text)
    if not copies.complete:
        fail(f"the copy to {copies.folder} FAILED ({copies.error}) after {COPY_ATTEMPTS} attempts: "
             f"{len(copies.failed)} checkpoint{'s' if len(copies.failed) != 1 else ''} "
             f"(position{'s' if len(copies.failed) != 1 else ''} {_positions(copies.failed)}) "
             f"{'have' if len(copies.failed) != 1 else 'has'} no second copy; run this command again once "
             "the folder is writable", EXIT_CHECK_FAILED)
    if not run.copied:
        fail(f"the copy of position {checkpoint.position} in {copies.folder} differs from the database: "
             "run `strongroom audit verify`", EXIT_CHECK_FAILED)


def _positions(positions: tuple[int, ...], shown: int = SHOWN_PROBLEMS) -> str:
    more = f", ... ({len(positions) - shown} more)" if len(positions) > shown else ""
    return ", ".join(str(p) for p in positions[:shown]) + more


# Characters that end a line or change how the rest of one is shown: controls (Cc:
# new line, carriage return, escape sequences), format characters (Cf: bidi
# overrides, zero-width joiners) and the Unicode line and paragraph separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def visible(text: str) -> str:
    """`text` with every control, format or line-separator character escaped (`\\n`,
    `\\x1b`, `\\u202e`), and backslashes doubled so an escape cannot be faked either.

    A table line is one entry: a purpose or actor id holding a new line would
    otherwise print a second, forged entry under the real one (R3.5), and an escape
    sequence or a bidi override would rewrite what the operator sees.
    """
    out = []
    for char in text:
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


def _table_line(entry: AuditEntry) -> str:
    what = entry.event if entry.kind == "change" else f"{entry.event}/{entry.outcome}"
    customers = ",".join(entry.customer_ids) or "-"
    fields = ",".join(entry.fields) or "-"
    erased = " [erased]" if entry.erased else ""
    purpose = entry.purpose or "-"
    return visible(f"{entry.position:>8}  {entry.recorded_at.strftime('%Y-%m-%dT%H:%M:%S')}Z  "
                   f"{entry.kind:<6}  {(entry.actor_id or '-'):<28}  {what:<32}  {customers}  "
                   f"fields={fields}{erased}  purpose={purpose}")


@audit_group.command("replay")
@click.option("--customer", help="Only what was done to, or seen of, this customer.")
@click.option("--actor", help="Only what this actor did or saw.")
@click.option("--since", type=ISO_TIME, help="From this time (ISO-8601; UTC if no zone).")
@click.option("--until", type=ISO_TIME, help="Up to this time (ISO-8601; UTC if no zone).")
@click.option("--kind", type=click.Choice(["change", "access"]))
@click.option("--format", "output", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The same as --format jsonl.")
@click.option("--values/--no-values", default=None,
              help="Decrypt changed values where the keys still exist (PANs at most BIN + last four): "
                   "personal data, so only with --purpose. Default: values when --purpose is given.")
@click.option("--purpose", type=PURPOSE, help=PURPOSE_HELP + " Needed to see values.")
@click.pass_context
def replay_command(ctx: click.Context, customer: str | None, actor: str | None, since: datetime | None,
                   until: datetime | None, kind: str | None, output: str, as_json: bool, values: bool | None,
                   purpose: str | None) -> None:
    """Who did what to which customer, when and why; and who saw what (R3.5).

    Without --purpose the replay shows no values: who, when, what, which customer and
    which fields, never their contents. With --purpose it decrypts them too (unless
    --no-values); --values without --purpose is refused (exit 2). Either way the replay
    is itself recorded (kind `audit_read`, with the purpose when given).
    """
    if values and purpose is None:
        fail("--values shows personal data: state why with --purpose")
    values = purpose is not None if values is None else values
    try:
        filters = AuditFilter(customer=customer, actor=actor, kind=kind, since=since, until=until)
    except ValidationFailed as exc:
        fail(str(exc))
    with components(ctx) as built, acting_as(operator_context(purpose or "audit replay")):
        entries = built.audit_trail.operator_replay(filters, with_values=values)
    if as_json or output == "jsonl":
        for entry in entries:
            click.echo(json.dumps(entry.as_json(with_values=values), default=str))
        return
    for entry in entries:
        click.echo(_table_line(entry))
        if values and entry.values is not None and entry.kind == "change":
            shown_values = entry.values if isinstance(entry.values, str) else json.dumps(entry.values, default=str)
            click.echo(f"{'':>10}values: {visible(shown_values)}")
    click.echo(f"{len(entries)} entries", err=True)


@audit_group.command("export")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="A new folder for the bundle.")
@click.option("--since", type=ISO_TIME, help="Window start (ISO-8601; UTC if no zone).")
@click.option("--until", type=ISO_TIME, help="Window end (ISO-8601; UTC if no zone).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def export_command(ctx: click.Context, out: Path, since: datetime | None, until: datetime | None,
                   as_json: bool) -> None:
    """Write a signed evidence bundle for external auditors (R6.3)."""
    context = operator_context("audit export")
    with components(ctx) as built, acting_as(context):
        try:
            result = export_bundle(built.tamper_evidence, built.app, out, since=since, until=until,
                                   created_by=context.actor_id,
                                   reports=lambda first, last: built.reports.all_reports(
                                       since, until, positions=(first, last)))
        except BundleError as exc:
            fail(str(exc))
        built.audit_trail.record_export(result.window_rows)
    if as_json:
        click.echo(json.dumps(result.as_json()))
    else:
        click.echo(f"wrote {out}: {result.window_rows} rows in the window ({result.rows} with anchors), "
                   f"{result.checkpoints} checkpoints, signed by key {result.key_id}")
        click.echo(f"an auditor checks it with: strongroom audit verify --bundle {out} "
                   f"--key-fingerprint {result.key_fingerprint}")
        click.echo("  (or --public-key with the instance's audit-signing.pub; send the fingerprint by "
                   "another channel than the bundle)")
    if not result.live_chain_intact:
        click.echo("warning: the live chain does not verify; the bundle's reports/verification.json says why",
                   err=True)
        sys.exit(EXIT_CHECK_FAILED)
