"""The one operator context every command shares.

A command builds the components for one run (`components`), acts as the operator who
runs it (`operator_context`), fails with one line and an exit status (`fail`), and
reads times with one parser (`ISO_TIME`). Exit status, as SPEC's interface contract
fixes it: 0 success, 1 a check failed (tampering found, a rejected line, a drill that
failed), 2 usage or configuration errors.

Command modules import this module, never `cli.main`, so nothing imports in a circle.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

import click

from application.context import RequestContext
from application.errors import ValidationFailed
from application.policy import OPERATOR_ROLE, stated_purpose
from application.security import Actor
from infrastructure.composition import Components, ConfigurationError, Settings, build
from infrastructure.crypto.kek import KekError
from infrastructure.sql import DatabaseUnavailable, is_postgres, sqlite_path

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2

# What stops a command before it does anything: the settings, the KEK or the database.
SETUP_ERRORS = (ConfigurationError, KekError, DatabaseUnavailable)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One line on stderr, then exit: errors name lines, fields and rules, never values."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def operator_id() -> str:
    """`operator:<OS user>@<host>`: who ran the command, and on which machine (R3.1)."""
    return f"operator:{getpass.getuser()}@{socket.gethostname()}"


def operator_context(purpose: str | None = None) -> RequestContext:
    """The command line acts as the operator who runs it (R3.1)."""
    return RequestContext(actor_id=operator_id(), via="cli", purpose=purpose)


def operator_actor() -> Actor:
    """The operator as the policy sees them: the `operator` role, no staff role, no
    portfolio (application/policy.py OPERATOR_ROLE says what it may read)."""
    return Actor(staff_id=operator_id(), username=getpass.getuser(), roles=frozenset({OPERATOR_ROLE}),
                 portfolios=frozenset())


class Purpose(click.ParamType):
    """Why personal data is being read: 1 to 200 printable characters, no card data (the
    API's X-Purpose rule). Recorded with the access; refused before anything is built."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return stated_purpose(str(value))
        except ValidationFailed as exc:
            self.fail("; ".join(exc.errors["purpose"]), param, ctx)


PURPOSE = Purpose()
PURPOSE_HELP = ("Why you read this personal data (1-200 printable characters, no card data); "
                "kept with the access record, which names you as operator:<user>@<host>.")


def instance_of(ctx: click.Context) -> str | None:
    """The instance folder the root group was given (`--instance`, STRONGROOM_INSTANCE)."""
    return (ctx.obj or {}).get("instance")


def load_settings(ctx: click.Context) -> Settings:
    """The instance's settings; a configuration problem exits 2."""
    try:
        return Settings.load(instance_of(ctx))
    except ConfigurationError as exc:
        fail(str(exc))


def require_store(settings: Settings, refuse: Callable[[str], NoReturn] = fail) -> None:
    """Every command but `init` works on a store init made. A SQLite URL naming no
    file is a mistake (a typo in the URL, a volume not mounted): opening it would
    quietly make an empty store, which `audit verify` called intact and `serve`
    served (found from outside, issue 9)."""
    if not is_postgres(settings.database_url):
        path = sqlite_path(settings.database_url)
        if not os.path.exists(path):
            refuse(f"there is no event store at {path}: run `strongroom init` first, or check the "
                   "database URL; nothing was changed")


@contextmanager
def components(ctx: click.Context, refuse: Callable[[str], NoReturn] | None = None, *,
               new_store: bool = False) -> Iterator[Components]:
    """Build the application for one command; configuration problems exit 2, through
    `refuse` when the command says how (a process that logs JSON), else `fail`.
    Only `init` makes a new store (`new_store`)."""
    try:
        settings = Settings.load(instance_of(ctx))
        if not new_store:
            require_store(settings, refuse or fail)
        built = build(settings)
    except (*SETUP_ERRORS, ValueError) as exc:
        (refuse or fail)(str(exc))
    try:
        yield built
        built.tamper_evidence.flush()  # sign a checkpoint over what this command wrote (R3.3)
    finally:
        built.close()


class IsoTime(click.ParamType):
    """An ISO-8601 time; one without a zone is taken as UTC (the command line's rule)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            when = value
        else:
            try:
                when = datetime.fromisoformat(str(value))
            except ValueError:
                self.fail("must be an ISO-8601 time, e.g. 2026-11-29T12:00:00+00:00", param, ctx)
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


ISO_TIME = IsoTime()
