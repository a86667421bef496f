"""PostgreSQL roles for an append-only event store (R3.4).

Two roles: the *owner* creates and changes the schema (`strongroom init`, upgrades)
and owns every table and function; the *application* role is what `serve`,
`worker` and the command line connect as day to day. `grant_application_role`
(run as the owner, or a superuser) gives the application role:

- on the event tables (those with a `row_hash` column): SELECT only. Events are
  appended through the per-table insert function, which is SECURITY DEFINER, so
  the role needs EXECUTE on it and no INSERT: it cannot write a row whose hash it
  chose, and it can neither UPDATE, DELETE nor TRUNCATE one;
- on `audit_checkpoints`: SELECT and INSERT;
- on `audit_chain_format` (where chain v2 starts): SELECT only, since moving the
  recorded start would make verification hash rows the wrong way;
- on every other table (read models, keys, identity, tracking): SELECT, INSERT,
  UPDATE, DELETE, because those are state, not history;
- USAGE on the schemas and sequences, CONNECT on the database, and default
  privileges so tables the owner creates later are usable too (run it again after
  an upgrade all the same: it is idempotent and re-applies the event-table rules).

The triggers refuse UPDATE, DELETE and TRUNCATE of events even to the owner, so a
mistake made while connected as the owner cannot rewrite history either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from infrastructure.audit.chain import CHAIN_FORMAT_TABLE

CHECKPOINT_TABLE = "audit_checkpoints"
# What the application role may not do to the audit tables beside the events.
_AUDIT_TABLE_REVOKES = {
    CHECKPOINT_TABLE: "UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER",
    CHAIN_FORMAT_TABLE: "INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER",
}


class RolesError(Exception):
    """The grants cannot be applied as asked (e.g. the app role would be the owner)."""


@dataclass
class Grants:
    role: str
    created: bool = False
    statements: list[str] = field(default_factory=list)
    event_tables: list[str] = field(default_factory=list)


def _q(*names: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(n) for n in names)


def grant_application_role(conn: Any, app_role: str, *, schemas: list[str], create: bool = True) -> Grants:
    """Apply the application role's privileges in the connected database.

    `conn` is a psycopg connection as the owner (or a superuser), in a transaction.
    """
    grants = Grants(app_role)
    me = conn.execute("SELECT current_user").fetchone()[0]
    if app_role == me:
        raise RolesError("the application role must not be the role that owns the schema")
    exists = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (app_role,)).fetchone()
    if exists is None:
        can_create = conn.execute(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()[0]
        if not create or not can_create:
            raise RolesError(
                f"role {app_role} does not exist; have a superuser create it first: "
                f"CREATE ROLE \"{app_role}\" LOGIN PASSWORD '...'"
            )
        # LOGIN without a password: the operator sets one (or uses certificates);
        # a secret never passes through this command.
        run(conn, grants, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(app_role)))
        grants.created = True
    elif exists[0]:
        raise RolesError(f"role {app_role} is a superuser: superusers bypass every privilege")
    database = conn.execute("SELECT current_database()").fetchone()[0]
    role = sql.Identifier(app_role)
    run(conn, grants, sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role))
    present = [r[0] for r in conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY nspname", (schemas,)
    ).fetchall()]
    for schema in present:
        s = sql.Identifier(schema)
        run(conn, grants, sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, role))
        run(conn, grants, sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(s, role))
        run(conn, grants, sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, role))
        run(conn, grants, sql.SQL(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
        ).format(s, role))
        run(conn, grants, sql.SQL(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT USAGE, SELECT ON SEQUENCES TO {}"
        ).format(s, role))
    event_tables = conn.execute(
        "SELECT table_schema, table_name FROM information_schema.columns "
        "WHERE column_name = 'row_hash' AND table_schema = ANY(%s) ORDER BY 1, 2",
        (present,),
    ).fetchall()
    for schema, table in event_tables:
        grants.event_tables.append(f"{schema}.{table}")
        run(conn, grants, sql.SQL(
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {} FROM {}"
        ).format(_q(schema, table), role))
    for schema in present:
        for table, privileges in _AUDIT_TABLE_REVOKES.items():
            found = conn.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                (schema, table),
            ).fetchone()
            if found:
                run(conn, grants, sql.SQL("REVOKE {} ON {} FROM {}").format(
                    sql.SQL(privileges), _q(schema, table), role))
    functions = conn.execute(
        "SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE p.prosecdef AND n.nspname = ANY(%s) ORDER BY 1, 2",
        (present,),
    ).fetchall()
    for schema, name, arguments in functions:
        run(conn, grants, sql.SQL("GRANT EXECUTE ON FUNCTION {}({}) TO {}").format(
            _q(schema, name), sql.SQL(arguments), role,  # arguments as PostgreSQL prints them
        ))
    return grants


def run(conn: Any, grants: Grants, statement: sql.Composable) -> None:
    grants.statements.append(statement.as_string(conn))
    conn.execute(statement)
