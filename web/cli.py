"""The `strongroom` command line: the operator's entry point, beside the API.

It uses the same composition root as the web app. Exit status: 0 on success, 1 when
a check fails (a rejected import line, tampering found), 2 on usage or configuration
errors. Output never carries personal data except where the operator asked for a
customer by id; errors name lines, fields and rules, never values.
"""

from __future__ import annotations

import getpass
import json
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from marshmallow import ValidationError

from application.context import RequestContext, acting_as
from application.errors import ApplicationError, CustomerErased, CustomerNotFound
from domain.errors import DomainError
from infrastructure.composition import (
    CONFIG_FILE,
    Components,
    ConfigurationError,
    Settings,
    build,
)
from infrastructure.crypto.blind_index import bits_for
from infrastructure.crypto.kek import KekError, LocalKek
from infrastructure.sql import DatabaseUnavailable
from web.schemas import CustomerCreateSchema, flatten_errors

EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def operator_context(purpose: str | None = None) -> RequestContext:
    """The command line acts as the operator who runs it (R3.1)."""
    return RequestContext(actor_id=f"operator:{getpass.getuser()}", via="cli", purpose=purpose)


@contextmanager
def components(ctx: click.Context) -> Iterator[Components]:
    """Build the application for one command; configuration problems exit 2."""
    try:
        settings = Settings.load(ctx.obj.get("instance"))
        built = build(settings)
    except (ConfigurationError, KekError, DatabaseUnavailable, ValueError) as exc:
        _fail(str(exc))
        raise  # unreachable, for type checkers
    try:
        yield built
        built.audit.flush()  # sign a checkpoint over what this command wrote (R3.3)
    finally:
        built.close()


@click.group()
@click.option("--instance", envvar="STRONGROOM_INSTANCE", default="instance",
              help="Instance folder (config, KEK, TLS certificate, SQLite files).")
@click.pass_context
def main(ctx: click.Context, instance: str) -> None:
    """Strongroom: encrypted, audited customer records for payment companies."""
    ctx.ensure_object(dict)
    ctx.obj["instance"] = instance


# -- init -----------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.option("--expected-customers", default=100_000, show_default=True,
              help="Sizes the blind indexes (R1.3).")
@click.pass_context
def init(ctx: click.Context, as_json: bool, expected_customers: int) -> None:
    """Create the instance: config, KEK, TLS certificate, schema, first admin."""
    import pyotp

    from infrastructure.passwords import Argon2PasswordHasher, new_recovery_codes
    from infrastructure.tls import make_self_signed

    folder = Path(ctx.obj["instance"]).resolve()
    if folder.exists() and any(folder.iterdir()):
        _fail(f"{folder} already exists and is not empty; nothing was changed")
    # Everything is made in a staging folder and renamed into place at the end, so
    # a failed init leaves nothing half-made behind.
    staging = folder.with_name(f".{folder.name}.init-{secrets.token_hex(4)}")
    staging.mkdir(mode=0o700, parents=True)
    try:
        (staging / CONFIG_FILE).write_text(
            json.dumps(
                {
                    "environment": "development",
                    "key_provider": "local",
                    "blind_index_bits": bits_for(expected_customers),
                    "backup_targets": [{"name": "local", "kind": "local", "path": "backups/local"}],
                    "created_at": datetime.now(UTC).isoformat(),
                },
                indent=2,
            )
        )
        LocalKek.create(staging / "kek.key")
        (staging / "tls").mkdir(mode=0o700)
        make_self_signed(staging / "tls" / "cert.pem", staging / "tls" / "key.pem")
        password = secrets.token_urlsafe(18)
        totp_secret = pyotp.random_base32()
        recovery_codes, recovery_hashes = new_recovery_codes()
        ctx.obj["instance"] = str(staging)
        with components(ctx) as built, acting_as(operator_context("initial setup")):
            admin = built.app.enrol_staff(
                username="admin", display_name="Administrator", roles=["admin"], portfolios=[],
                password_hash=Argon2PasswordHasher().hash(password), totp_secret=totp_secret,
                recovery_code_hashes=recovery_hashes,
            )
            # Findable by name at login (the staff directory, infrastructure/identity_store.py).
            built.identity.directory.reserve_username(admin.username, str(admin.id), datetime.now(UTC))
        if folder.exists():
            folder.rmdir()
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        ctx.obj["instance"] = str(folder)
    totp_uri = pyotp.TOTP(totp_secret).provisioning_uri(name="admin", issuer_name="Strongroom")
    result = {
        "admin": {
            "username": "admin", "password": password, "totp_uri": totp_uri,
            "recovery_codes": recovery_codes,
        }
    }
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"Initialised {folder}")
        click.echo("First administrator (shown once; the password must be changed at first login):")
        click.echo(f"  username: admin\n  password: {password}\n  TOTP:     {totp_uri}")
        click.echo(f"  recovery codes: {' '.join(recovery_codes)}")


# -- customers ----------------------------------------------------------------------------


@main.group()
def customers() -> None:
    """Import, show, find and erase customers."""


def _import_line(built: Components, text: str, portfolio: str | None) -> dict[str, list[str]] | None:
    """Import one JSON line; returns the errors (field -> reasons) or None on success."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        return {"_line": ["not valid JSON"]}
    if not isinstance(raw, dict):
        return {"_line": ["must be a JSON object"]}
    if portfolio is not None and "portfolio" not in raw:
        raw["portfolio"] = portfolio
    try:
        fields = CustomerCreateSchema().load(raw)
    except ValidationError as exc:
        return flatten_errors(exc.messages)
    try:
        built.app.register_customer(fields)
    except DomainError as exc:
        return {exc.field or "_line": [exc.rule]}
    return None


@customers.command("import")
@click.argument("file", type=click.File("r"))
@click.option("--portfolio", help="Portfolio for lines that name none.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def import_customers(ctx: click.Context, file: Any, portfolio: str | None, as_json: bool) -> None:
    """Import customers from JSON lines, one customer each.

    Valid lines are imported; each rejected line is reported by number and reason,
    never by its values, and leaves nothing behind. Exit 1 if any line was rejected.
    """
    imported, rejected = 0, []
    with components(ctx) as built, acting_as(operator_context("customer import")):
        for number, text in enumerate(file, start=1):
            if not text.strip():
                continue
            errors = _import_line(built, text, portfolio)
            if errors is None:
                imported += 1
            else:
                rejected.append({"line": number, "errors": errors})
    if as_json:
        click.echo(json.dumps({"imported": imported, "rejected": rejected}))
    else:
        click.echo(f"imported {imported}, rejected {len(rejected)}")
        for item in rejected:
            reasons = "; ".join(f"{f}: {', '.join(r)}" for f, r in item["errors"].items())
            click.echo(f"  line {item['line']}: {reasons}")
    if rejected:
        sys.exit(EXIT_CHECK_FAILED)


@customers.command("show")
@click.argument("customer_id")
@click.pass_context
def show_customer(ctx: click.Context, customer_id: str) -> None:
    """Print one customer's record as JSON (an operator's read of personal data)."""
    with components(ctx) as built:
        try:
            record = built.app.get_customer(customer_id)
        except CustomerErased:
            click.echo(json.dumps({"id": customer_id, "status": "erased"}))
            sys.exit(EXIT_CHECK_FAILED)
        except CustomerNotFound as exc:
            _fail(str(exc), EXIT_CHECK_FAILED)
        click.echo(json.dumps(record, default=str))


@customers.command("find")
@click.option("--email")
@click.option("--phone")
@click.option("--national-id")
@click.option("--pan")
@click.pass_context
def find_customers(ctx: click.Context, **criteria: str | None) -> None:
    """Print the ids of customers matching one exact value (blind index)."""
    given = {k: v for k, v in criteria.items() if v}
    if len(given) != 1:
        _fail("give exactly one of --email, --phone, --national-id, --pan")
    (field, value), = given.items()
    with components(ctx) as built:
        try:
            found = built.app.find_customers(field, value)
        except DomainError as exc:
            _fail(str(exc))
        for record in found:
            click.echo(record["id"])


@customers.command("erase")
@click.argument("customer_id")
@click.option("--reason", required=True, help="Why (no personal data): kept in the audit trail.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def erase_customer(ctx: click.Context, customer_id: str, reason: str, as_json: bool) -> None:
    """Crypto-shred a customer: destroy their keys, purge read models (R5.4)."""
    with components(ctx) as built, acting_as(operator_context(f"erasure: {reason}")):
        try:
            result = built.app.erase_customer(customer_id, reason)
        except CustomerNotFound as exc:
            _fail(str(exc), EXIT_CHECK_FAILED)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"erased {customer_id}: keys destroyed {', '.join(result['keys_destroyed'])}")


# -- projections, worker, keys ---------------------------------------------------------------


@main.group()
def projections() -> None:
    """Read models projected from the log."""


@projections.command("rebuild")
@click.option("--position", type=int, help="Rebuild up to this log position.")
@click.option("--to", "to_time", help="Rebuild up to this UTC time (ISO-8601).")
@click.pass_context
def rebuild(ctx: click.Context, position: int | None, to_time: str | None) -> None:
    """Empty the read models and project the log again, with a progress bar."""
    from rich.progress import Progress

    if position is not None and to_time is not None:
        _fail("give --position or --to, not both")
    with components(ctx) as built:
        app = built.app
        upto = position
        if to_time is not None:
            try:
                when = datetime.fromisoformat(to_time)
            except ValueError:
                _fail("--to must be an ISO-8601 time, e.g. 2026-11-29T12:00:00+00:00")
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            upto = app.recorder.position_at(when)  # type: ignore[attr-defined]
        total = upto if upto is not None else (app.recorder.max_notification_id() or 0)
        with Progress(transient=True) as progress:
            task = progress.add_task("projecting", total=total)
            count = built.projection.rebuild(app, upto=upto, progress=lambda n: progress.advance(task, n))
        click.echo(f"rebuilt read models from {count} events (position {built.directory.position()})")


@main.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run projections apart from the API (PostgreSQL, STRONGROOM_PROJECTION=worker)."""
    import signal

    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    with components(ctx) as built:
        click.echo(f"worker following the log from position {built.directory.position()}")
        try:
            built.projection.run_forever(built.app, stop=lambda: stopping["now"])
        except KeyboardInterrupt:
            pass


@main.group()
def keys() -> None:
    """The KEK and the data keys."""


@keys.command("status")
@click.option("--customer", help="Show one customer's keys.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_status(ctx: click.Context, customer: str | None, as_json: bool) -> None:
    """Which KEK is in use and how many data keys are active or destroyed."""
    with components(ctx) as built:
        status: dict[str, Any] = {
            "key_provider": built.settings.key_provider,
            "kek_id": built.keyring.kek.kek_id,
            "data_keys": built.keyring.store.counts(),
        }
        if customer:
            status["customer"] = {"id": customer, **built.keyring.status(customer)}
    if as_json:
        click.echo(json.dumps(status))
    else:
        for key, value in status.items():
            click.echo(f"{key}: {value}")


def _register_subcommands() -> None:
    # Kept in their own modules so the command line stays readable; imported late
    # so `strongroom --help` does not load the web server or the benchmarks.
    from web.bench import bench_command
    from web.cli_ops import compliance_group, doctor_command
    from web.cli_staff import staff_group
    from web.serve import serve_command

    main.add_command(doctor_command, "doctor")
    main.add_command(compliance_group, "compliance")
    main.add_command(serve_command, "serve")
    main.add_command(staff_group, "staff")
    main.add_command(bench_command, "bench")
    from web.cli_audit import audit_group, db_group  # audit verify|replay|checkpoint|export; db roles

    main.add_command(audit_group, "audit")
    main.add_command(db_group, "db")
    import web.cli_backup  # noqa: F401 - registers backup, restore, customers revert


_register_subcommands()


def run() -> None:  # pragma: no cover - console entry
    """Console entry: known errors become one line; unknown ones never dump a trace
    (whose messages could carry values) unless STRONGROOM_DEBUG is set."""
    import os

    try:
        main()
    except (ApplicationError, DomainError) as exc:
        _fail(str(exc), EXIT_CHECK_FAILED)
    except (ConfigurationError, KekError, DatabaseUnavailable) as exc:
        _fail(str(exc))
    except Exception as exc:
        if os.environ.get("STRONGROOM_DEBUG"):
            raise
        _fail(f"internal error ({type(exc).__name__}); rerun with STRONGROOM_DEBUG=1 for details", 1)


if __name__ == "__main__":  # pragma: no cover
    main()
