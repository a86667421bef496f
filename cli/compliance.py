"""`strongroom compliance inventory` (R5.1): the record of processing activities."""

from __future__ import annotations

import json

import click

from domain.catalogue import FIELDS


@click.group("compliance")
def compliance_group() -> None:
    """Privacy and compliance records."""


@compliance_group.command("inventory")
@click.option("--json", "as_json", is_flag=True)
def inventory_command(as_json: bool) -> None:
    """The record of processing activities (GDPR Art. 30) from the field catalogue."""
    rows = [
        {"field": f.name, "classification": str(f.classification), "purpose": f.purpose,
         "legal_basis": f.legal_basis, "retention": f.retention, "key": str(f.key),
         "blind_index": f.searchable}
        for f in FIELDS
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Record of processing activities (GDPR Art. 30)")
    for column in ("field", "classification", "purpose", "legal basis", "retention", "key"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["field"], row["classification"], row["purpose"], row["legal_basis"],
                      row["retention"], row["key"])
    Console(width=200).print(table)
