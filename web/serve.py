"""`strongroom serve` (placeholder until the web helper lands)."""

from __future__ import annotations

import click


@click.command()
def serve_command() -> None:
    """Serve the HTTPS JSON API."""
    raise click.ClickException("not yet available")
