"""`strongroom requests …` (R5.3, R5.6) and `strongroom consents …` (R5.2).

The command line is the data-protection officer's desk: whoever runs it acts in the
`dpo` role, recorded as operator:<user>@<host> (they hold the KEK, so the role widens
nothing they could not read anyway), through the same use cases and policy as the API.
Passphrases are read from a file or typed at a hidden prompt, never taken as an
argument (a command line is visible to every user of the host in `ps`).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from application.context import acting_as
from application.errors import ApplicationError
from application.policy import OPERATOR_ROLE
from application.ports import ExportRecipient
from application.security import Actor
from cli.context import EXIT_CHECK_FAILED, ISO_TIME, components, fail, operator_context, operator_id
from domain.consent import CHANNELS, CONSENT_PURPOSES, SOURCES
from domain.errors import DomainError
from domain.privacy_requests import JURISDICTIONS, KINDS, STATUSES, VERIFICATION_METHODS
from infrastructure.privacy_export import ExportUnreadable, open_export


def _write_private(path: Path, data: bytes) -> None:
    """Write a file only this user can read (an export holds personal data)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def watch_deadlines(built: Any, stop: threading.Event, log: logging.Logger) -> threading.Thread:
    """Run `check_deadlines` now and every `privacy_deadline_check_seconds` (default an
    hour: ample against deadlines counted in days) until `stop` is set, in a daemon
    thread. Alert ids are deterministic, so several processes, or a process and a cron
    job, never raise the same alert twice."""
    every = float(built.settings.privacy_deadline_check_seconds)

    def loop() -> None:
        while not stop.is_set():
            try:
                with acting_as(operator_context("privacy requests: deadlines")):
                    raised = built.privacy.check_deadlines()
                if raised:
                    log.warning("overdue data-subject requests", extra={"fields": {"alerts": len(raised)}})
            except Exception as exc:  # noqa: BLE001 - a store outage must not stop the worker
                log.error("deadline check failed", extra={"fields": {"exc_type": type(exc).__name__}})
            stop.wait(every)

    thread = threading.Thread(target=loop, name="privacy-deadlines", daemon=True)
    thread.start()
    return thread


def dpo_operator() -> Actor:
    """The operator at the DPO's desk (see the module text)."""
    return Actor(staff_id=operator_id(), username=getpass.getuser(), roles=frozenset({OPERATOR_ROLE, "dpo"}),
                 portfolios=frozenset())


def _print(value: Any, as_json: bool, line: str) -> None:
    click.echo(json.dumps(value, default=str, sort_keys=True) if as_json else line)


def _show(request: dict[str, Any]) -> str:
    late = " OVERDUE" if request.get("overdue") else ""
    return (f"{request['id']}  {request['kind']:<13} {request['jurisdiction']}  {request['status']:<11} "
            f"due {request['deadline']}{late}  customer {request['customer_id']}")


def _run(ctx: click.Context, purpose: str, act: Any) -> Any:
    with components(ctx) as built, acting_as(operator_context(purpose)):
        try:
            return act(built)
        except (ApplicationError, DomainError) as exc:
            fail(str(exc), EXIT_CHECK_FAILED)


def _passphrase(path: str | None, *, confirm: bool) -> str:
    if path is not None:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    return str(click.prompt("passphrase", hide_input=True, confirmation_prompt=confirm, err=True))


# -- requests --------------------------------------------------------------------------------

@click.group("requests")
def requests_group() -> None:
    """Data-subject requests: receive, verify, extend, export, complete, reject, check deadlines."""


@requests_group.command("list")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--customer", "customer_id")
@click.option("--overdue", is_flag=True, default=None, help="Only requests past their deadline.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_requests(ctx: click.Context, status: str | None, customer_id: str | None, overdue: bool | None,
                  as_json: bool) -> None:
    """The requests, oldest first."""
    items = _run(ctx, "privacy requests: list", lambda built: built.privacy.list_requests(
        dpo_operator(), status=status, customer_id=customer_id, overdue=overdue))
    if as_json:
        click.echo(json.dumps({"items": items}, default=str, sort_keys=True))
    for item in [] if as_json else items:
        click.echo(_show(item))


@requests_group.command("create")
@click.argument("customer_id")
@click.option("--kind", required=True, type=click.Choice(KINDS))
@click.option("--jurisdiction", required=True, type=click.Choice(JURISDICTIONS),
              help="gdpr: one month (+2 once); ccpa: 45 days (+45 once).")
@click.option("--received-at", type=ISO_TIME, help="When it arrived (default now).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def create_request(ctx: click.Context, customer_id: str, kind: str, jurisdiction: str,
                   received_at: datetime | None, as_json: bool) -> None:
    """Record a request as received; prints its id and deadline."""
    made = _run(ctx, "privacy requests: receive", lambda built: built.privacy.receive(
        dpo_operator(), customer_id=customer_id, kind=kind, jurisdiction=jurisdiction, received_at=received_at))
    _print(made, as_json, _show(made))


@requests_group.command("show")
@click.argument("request_id")
@click.pass_context
def show_request(ctx: click.Context, request_id: str) -> None:
    click.echo(json.dumps(_run(ctx, "privacy requests: read",
                               lambda built: built.privacy.get(dpo_operator(), request_id)), indent=2, sort_keys=True))


@requests_group.command("verify")
@click.argument("request_id")
@click.option("--method", required=True, type=click.Choice(VERIFICATION_METHODS))
@click.option("--note", help="How it was checked (no personal data).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify_request(ctx: click.Context, request_id: str, method: str, note: str | None, as_json: bool) -> None:
    """Record that the requester's identity was verified, by you, by --method."""
    done = _run(ctx, "privacy requests: verify",
                lambda built: built.privacy.verify(dpo_operator(), request_id, method=method, note=note))
    _print(done, as_json, _show(done))


@requests_group.command("extend")
@click.argument("request_id")
@click.option("--reason", required=True, help="Why (no personal data).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def extend_request(ctx: click.Context, request_id: str, reason: str, as_json: bool) -> None:
    """Extend the deadline once, before it passes."""
    done = _run(ctx, "privacy requests: extend",
                lambda built: built.privacy.extend(dpo_operator(), request_id, reason=reason))
    _print(done, as_json, _show(done))


@requests_group.command("reject")
@click.argument("request_id")
@click.option("--reason", required=True, help="Why (no personal data).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reject_request(ctx: click.Context, request_id: str, reason: str, as_json: bool) -> None:
    done = _run(ctx, "privacy requests: reject",
                lambda built: built.privacy.reject(dpo_operator(), request_id, reason=reason))
    _print(done, as_json, _show(done))


@requests_group.command("complete")
@click.argument("request_id")
@click.option("--change", "changes", multiple=True, metavar="FIELD=VALUE",
              help="Rectification: a field and its correct value (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def complete_request(ctx: click.Context, request_id: str, changes: tuple[str, ...], as_json: bool) -> None:
    """Carry the request out (erase, rectify, restrict, withdraw consents) and complete it."""
    parsed: dict[str, Any] = {}
    for change in changes:
        field, sep, value = change.partition("=")
        if not sep or not field:
            fail("--change takes FIELD=VALUE")
        parsed[field.strip()] = value
    done = _run(ctx, "privacy requests: complete",
                lambda built: built.privacy.complete(dpo_operator(), request_id, changes=parsed or None))
    _print(done, as_json, _show(done))


@requests_group.command("export")
@click.argument("request_id")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write the sealed file.")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False),
              help="Encrypt to the passphrase in this file (else prompted, unless --public-key).")
@click.option("--public-key", "public_key", type=click.Path(exists=True, dir_okay=False),
              help="Encrypt to this X25519 or RSA public key (PEM).")
@click.pass_context
def export_request(ctx: click.Context, request_id: str, out: str, passphrase_file: str | None,
                   public_key: str | None) -> None:
    """Write the subject's export: everything held about them and who accessed it, signed with
    the audit key and encrypted (R5.3). Open it with `requests open-export`."""
    if passphrase_file and public_key:
        fail("give --passphrase-file or --public-key, not both")
    recipient = (ExportRecipient(public_key_pem=Path(public_key).read_text(encoding="ascii")) if public_key
                 else ExportRecipient(passphrase=_passphrase(passphrase_file, confirm=True)))
    sealed, shown = _run(ctx, "privacy requests: export",
                         lambda built: built.privacy.export(dpo_operator(), request_id, recipient))
    _write_private(Path(out), sealed)
    click.echo(f"wrote {out} (sha256 {shown['exports'][-1]['sha256']})")


@requests_group.command("open-export")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write the files into.")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False))
@click.option("--private-key", type=click.Path(exists=True, dir_okay=False), help="The PEM private key.")
@click.option("--audit-key", type=click.Path(exists=True, dir_okay=False),
              help="The instance's published audit-signing.pub to verify against (recommended).")
def open_export_command(file: str, out: str, passphrase_file: str | None, private_key: str | None,
                        audit_key: str | None) -> None:
    """Decrypt an export, check its signature and every file, and write the files (no
    database, no KEK: the subject or an auditor can run it anywhere). Exit 1 if anything
    does not verify."""
    blob = Path(file).read_bytes()
    try:
        opened = open_export(
            blob,
            passphrase=None if private_key else _passphrase(passphrase_file, confirm=False),
            private_key_pem=Path(private_key).read_bytes() if private_key else None,
            audit_public_key_pem=Path(audit_key).read_bytes() if audit_key else None,
        )
    except ExportUnreadable as exc:
        fail(str(exc), EXIT_CHECK_FAILED)
    folder = Path(out)
    for name, data in sorted(opened.files.items()):
        target = (folder / name).resolve()
        if folder.resolve() not in target.parents:
            fail(f"refusing a file outside {out}", EXIT_CHECK_FAILED)
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_private(target, data)
    pinned = "the audit key you gave" if opened.pinned else "the key inside (give --audit-key to pin it)"
    click.echo(f"verified: signed by audit key {opened.key_id} ({pinned}); subject "
               f"{opened.manifest['subject_id']}; {len(opened.files)} files written to {out}")


@requests_group.command("check-deadlines")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def check_deadlines(ctx: click.Context, as_json: bool) -> None:
    """Raise one alert per request past its deadline (safe to run as often as you like;
    `strongroom worker` runs it periodically). Exit 1 when any request is overdue."""
    with components(ctx) as built, acting_as(operator_context("privacy requests: deadlines")):
        raised = built.privacy.check_deadlines()
        overdue = built.privacy.list_requests(dpo_operator(), overdue=True)
    if as_json:
        click.echo(json.dumps({"raised": raised, "overdue": [r["id"] for r in overdue]}, default=str))
    else:
        for alert in raised:
            click.echo(f"alert {alert['id']}: {alert['summary']}")
        click.echo(f"{len(overdue)} overdue, {len(raised)} new alert(s)")
    if overdue:
        sys.exit(EXIT_CHECK_FAILED)


@requests_group.command("lift-restriction")
@click.argument("customer_id")
@click.option("--reason", required=True, help="Why (no personal data): kept in the audit trail.")
@click.pass_context
def lift_restriction(ctx: click.Context, customer_id: str, reason: str) -> None:
    """Lift a restriction of processing (R5.6): a recorded decision, who and why."""
    done = _run(ctx, "privacy: lift restriction",
                lambda built: built.privacy.lift_restriction(dpo_operator(), customer_id, reason=reason))
    click.echo(f"restriction lifted on {done['id']} (version {done['version']})")


# -- consents --------------------------------------------------------------------------------

@click.group("consents")
def consents_group() -> None:
    """The consent ledger: list a customer's answers, record a grant or a withdrawal."""


@consents_group.command("list")
@click.argument("customer_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_consents(ctx: click.Context, customer_id: str, as_json: bool) -> None:
    """Every answer (oldest first) and what is in force."""
    found = _run(ctx, "consents: list", lambda built: built.consents.consents(dpo_operator(), customer_id))
    if as_json:
        click.echo(json.dumps(found, sort_keys=True))
        return
    for entry in found["items"]:
        click.echo(f"{entry['recorded_at']}  {entry['purpose']}/{entry['channel']}  "
                   f"{'granted' if entry['granted'] else 'withdrawn'}  notice {entry['notice_version']}  "
                   f"source {entry['source']}  by {entry['actor_id']}")


@consents_group.command("record")
@click.argument("customer_id")
@click.option("--purpose", required=True, type=click.Choice(tuple(CONSENT_PURPOSES)))
@click.option("--channel", required=True, type=click.Choice(CHANNELS))
@click.option("--grant/--withdraw", "granted", required=True)
@click.option("--notice-version", required=True, help="The privacy notice the customer was shown.")
@click.option("--source", required=True, type=click.Choice(SOURCES))
@click.pass_context
def record_consent(ctx: click.Context, customer_id: str, purpose: str, channel: str, granted: bool,
                   notice_version: str, source: str) -> None:
    entry = _run(ctx, "consents: record", lambda built: built.consents.record(
        dpo_operator(), customer_id, purpose=purpose, channel=channel, granted=granted,
        notice_version=notice_version, source=source))
    click.echo(f"{'granted' if entry['granted'] else 'withdrawn'} {purpose}/{channel} for {customer_id}")


def _processed(out: str, done: Any, what: str) -> None:
    _write_private(Path(out), "".join(json.dumps(item, sort_keys=True) + "\n" for item in done.items).encode())
    click.echo(f"{len(done.items)} {what} written to {out}; {done.left_out} left out")


@consents_group.command("marketing-list")
@click.option("--channel", required=True, type=click.Choice(("email", "phone", "sms", "post")))
@click.option("--portfolio")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSON lines, one contact each.")
@click.pass_context
def marketing_list(ctx: click.Context, channel: str, portfolio: str | None, out: str) -> None:
    """The marketing contact list: only customers whose consent is in force (R5.2, R5.6)."""
    done = _run(ctx, "marketing contact list", lambda built: built.consents.marketing_contacts(
        dpo_operator(), channel, portfolio=portfolio))
    _processed(out, done, "contact(s)")


@consents_group.command("data-sharing-export")
@click.option("--portfolio")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSON lines for the partner.")
@click.pass_context
def data_sharing_export(ctx: click.Context, portfolio: str | None, out: str) -> None:
    """The file handed to partners: only customers who agreed to data sharing (R5.2, R5.6)."""
    done = _run(ctx, "data sharing export", lambda built: built.consents.data_sharing_export(
        dpo_operator(), portfolio=portfolio))
    _processed(out, done, "customer(s)")


@consents_group.command("profiling-run")
@click.option("--portfolio")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSON lines, one profile each.")
@click.pass_context
def profiling_run(ctx: click.Context, portfolio: str | None, out: str) -> None:
    """Marketing profiles: only customers who agreed to profiling (R5.2, R5.6)."""
    done = _run(ctx, "profiling run", lambda built: built.consents.profiling_run(dpo_operator(), portfolio=portfolio))
    _processed(out, done, "profile(s)")
