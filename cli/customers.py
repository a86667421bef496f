"""`strongroom customers import | show | find | erase | revert` (R1.3, R4.5, R5.4).

Import parses each line with the API's own schema (`web.schemas`), so a customer is
the same thing whichever door it came in by.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click
from marshmallow import ValidationError

from application.context import acting_as
from application.errors import CustomerErased, CustomerNotFound, ProjectionLagging, ValidationFailed
from cli.context import EXIT_CHECK_FAILED, ISO_TIME, components, fail, operator_context
from domain.errors import DomainError
from infrastructure.composition import Components
from web.schemas import CustomerCreateSchema, flatten_errors


@click.group("customers")
def customers_group() -> None:
    """Import, show, find, erase and revert customers."""


# What `_import_line` answers for a line that is in the log but not yet in the read model.
CATCHING_UP: dict[str, list[str]] = {}


def _import_line(built: Components, text: str, portfolio: str | None) -> dict[str, list[str]] | None:
    """Import one JSON line; returns the errors (field -> reasons), None on success, or
    CATCHING_UP when it is imported and the projection worker has yet to reach it."""
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
    except ProjectionLagging:
        return CATCHING_UP  # imported: in the log, and the worker will project it (R7.4)
    return None


@customers_group.command("import")
@click.argument("file", type=click.File("r"))
@click.option("--portfolio", help="Portfolio for lines that name none.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def import_customers(ctx: click.Context, file: Any, portfolio: str | None, as_json: bool) -> None:
    """Import customers from JSON lines, one customer each.

    Valid lines are imported; each rejected line is reported by number and reason,
    never by its values, and leaves nothing behind. Exit 1 if any line was rejected.
    """
    imported, catching_up, rejected = 0, 0, []
    with components(ctx) as built, acting_as(operator_context("customer import")):
        for number, text in enumerate(file, start=1):
            if not text.strip():
                continue
            errors = _import_line(built, text, portfolio)
            if errors is CATCHING_UP:
                imported += 1
                catching_up += 1
            elif errors is None:
                imported += 1
            else:
                rejected.append({"line": number, "errors": errors})
    if as_json:
        click.echo(json.dumps({"imported": imported, "rejected": rejected, "read_model_catching_up": catching_up}))
    else:
        click.echo(f"imported {imported}, rejected {len(rejected)}")
        if catching_up:
            click.echo(f"  {catching_up} imported but not yet in the read model: the worker is catching up")
        for item in rejected:
            reasons = "; ".join(f"{f}: {', '.join(r)}" for f, r in item["errors"].items())
            click.echo(f"  line {item['line']}: {reasons}")
    if rejected:
        sys.exit(EXIT_CHECK_FAILED)


@customers_group.command("show")
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
            fail(str(exc), EXIT_CHECK_FAILED)
        click.echo(json.dumps(record, default=str))


@customers_group.command("find")
@click.option("--email")
@click.option("--phone")
@click.option("--national-id")
@click.option("--pan")
@click.pass_context
def find_customers(ctx: click.Context, **criteria: str | None) -> None:
    """Print the ids of customers matching one exact value (blind index)."""
    given = {k: v for k, v in criteria.items() if v}
    if len(given) != 1:
        fail("give exactly one of --email, --phone, --national-id, --pan")
    (field, value), = given.items()
    with components(ctx) as built:
        try:
            found = built.app.find_customers(field, value)
        except DomainError as exc:
            fail(str(exc))
        for record in found:
            click.echo(record["id"])


@customers_group.command("erase")
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
            fail(str(exc), EXIT_CHECK_FAILED)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"erased {customer_id}: keys destroyed {', '.join(result['keys_destroyed'])}")
        if not result["read_model_purged"]:
            click.echo("  the read model is catching up: the worker purges it when it gets there")


@customers_group.command("revert")
@click.argument("customer_id")
@click.option("--to", "when", required=True, type=ISO_TIME,
              help="The past moment to bring the record back to (ISO-8601; UTC if no zone).")
@click.option("--reason", required=True, help="Why (no personal data): kept in the audit trail.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def revert_customer(ctx: click.Context, customer_id: str, when: datetime, reason: str, as_json: bool) -> None:
    """Append compensating events that bring a customer back to its state at --to (R4.5)."""
    with components(ctx) as built, acting_as(operator_context(f"revert: {reason}")):
        try:
            record = built.app.revert_customer(customer_id, when, reason)
        except ProjectionLagging as lag:
            # Committed: only the read model is behind. Not a failure, and not retried.
            if as_json:
                click.echo(json.dumps({"id": customer_id, "accepted_at_position": lag.position,
                                       "reverted_to": when.isoformat(), "read_model": "catching up"}))
            else:
                click.echo(f"reverted {customer_id} to its state at {when.isoformat()} (accepted at log "
                           f"position {lag.position}; the read model is catching up)")
            return
        except CustomerErased:
            fail(f"customer {customer_id} has been erased; an erasure is never undone", EXIT_CHECK_FAILED)
        except CustomerNotFound as exc:
            fail(str(exc), EXIT_CHECK_FAILED)
        except (ValidationFailed, DomainError) as exc:
            fail(str(exc), EXIT_CHECK_FAILED)
    if as_json:
        click.echo(json.dumps({"id": record["id"], "version": record["version"], "reverted_to": when.isoformat()}))
    else:
        click.echo(f"reverted {record['id']} to its state at {when.isoformat()} (now version {record['version']})")
