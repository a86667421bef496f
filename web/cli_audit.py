"""`strongroom audit verify | replay | checkpoint | export` (R3.3, R3.5, R6.3).

Exit status: 0 when the chain (or the bundle) is intact, 1 when it is not (naming
the first bad position and what is wrong), 2 on usage or configuration errors.
`verify --bundle PATH` opens no database and needs no key: it is what an external
auditor runs on the evidence `export` wrote.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from application.audit_trail import AuditEntry, AuditFilter, AuditTrail
from application.context import acting_as
from application.errors import ValidationFailed
from infrastructure.audit.bundle import BundleError, export_bundle, verify_bundle
from infrastructure.audit.checkpoints import ChainBroken
from infrastructure.audit.verify import Report

EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
SHOWN_PROBLEMS = 10


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{option} must be an ISO-8601 time, e.g. 2026-11-29T12:00:00+00:00")
        raise
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


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
    if not report.intact:
        sys.exit(EXIT_CHECK_FAILED)


@click.group("audit")
def audit_group() -> None:
    """The audit trail: verify the chain, replay who did what, export evidence."""


@audit_group.command("verify")
@click.option("--bundle", "bundle", type=click.Path(path_type=Path),
              help="Verify an evidence bundle offline (no database, no keys).")
@click.option("--public-key", "public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --bundle: the instance's audit-signing.pub to pin the bundle to.")
@click.option("--from-checkpoint", is_flag=True,
              help="Trust the latest valid checkpoint and recompute only what follows it.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify_command(ctx: click.Context, bundle: Path | None, public_key: Path | None,
                   from_checkpoint: bool, as_json: bool) -> None:
    """Recompute the hash chain and check every checkpoint signature.

    Exit 0 when intact; 1 naming the first bad position and what is wrong.
    """
    if bundle is not None:
        pinned = public_key.read_bytes() if public_key is not None else None
        _print_report(verify_bundle(bundle, public_key_pem=pinned), as_json)
        return
    if public_key is not None:
        _fail("--public-key goes with --bundle")
    from web.cli import components

    with components(ctx) as built:
        report = built.audit.verify(from_checkpoint=from_checkpoint)
    _print_report(report, as_json)


@audit_group.command("checkpoint")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def checkpoint_command(ctx: click.Context, as_json: bool) -> None:
    """Sign a checkpoint of the chain head now (after verifying what follows the last one)."""
    from web.cli import components

    with components(ctx) as built:
        try:
            checkpoint = built.audit.checkpoint()
        except ChainBroken as exc:
            _fail(f"no checkpoint signed: {exc}", EXIT_CHECK_FAILED)
            raise
        folder = built.audit.store.folder
    if checkpoint is None:
        result: dict[str, Any] = {"checkpoint": None}
        text = "the event log is empty: nothing to checkpoint"
    else:
        result = {"checkpoint": checkpoint.as_json(), "copied_to": str(folder)}
        text = (f"checkpoint at position {checkpoint.position}, head {checkpoint.head_hash.hex()}, "
                f"signed {checkpoint.signed_at.isoformat()} by key {checkpoint.key_id}; copied to {folder}")
    click.echo(json.dumps(result) if as_json else text)


def _table_line(entry: AuditEntry) -> str:
    what = entry.event if entry.kind == "change" else f"{entry.event}/{entry.outcome}"
    customers = ",".join(entry.customer_ids) or "-"
    fields = ",".join(entry.fields) or "-"
    erased = " [erased]" if entry.erased else ""
    purpose = entry.purpose or "-"
    return (f"{entry.position:>8}  {entry.recorded_at.strftime('%Y-%m-%dT%H:%M:%S')}Z  "
            f"{entry.kind:<6}  {(entry.actor_id or '-'):<28}  {what:<32}  {customers}  "
            f"fields={fields}{erased}  purpose={purpose}")


@audit_group.command("replay")
@click.option("--customer", help="Only what was done to, or seen of, this customer.")
@click.option("--actor", help="Only what this actor did or saw.")
@click.option("--since", help="From this time (ISO-8601; UTC if no zone).")
@click.option("--until", help="Up to this time (ISO-8601; UTC if no zone).")
@click.option("--kind", type=click.Choice(["change", "access"]))
@click.option("--format", "output", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The same as --format jsonl.")
@click.option("--values/--no-values", default=True, show_default=True,
              help="Decrypt changed values where the keys still exist (PANs at most BIN + last four).")
@click.pass_context
def replay_command(ctx: click.Context, customer: str | None, actor: str | None, since: str | None,
                   until: str | None, kind: str | None, output: str, as_json: bool, values: bool) -> None:
    """Who did what to which customer, when and why; and who saw what (R3.5)."""
    from web.cli import components, operator_context

    try:
        filters = AuditFilter(customer=customer, actor=actor, kind=kind,
                              since=_time(since, "--since"), until=_time(until, "--until"))
    except ValidationFailed as exc:
        _fail(str(exc))
        raise
    with components(ctx) as built, acting_as(operator_context("audit replay")):
        entries = list(AuditTrail(built.app, built.audit).replay(filters, with_values=values))
        shown = sorted({c for e in entries if e.values not in (None, "erased") for c in e.customer_ids})
        # Reading the trail is itself recorded (PCI DSS 10.2.1.3), before anything is shown.
        built.app.access_log.record(
            kind="audit_read", customer_ids=shown,
            details={"operation": "audit:replay", "entries": str(len(entries)),
                     "values": str(values).lower(),
                     **{k: v for k, v in (("customer", customer), ("actor", actor), ("kind", kind)) if v}},
        )
    if as_json or output == "jsonl":
        for entry in entries:
            click.echo(json.dumps(entry.as_json(with_values=values), default=str))
        return
    for entry in entries:
        click.echo(_table_line(entry))
        if values and entry.values is not None and entry.kind == "change":
            shown_values = entry.values if isinstance(entry.values, str) else json.dumps(entry.values, default=str)
            click.echo(f"{'':>10}values: {shown_values}")
    click.echo(f"{len(entries)} entries", err=True)


@audit_group.command("export")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="A new folder for the bundle.")
@click.option("--since", help="Window start (ISO-8601; UTC if no zone).")
@click.option("--until", help="Window end (ISO-8601; UTC if no zone).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def export_command(ctx: click.Context, out: Path, since: str | None, until: str | None, as_json: bool) -> None:
    """Write a signed evidence bundle for external auditors (R6.3)."""
    from web.cli import components, operator_context

    start, end = _time(since, "--since"), _time(until, "--until")
    context = operator_context("audit export")
    with components(ctx) as built, acting_as(context):
        try:
            result = export_bundle(built.audit, built.app, out, since=start, until=end,
                                   created_by=context.actor_id)
        except BundleError as exc:
            _fail(str(exc))
            raise
        built.app.access_log.record(
            kind="audit_read", details={"operation": "audit:export", "rows": str(result.window_rows)},
        )
    if as_json:
        click.echo(json.dumps(result.as_json()))
    else:
        click.echo(f"wrote {out}: {result.window_rows} rows in the window ({result.rows} with anchors), "
                   f"{result.checkpoints} checkpoints, signed by key {result.key_id}")
        click.echo(f"an auditor checks it with: strongroom audit verify --bundle {out} "
                   "--public-key <the instance's audit-signing.pub>")
    if not result.live_chain_intact:
        click.echo("warning: the live chain does not verify; the bundle's reports/verification.json says why",
                   err=True)
        sys.exit(EXIT_CHECK_FAILED)


# -- db roles (PostgreSQL, R3.4) ------------------------------------------------------------


@click.group("db")
def db_group() -> None:
    """Database set-up for operators (PostgreSQL)."""


@db_group.command("roles")
@click.option("--app-role", required=True, help="The role the application connects as (made if absent).")
@click.option("--no-create", is_flag=True, help="Fail rather than create the role when it does not exist.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def roles_command(ctx: click.Context, app_role: str, no_create: bool, as_json: bool) -> None:
    """Grant the application role what it needs and no more (run as the schema owner).

    Creates the schema first (as the connecting role, which becomes its owner),
    then grants the application role SELECT on the event tables and EXECUTE on
    their insert functions (no INSERT, UPDATE, DELETE or TRUNCATE), SELECT and
    INSERT on checkpoints, and read-write access to every other table. Run the
    application with STRONGROOM_DATABASE_URL naming the application role and
    STRONGROOM_CREATE_SCHEMA=false.
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    import psycopg

    from infrastructure.audit.roles import RolesError, grant_application_role
    from infrastructure.composition import KEYS_SCHEMA, ConfigurationError, Settings
    from infrastructure.sql import is_postgres
    from web.cli import components

    try:
        settings = Settings.load(ctx.obj.get("instance"))
    except ConfigurationError as exc:
        _fail(str(exc))
        raise
    if not is_postgres(settings.database_url):
        _fail("database roles are for PostgreSQL; SQLite's triggers need no roles")
    with components(ctx):
        pass  # creates (or upgrades) the schema as the owner
    parts = urlsplit(settings.database_url)
    query = dict(parse_qsl(parts.query))
    schemas = ["public", KEYS_SCHEMA, *([query.pop("schema")] if "schema" in query else [])]
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    try:
        with psycopg.connect(conninfo, connect_timeout=5) as conn:
            grants = grant_application_role(conn, app_role, schemas=schemas, create=not no_create)
    except RolesError as exc:
        _fail(str(exc))
        raise
    except psycopg.Error as exc:
        _fail(f"the grants could not be applied ({type(exc).__name__}); connect as the schema owner")
        raise
    if as_json:
        click.echo(json.dumps({"role": app_role, "created": grants.created,
                               "event_tables": grants.event_tables, "statements": grants.statements}))
        return
    click.echo(f"{'created' if grants.created else 'updated'} role {app_role}: append-only on "
               f"{', '.join(grants.event_tables) or 'no event tables yet'}")
    if grants.created:
        click.echo(f"set its password: ALTER ROLE \"{app_role}\" PASSWORD '...';")
