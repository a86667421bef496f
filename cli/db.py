"""`strongroom db roles`: database set-up for operators (PostgreSQL, R3.4)."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import click

from cli.context import components, fail, load_settings
from infrastructure.composition import KEYS_SCHEMA
from infrastructure.sql import is_postgres


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
    import psycopg

    from infrastructure.audit.roles import RolesError, grant_application_role

    settings = load_settings(ctx)
    if not is_postgres(settings.database_url):
        fail("database roles are for PostgreSQL; SQLite's triggers need no roles")
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
        fail(str(exc))
    except psycopg.Error as exc:
        fail(f"the grants could not be applied ({type(exc).__name__}); connect as the schema owner")
    if as_json:
        click.echo(json.dumps({"role": app_role, "created": grants.created,
                               "event_tables": grants.event_tables, "statements": grants.statements}))
        return
    click.echo(f"{'created' if grants.created else 'updated'} role {app_role}: append-only on "
               f"{', '.join(grants.event_tables) or 'no event tables yet'}")
    if grants.created:
        click.echo(f"set its password: ALTER ROLE \"{app_role}\" PASSWORD '...';")
