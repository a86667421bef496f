"""`strongroom bench` (placeholder until the benchmark helper lands)."""

from __future__ import annotations

import click


@click.command()
def bench_command() -> None:
    """Measure each figure beside its baseline."""
    raise click.ClickException("not yet available")
