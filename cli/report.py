"""`strongroom report NAME [--since T] [--until T] [--format json|csv]` (R6.1).

The operator reads the internal-audit reports of application/reports.py; the read is
recorded as the operator's (`audit_read`, `report:NAME`). Output holds no personal
data: staff ids and usernames, role and portfolio names, counts, times.
"""

from __future__ import annotations

from datetime import datetime

import click

from application.context import acting_as
from application.errors import ValidationFailed
from application.reports import FORMATS, REPORTS, render
from cli.context import ISO_TIME, components, fail, operator_context


@click.command("report")
@click.argument("name", type=click.Choice(sorted(REPORTS)))
@click.option("--since", type=ISO_TIME, help="Window start (ISO-8601; UTC if no zone).")
@click.option("--until", type=ISO_TIME, help="Window end (ISO-8601; UTC if no zone).")
@click.option("--format", "output", type=click.Choice(FORMATS), default="json", show_default=True)
@click.pass_context
def report_command(ctx: click.Context, name: str, since: datetime | None, until: datetime | None,
                   output: str) -> None:
    """An internal-audit report over [since, until], computed from the event log."""
    with components(ctx) as built, acting_as(operator_context(f"report {name}")):
        try:
            report = built.reports.report(None, name, since=since, until=until)
        except ValidationFailed as exc:
            fail(str(exc))
    click.echo(render(report, output), nl=False)
