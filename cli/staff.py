"""`strongroom staff add`: the bootstrap path for accounts, privileged ones included;
`strongroom staff training record|list`: security-training completions (R6.4).

Whoever can run commands on the server already holds the KEK and the database, so
no second approver is asked for here; the account is recorded as created by the
operator (`operator:<login name>`, via "cli") like every command-line change (R3.1).
The one-time password is printed once and must be changed at first login.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from application.context import acting_as
from application.errors import ValidationFailed
from application.policy import DutiesConflict
from application.staff_admin import StaffNotFound, UsernameTaken
from cli.context import ISO_TIME, components, fail, operator_actor, operator_context
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


# -- security training (R6.4) -----------------------------------------------------------------


@staff_group.group("training")
def training_group() -> None:
    """Security-training completions (R6.4): without a current one, no reveal or export."""


def _staff_id(built: Any, who: str) -> str:
    """A member named by id or username."""
    found = built.identity.directory.staff_id_for(who.strip().lower())
    return str(found) if found is not None else who


def _print_state(state: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(state, default=str))
        return
    current = "current" if state["current"] else "NOT current (no reveal or export)"
    click.echo(f"{state['username']} ({state['staff_id']}): training {current}; valid until {state['valid_until']}")
    for item in state["completions"]:
        click.echo(f"  {item['completed_at']}  {item['course']} v{item['course_version']}  "
                   f"evidence {item['evidence_ref']}  recorded by {item['recorded_by']}")


@training_group.command("record")
@click.argument("staff")
@click.option("--course", required=True, help="The course's name.")
@click.option("--course-version", required=True, help="The course's version.")
@click.option("--completed-at", type=ISO_TIME, required=True, help="When it was completed (ISO 8601; UTC if no zone).")
@click.option("--evidence-ref", required=True, help="Where the evidence is (certificate or LMS record id).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_context
def record_training(ctx: click.Context, staff: str, course: str, course_version: str, completed_at: datetime,
                    evidence_ref: str, as_json: bool) -> None:
    """Record a completed course for STAFF (id or username), as the operator."""
    with components(ctx) as built, acting_as(operator_context("training recorded by an operator")):
        try:
            state = built.training.record(operator_actor(), _staff_id(built, staff), course=course,
                                          course_version=course_version, completed_at=completed_at,
                                          evidence_ref=evidence_ref)
        except (StaffNotFound, ValidationFailed, DomainError) as exc:
            fail(str(exc))
    _print_state(state, as_json)


@training_group.command("list")
@click.argument("staff")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_context
def list_training(ctx: click.Context, staff: str, as_json: bool) -> None:
    """STAFF's completions (id or username) and whether training is current."""
    with components(ctx) as built, acting_as(operator_context("training listed by an operator")):
        try:
            state = built.training.list(operator_actor(), _staff_id(built, staff))
        except StaffNotFound as exc:
            fail(str(exc))
    _print_state(state, as_json)
