"""`strongroom projections rebuild` and `strongroom worker`: the read models (R1.3, R7.4)."""

from __future__ import annotations

import signal
from datetime import datetime

import click

from cli.context import ISO_TIME, components, fail


@click.group("projections")
def projections_group() -> None:
    """Read models projected from the log."""


@projections_group.command("rebuild")
@click.option("--position", type=int, help="Rebuild up to this log position.")
@click.option("--to", "when", type=ISO_TIME, help="Rebuild up to this time (ISO-8601; UTC if no zone).")
@click.pass_context
def rebuild(ctx: click.Context, position: int | None, when: datetime | None) -> None:
    """Empty the read models and project the log again, with a progress bar."""
    from rich.progress import Progress

    if position is not None and when is not None:
        fail("give --position or --to, not both")
    with components(ctx) as built:
        operations = built.operations
        upto = operations.position_at(when) if when is not None else position
        total = upto if upto is not None else operations.log_head()
        with Progress(transient=True) as progress:
            task = progress.add_task("projecting", total=total)
            rebuilt = operations.rebuild_read_models(upto, progress=lambda n: progress.advance(task, n))
        click.echo(f"rebuilt read models from {rebuilt.events} events (position {rebuilt.position})")


@click.command("worker")
@click.pass_context
def worker_command(ctx: click.Context) -> None:
    """Run projections apart from the API (PostgreSQL, STRONGROOM_PROJECTION=worker)."""
    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    with components(ctx) as built:
        click.echo(f"worker following the log from position {built.operations.read_model_position()}")
        try:
            built.operations.follow_log(stop=lambda: stopping["now"])
        except KeyboardInterrupt:
            pass
