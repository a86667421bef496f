"""`strongroom recert start|list|decide|check` (R6.2): access recertification.

The operator starts campaigns and runs `check` from cron (escalations, overdue alerts,
the next quarterly campaign); it decides only escalated items, as a security officer
would (application/recertification.py). Each change is recorded as the operator's.
"""

from __future__ import annotations

import json
from typing import Any

import click

from application.context import acting_as
from application.errors import ApplicationError
from cli.context import components, fail, operator_actor, operator_context
from domain.errors import DomainError


@click.group("recert")
def recert_group() -> None:
    """Access recertification campaigns (R6.2)."""


def _print(campaign: dict[str, Any]) -> None:
    summary = ", ".join(f"{k} {v}" for k, v in campaign["summary"].items())
    click.echo(f"campaign {campaign['id']} started {campaign['started_at']} due {campaign['due_at']}: {summary}")
    for item in campaign["items"]:
        revoked = " ".join([*item["revoked_roles"], *item["revoked_portfolios"]])
        click.echo(f"  {item['staff_id']}  {item['username']:<20} {','.join(item['roles']):<30} "
                   f"{','.join(item['portfolios']):<20} {item['state']}{' ' + revoked if revoked else ''}")


@recert_group.command("start")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_context
def start_command(ctx: click.Context, as_json: bool) -> None:
    """Start a campaign over every active member with a role."""
    with components(ctx) as built, acting_as(operator_context("recertification started by an operator")):
        try:
            campaign = built.recertification.start(operator_actor())
        except ApplicationError as exc:
            fail(str(exc))
    click.echo(json.dumps(campaign)) if as_json else _print(campaign)


@recert_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Every campaign and its items."""
    with components(ctx) as built, acting_as(operator_context("recertification listed by an operator")):
        campaigns = built.recertification.list(operator_actor())
    if as_json:
        click.echo(json.dumps(campaigns))
        return
    for campaign in campaigns:
        _print(campaign)


@recert_group.command("decide")
@click.argument("campaign_id")
@click.argument("staff_id")
@click.argument("decision", type=click.Choice(["confirm", "revoke"]))
@click.option("--role", "roles", multiple=True, help="With revoke: a role to take away (repeat).")
@click.option("--portfolio", "portfolios", multiple=True, help="With revoke: a portfolio to take away (repeat).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_context
def decide_command(ctx: click.Context, campaign_id: str, staff_id: str, decision: str, roles: tuple[str, ...],
                   portfolios: tuple[str, ...], as_json: bool) -> None:
    """Decide an escalated item (revoke with no --role/--portfolio: everything)."""
    with components(ctx) as built, acting_as(operator_context("recertification decided by an operator")):
        try:
            campaign = built.recertification.decide(
                operator_actor(), campaign_id, staff_id, decision=decision,
                roles=list(roles) if roles or portfolios else None,
                portfolios=list(portfolios) if roles or portfolios else None)
        except (ApplicationError, DomainError) as exc:
            fail(str(exc))
    click.echo(json.dumps(campaign)) if as_json else _print(campaign)


@recert_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_context
def check_command(ctx: click.Context, as_json: bool) -> None:
    """Escalate due items, raise alerts for overdue ones, start the quarterly campaign when due (cron)."""
    with components(ctx) as built, acting_as(operator_context("recertification check")):
        done = built.recertification.check(operator_actor())
    if as_json:
        click.echo(json.dumps(done))
    else:
        click.echo(f"escalated {done['escalated']}, alerted {done['alerted']}, "
                   f"started {done['started'] or 'none'}")
