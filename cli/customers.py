"""`strongroom customers import | show | find | erase | revert` (R1.3, R4.5, R5.4).

Import parses each line with the API's own schema (`web.schemas`), so a customer is
the same thing whichever door it came in by.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from marshmallow import ValidationError

from application.context import acting_as
from application.errors import CustomerErased, CustomerNotFound, ProjectionLagging, ValidationFailed
from cli.context import (
    EXIT_CHECK_FAILED,
    ISO_TIME,
    PURPOSE,
    PURPOSE_HELP,
    components,
    fail,
    operator_actor,
    operator_context,
)
from domain.errors import DomainError
from domain.free_text import card_data_in
from domain.values import normalise_required_text
from infrastructure.composition import Components
from web.schemas import CustomerCreateSchema, flatten_errors


@click.group("customers")
def customers_group() -> None:
    """Import, show, find, erase and revert customers."""


# An import line's outcome: the customer's id, whether this run created it, and whether
# it is in the log but not yet in the read model (a projection worker catching up, R7.4).
Imported = tuple[str | None, bool, bool]


def _import_line(built: Components, text: str, portfolio: str | None,
                 batch: str) -> tuple[dict[str, list[str]] | None, Imported]:
    """Import one JSON line: (errors or None, its outcome).

    The line is registered at most once whatever happens to the run: the application
    keys it by its batch name and content, so a rerun finds the customer the first
    run made (R7.6).
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        return {"_line": ["not valid JSON"]}, (None, False, False)
    if not isinstance(raw, dict):
        return {"_line": ["must be a JSON object"]}, (None, False, False)
    if portfolio is not None and "portfolio" not in raw:
        raw["portfolio"] = portfolio
    try:
        fields = CustomerCreateSchema().load(raw)
    except ValidationError as exc:
        return flatten_errors(exc.messages), (None, False, False)
    try:
        customer_id, created = built.app.import_customer(fields, batch=batch)
    except DomainError as exc:
        return {exc.field or "_line": [exc.rule]}, (None, False, False)
    except ProjectionLagging as lagging:
        # Imported: in the log, and the worker will project it (R7.4).
        return None, (next(iter(lagging.subject_ids), None), True, True)
    return None, (customer_id, created, False)


def _stated_purpose(purpose: str | None) -> str | None:
    """A `--purpose` as the API takes `X-Purpose`: 1 to 200 printable characters, no
    card data (it is kept under the system key, never destroyed); None when not given."""
    if purpose is None:
        return None
    try:
        text = normalise_required_text(purpose, "purpose", max_length=200)
    except DomainError as exc:
        fail(f"--purpose {exc.rule}")
    if card_data_in(text) is not None:
        fail("--purpose must not contain card data")
    return text


@customers_group.command("import")
@click.argument("file", type=click.File("r"))
@click.option("--portfolio", help="Portfolio for lines that name none.")
@click.option("--purpose", help="Why these customers are imported (no personal data): the purpose of "
                                "every change the import writes, kept in the audit trail.")
@click.option("--batch", default="", help="A name for this file's lines: the same line under another batch "
                                          "name is another customer. Default: none (a line is its own key).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def import_customers(ctx: click.Context, file: Any, portfolio: str | None, purpose: str | None, batch: str,
                     as_json: bool) -> None:
    """Import customers from JSON lines, one customer each.

    Valid lines are imported; each rejected line is reported by number and reason,
    never by its values, and leaves nothing behind. Each line is imported at most once:
    running the same file again (after a crash, say, within 24 hours) creates nothing
    twice and reports the customers the first run made as reused. `--json` reports,
    per line, the id created or reused. Exit 1 if any line was rejected.
    """
    stated = _stated_purpose(purpose)
    lines: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    catching_up = 0
    with components(ctx) as built, acting_as(
            operator_context("customer import" if stated is None else f"customer import: {stated}")):
        for number, text in enumerate(file, start=1):
            if not text.strip():
                continue
            errors, (customer_id, created, lagging) = _import_line(built, text, portfolio, batch)
            if errors is None:
                lines.append({"line": number, "id": customer_id, "outcome": "created" if created else "reused"})
                catching_up += lagging
            else:
                rejected.append({"line": number, "errors": errors})
    imported = sum(1 for item in lines if item["outcome"] == "created")
    reused = len(lines) - imported
    if as_json:
        click.echo(json.dumps({"imported": imported, "reused": reused, "rejected": rejected, "lines": lines,
                               "read_model_catching_up": catching_up}))
    else:
        click.echo(f"imported {imported}, reused {reused}, rejected {len(rejected)}")
        if catching_up:
            click.echo(f"  {catching_up} imported but not yet in the read model: the worker is catching up")
        for item in rejected:
            reasons = "; ".join(f"{f}: {', '.join(r)}" for f, r in item["errors"].items())
            click.echo(f"  line {item['line']}: {reasons}")
    if rejected:
        sys.exit(EXIT_CHECK_FAILED)


@customers_group.command("show")
@click.argument("customer_id")
@click.option("--purpose", required=True, type=PURPOSE, help=PURPOSE_HELP)
@click.pass_context
def show_customer(ctx: click.Context, customer_id: str, purpose: str) -> None:
    """Print one customer's whole record as JSON, every value in full.

    The operator holds the KEK, so nothing is masked; instead the read needs a stated
    --purpose and is recorded as a reveal of every field shown, naming
    operator:<user>@<host> and the purpose, as an API reveal is (`audit replay
    --customer ID` shows it). An absent or erased id is recorded too (exit 1).
    """
    with components(ctx) as built, acting_as(operator_context(purpose)):
        try:
            record = built.customers.operator_read(operator_actor(), customer_id, purpose)
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
@click.option("--purpose", required=True, type=PURPOSE, help=PURPOSE_HELP)
@click.pass_context
def find_customers(ctx: click.Context, purpose: str, **criteria: str | None) -> None:
    """Print the ids of customers matching one exact value (blind index).

    A match confirms the value, so a search needs a stated --purpose and leaves one
    access record (kind `search`, naming operator:<user>@<host>, the field searched by,
    the purpose and the ids found) whether or not anything matched.
    """
    given = {k: v for k, v in criteria.items() if v}
    if len(given) != 1:
        fail("give exactly one of --email, --phone, --national-id, --pan")
    (field, value), = given.items()
    with components(ctx) as built, acting_as(operator_context(purpose)):
        try:
            found = built.customers.operator_search(operator_actor(), field, value, purpose)
        except DomainError as exc:
            fail(str(exc))
        for customer_id in found:
            click.echo(customer_id)


@customers_group.command("erase")
@click.argument("customer_id")
@click.option("--reason", required=True, help="Why (no personal data): kept in the audit trail.")
@click.option("--certificate", "certificate_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the signed erasure certificate (JSON) here, for the customer and auditors.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def erase_customer(ctx: click.Context, customer_id: str, reason: str, certificate_path: Path | None,
                   as_json: bool) -> None:
    """Crypto-shred a customer under R5.4's rules: the profile key goes now; under an AML
    hold the KYC key is kept, restricted, until the hold ends. Issues a signed certificate."""
    with components(ctx) as built, acting_as(operator_context(f"erasure: {reason}")):
        try:
            result = built.erasures.erase(customer_id, reason)
        except CustomerNotFound as exc:
            fail(str(exc), EXIT_CHECK_FAILED)
    certificate = result.pop("certificate")
    if certificate_path is not None:
        certificate_path.write_text(json.dumps(certificate, indent=2, sort_keys=True) + "\n")
    if as_json:
        click.echo(json.dumps({**result, "certificate": certificate}))
    else:
        click.echo(f"erased {customer_id}: keys destroyed {', '.join(result['keys_destroyed'])}")
        for kind, holds in result["kept"].items():
            click.echo(f"  {kind} key kept ({', '.join(holds)}) until {result['hold_until']}: restricted to "
                       "compliance officers; the retention run destroys it when the hold ends")
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
