"""`strongroom staff add`: the bootstrap path for accounts, privileged ones included.

Whoever can run commands on the server already holds the KEK and the database, so
no second approver is asked for here; the account is recorded as created by the
operator (`operator:<login name>`, via "cli") like every command-line change (R3.1).
The one-time password is printed once and must be changed at first login.
"""

from __future__ import annotations

import json

import click

from application.context import acting_as
from application.policy import DutiesConflict
from application.staff_admin import UsernameTaken
from cli.context import components, fail, operator_context
from domain.errors import DomainError


@click.group("staff")
def staff_group() -> None:
    """Staff accounts."""


@staff_group.command("add")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, help="A role (repeat for several).")
@click.option("--portfolio", "portfolios", multiple=True, help="A portfolio in scope (repeat for several).")
@click.option("--display-name", help="How the audit trail names them (default: the username).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_context
def add_staff(ctx: click.Context, username: str, roles: tuple[str, ...], portfolios: tuple[str, ...],
              display_name: str | None, as_json: bool) -> None:
    """Create a staff account and print its one-time password (shown once)."""
    with components(ctx) as built, acting_as(operator_context("staff account created by an operator")):
        try:
            created = built.staff_admin.add_staff_as_operator(
                username=username, display_name=display_name or username, roles=list(roles),
                portfolios=list(portfolios),
            )
        except (UsernameTaken, DutiesConflict) as exc:
            # A conflict names the rule and the roles (R2.9): the operator is bound by it too.
            fail(str(exc))
        except DomainError as exc:
            # Names the field and rule (an unknown role, a malformed username), never the value.
            fail(str(exc))
    result = {"id": created.staff_id, "username": created.username, "one_time_password": created.one_time_password,
              "roles": created.roles, "portfolios": created.portfolios}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"created {created.username} ({created.staff_id}), roles: {', '.join(result['roles'])}")
        click.echo(f"  one-time password (shown once, change at first login): {created.one_time_password}")
