"""`strongroom keys status`: the KEK in use and the data keys by state (R1.4, R5.4)."""

from __future__ import annotations

import json
from typing import Any

import click

from cli.context import components


@click.group("keys")
def keys_group() -> None:
    """The KEK and the data keys."""


@keys_group.command("status")
@click.option("--customer", help="Show one customer's keys.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_status(ctx: click.Context, customer: str | None, as_json: bool) -> None:
    """Which KEK is in use and how many data keys are active or destroyed."""
    with components(ctx) as built:
        status: dict[str, Any] = {"key_provider": built.settings.key_provider,
                                  **built.operations.key_status(customer)}
    if as_json:
        click.echo(json.dumps(status))
    else:
        for key, value in status.items():
            click.echo(f"{key}: {value}")
