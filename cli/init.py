"""`strongroom init`: config, KEK, TLS certificate, schema and the first administrator."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import click

from application.clock import utc_now
from application.context import acting_as
from cli.context import components, fail, instance_of, operator_context
from infrastructure.composition import CONFIG_FILE, ConfigurationError, Settings
from infrastructure.crypto.blind_index import bits_for
from infrastructure.crypto.kek import LocalKek
from infrastructure.private_files import open_private
from infrastructure.schema_undo import Snapshot, snapshot, snapshot_from_json, snapshot_to_json, undo
from infrastructure.tls import make_self_signed

# In the staging folder: the databases' schema objects before init touched them.
INIT_STATE = "init-state.json"


@click.command("init")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.option("--expected-customers", default=100_000, show_default=True,
              help="Sizes the blind indexes (R1.3).")
@click.pass_context
def init_command(ctx: click.Context, as_json: bool, expected_customers: int) -> None:
    """Create the instance: config, KEK, TLS certificate, schema, first admin."""
    folder = Path(instance_of(ctx) or "instance").resolve()
    if folder.exists() and any(folder.iterdir()):
        fail(f"{folder} already exists and is not empty; nothing was changed")
    _take_back_killed(ctx, folder)
    # Everything is made in a staging folder and renamed into place at the end, so
    # a failed init leaves nothing half-made behind.
    staging = folder.with_name(f".{folder.name}.init-{secrets.token_hex(4)}")
    staging.mkdir(mode=0o700, parents=True)
    # The databases as init found them: a failure after the schema is made drops what
    # init made, so a later init can use them (the KEK that sealed it goes too).
    found: list[Snapshot] = []
    try:
        # 0600 like the stores beside it: an operator may add a database URL with a password.
        with os.fdopen(open_private(staging / CONFIG_FILE), "w", encoding="utf-8") as config:
            config.write(json.dumps(
                {
                    "environment": "development",
                    "key_provider": "local",
                    "blind_index_bits": bits_for(expected_customers),
                    "backup_targets": [{"name": "local", "kind": "local", "path": "backups/local"}],
                    "created_at": utc_now().isoformat(),
                },
                indent=2,
            ))
        LocalKek.create(staging / "kek.key")
        (staging / "tls").mkdir(mode=0o700)
        make_self_signed(staging / "tls" / "cert.pem", staging / "tls" / "key.pem")
        ctx.obj["instance"] = str(staging)
        found = _as_found(ctx)
        # Written before the databases are touched: an init killed after this point
        # is taken back by the next init, which finds this file (`_take_back_killed`).
        (staging / INIT_STATE).write_text(json.dumps(
            {"pid": os.getpid(), "databases": [snapshot_to_json(before) for before in found]}))
        with components(ctx, new_store=True) as built, acting_as(operator_context("initial setup")):
            # A staff account: no read model waits on it, so no projection worker need
            # run yet (STRONGROOM_PROJECTION=worker, R7.4).
            admin = built.staff_admin.enrol_first_admin()
        if folder.exists():
            folder.rmdir()
        staging.rename(folder)
    except BaseException:
        _take_back(found, staging)
        raise
    finally:
        ctx.obj["instance"] = str(folder)
    result = {
        "admin": {
            "username": admin.username, "password": admin.one_time_password, "totp_uri": admin.totp_uri,
            "recovery_codes": admin.recovery_codes,
        }
    }
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"Initialised {folder}")
        click.echo("First administrator (shown once; the password must be changed at first login):")
        click.echo(f"  username: {admin.username}\n  password: {admin.one_time_password}\n"
                   f"  TOTP:     {admin.totp_uri}")
        click.echo(f"  recovery codes: {' '.join(admin.recovery_codes)}")


def _take_back_killed(ctx: click.Context, folder: Path) -> None:
    """Take back what an earlier init of this folder made before it was killed (or
    failed and could not drop it): its staging folder holds the databases' schema as
    it found them, and its KEK, the only key to what it wrote. Found from outside
    (issue 9): an init killed with SIGKILL left 11 to 18 tables sealed under a KEK no
    later init had, and every later init was refused."""
    for leftover in sorted(folder.parent.glob(f".{folder.name}.init-*")):
        state = leftover / INIT_STATE
        if leftover.is_dir() and state.is_file():
            ctx.obj["instance"] = str(leftover)
            try:
                urls = list(dict.fromkeys(_urls(ctx)))
                recorded = json.loads(state.read_text())
                if _running(int(recorded["pid"])):
                    fail(f"another init of {folder.name} is running (process {recorded['pid']}); "
                         "nothing was changed")
                saved = recorded["databases"]
                if len(saved) != len(urls):
                    fail(f"{leftover} was made for other databases; remove it by hand; nothing was changed")
                for url, data in zip(urls, saved):
                    undo(snapshot_from_json(url, data))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                fail(f"cannot read {state} ({type(exc).__name__}); nothing was changed")
            except Exception as exc:  # the database's own error: its message may name a host
                fail(f"an earlier init of {folder.name} was interrupted, and what it made in the database "
                     f"cannot be dropped now ({type(exc).__name__}); its KEK is kept in {leftover}")
            finally:
                ctx.obj["instance"] = str(folder)
            click.echo(f"an earlier init of {folder.name} was interrupted: dropped what it made in the "
                       "database", err=True)
        shutil.rmtree(leftover, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _urls(ctx: click.Context) -> list[str]:
    settings = Settings.load(instance_of(ctx))
    return [settings.database_url, settings.keys_database_url]


def _as_found(ctx: click.Context) -> list[Snapshot]:
    """The schema objects of the databases this instance will use, before init touches
    them; a database that cannot be read stops init here, having changed nothing."""
    try:
        settings = Settings.load(instance_of(ctx))
    except ConfigurationError as exc:
        fail(str(exc))
    try:
        return [snapshot(url) for url in dict.fromkeys([settings.database_url, settings.keys_database_url])]
    except Exception as exc:  # psycopg's or sqlite3's own error: its message may name a host
        fail(f"cannot read the database ({type(exc).__name__}); nothing was changed")


def _take_back(found: list[Snapshot], staging: Path) -> None:
    """Leave the databases and the folder as init found them. Should the databases not
    be put back, the staging folder (and the KEK in it) is kept: it is the only key
    to what init wrote."""
    try:
        for before in found:
            undo(before)
    except Exception as exc:
        click.echo(f"error: init failed and could not drop what it made in the database "
                   f"({type(exc).__name__}); its KEK is kept in {staging}", err=True)
        return
    shutil.rmtree(staging, ignore_errors=True)
