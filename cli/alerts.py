"""`strongroom alerts`: the alerts the monitor raised, for the operator (R3.6).

`list` and `ack` go through the same use cases as `GET /api/v1/alerts` and
`POST /api/v1/alerts/{id}/ack` (application/alerts.py), acting as
`operator:<user>@<host>`: each listing is an access record in the operator's name,
and an acknowledgement is an event on the alert naming them. `dead-letters` and
`redeliver` look after the webhook deliveries that gave up
(infrastructure/webhooks.py).

Output carries ids, rules and times; never the client address an alert holds (a
security officer reads that through the API, or the operator through
`strongroom audit replay`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from application.alerts import AlertAlreadyAcknowledged, AlertDesk, AlertFilter, AlertNotFound
from application.context import acting_as
from application.errors import ValidationFailed
from cli.context import EXIT_CHECK_FAILED, ISO_TIME, components, fail, operator_actor, operator_context
from domain.alerts import SEVERITIES, STATUSES
from infrastructure.composition import Components

SHOWN = ("id", "raised_at", "severity", "rule_id", "status", "actor_id", "summary", "customer_ids",
         "positions", "responses", "applied", "acknowledged_by", "acknowledged_at", "note")


def _shown(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in SHOWN}


def _desk(built: Components) -> AlertDesk:
    if built.alerts is None:  # pragma: no cover - the composition root always builds it
        fail("alerts are not available in this build")
    return built.alerts


def _invalid(exc: ValidationFailed) -> str:
    return "; ".join(f"{field}: {', '.join(rules)}" for field, rules in exc.errors.items())


@click.group("alerts")
def alerts_group() -> None:
    """Alerts raised by the monitor (R3.6), and their webhook deliveries."""


@alerts_group.command("list")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--severity", type=click.Choice(SEVERITIES))
@click.option("--rule", "rule_id", help="Only this rule's alerts.")
@click.option("--actor", help="Only alerts about this staff member (id).")
@click.option("--since", type=ISO_TIME, help="Raised at or after (ISO-8601; no zone means UTC).")
@click.option("--until", type=ISO_TIME, help="Raised at or before (ISO-8601; no zone means UTC).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_alerts(ctx: click.Context, status: str | None, severity: str | None, rule_id: str | None,
                actor: str | None, since: datetime | None, until: datetime | None, limit: int,
                as_json: bool) -> None:
    """Alerts, newest first. The listing is recorded in the audit trail."""
    try:
        filters = AlertFilter(status=status, severity=severity, rule_id=rule_id, actor=actor,
                              since=since, until=until)
    except ValidationFailed as exc:
        fail(_invalid(exc))
    found: list[dict[str, Any]] = []
    with components(ctx) as built, acting_as(operator_context("alerts listed by an operator")):
        desk = _desk(built)
        cursor = None
        while len(found) < limit:
            page = desk.list_alerts(operator_actor(), filters, limit=min(200, limit - len(found)),
                                            cursor=cursor)
            found.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    if as_json:
        for record in found:
            click.echo(json.dumps(_shown(record), sort_keys=True))
        return
    if not found:
        click.echo("no alerts")
        return
    for record in found:
        click.echo(f"{record['id']}  {record['raised_at']}  {record['severity']:<8}  {record['rule_id']:<24}  "
                   f"{record['status']:<12}  {record.get('actor_id') or '-'}  {record['summary']}")


@alerts_group.command("ack")
@click.argument("alert_id")
@click.option("--note", required=True, help="What was found or done (kept in the audit trail).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def acknowledge(ctx: click.Context, alert_id: str, note: str, as_json: bool) -> None:
    """Acknowledge an alert with a note, as operator:<user>@<host>."""
    with components(ctx) as built, acting_as(operator_context("alert acknowledged by an operator")):
        try:
            record = _desk(built).acknowledge(operator_actor(), alert_id, note)
        except AlertNotFound:
            fail("no such alert", EXIT_CHECK_FAILED)
        except AlertAlreadyAcknowledged as exc:
            fail(str(exc), EXIT_CHECK_FAILED)
        except ValidationFailed as exc:
            fail(_invalid(exc))
    if as_json:
        click.echo(json.dumps(_shown(record), sort_keys=True))
    else:
        click.echo(f"acknowledged {record['id']} as {record['acknowledged_by']}")


@alerts_group.command("dead-letters")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def dead_letters(ctx: click.Context, as_json: bool) -> None:
    """Webhook deliveries that failed every attempt (redeliver them with `redeliver ID`)."""
    with components(ctx) as built, acting_as(operator_context("webhook dead letters listed by an operator")):
        found = _desk(built).dead_letters(operator_actor())
    if as_json:
        for item in found:
            click.echo(json.dumps(item, sort_keys=True))
        return
    if not found:
        click.echo("no dead letters")
    for item in found:
        since = datetime.fromtimestamp(item["dead_since"], UTC).isoformat(timespec="seconds")
        click.echo(f"{item['alert_id']}  {item['target']}  {item['attempts']} attempts  "
                   f"last error: {item['last_error']}  since {since}")


@alerts_group.command("redeliver")
@click.argument("alert_id")
@click.pass_context
def redeliver(ctx: click.Context, alert_id: str) -> None:
    """Send an alert's dead webhook deliveries again (the request is recorded on the alert)."""
    with components(ctx) as built, acting_as(operator_context("webhook redelivery by an operator")):
        try:
            queued = _desk(built).redeliver(operator_actor(), alert_id)
        except AlertNotFound:
            fail("no such alert", EXIT_CHECK_FAILED)
    if not queued:
        fail(f"alert {alert_id} has no dead webhook delivery", EXIT_CHECK_FAILED)
    click.echo(f"queued {queued} delivery(ies) of {alert_id}; a running dispatcher sends them within a second")
