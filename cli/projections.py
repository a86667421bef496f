"""`strongroom projections rebuild` and `strongroom worker`: the read models (R1.3, R7.4)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from datetime import datetime
from collections.abc import Callable
from typing import NoReturn

import click

from cli.context import EXIT_USAGE, ISO_TIME, components, fail
from infrastructure.composition import ConfigurationError, webhook_dispatcher
from infrastructure.logs import WORKER_LOGGER, configure_process_logging

log = logging.getLogger(WORKER_LOGGER)


@click.group("projections")
def projections_group() -> None:
    """Read models projected from the log."""


@projections_group.command("rebuild")
@click.option("--position", type=int, help="Rebuild up to this log position.")
@click.option("--to", "when", type=ISO_TIME, help="Rebuild up to this time (ISO-8601; UTC if no zone).")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes, the log partitioned by customer (default: the number of cores).")
@click.pass_context
def rebuild(ctx: click.Context, position: int | None, when: datetime | None, jobs: int | None) -> None:
    """Empty the read models and project the log again, with a progress bar.

    A rebuild killed part-way resumes when run again with the same --jobs."""
    from infrastructure.partitioned_rebuild import RebuildInterrupted, default_jobs

    from rich.progress import Progress

    if position is not None and when is not None:
        fail("give --position or --to, not both")
    with components(ctx) as built:
        operations = built.operations
        upto = operations.position_at(when) if when is not None else position
        total = upto if upto is not None else operations.log_head()
        with Progress(transient=True) as progress:
            task = progress.add_task("projecting", total=total)
            try:
                rebuilt = operations.rebuild_read_models(upto, progress=lambda n: progress.advance(task, n),
                                                         jobs=jobs or default_jobs())
            except RebuildInterrupted as exc:
                fail(str(exc))
        click.echo(f"rebuilt read models from {rebuilt.events} events (position {rebuilt.position})")


def _refuse(message: str) -> NoReturn:
    """The worker's `fail`: the same message and exit status, as a JSON log line."""
    log.error(message)
    sys.exit(EXIT_USAGE)


@click.command("worker")
@click.option("--webhooks", is_flag=True,
              help="Deliver alerts to the configured webhooks instead of projecting (issue 12).")
@click.option("--monitor", "monitor", is_flag=True,
              help="Run the monitor (R3.6) instead: follow the log, raise alerts, apply responses.")
@click.pass_context
def worker_command(ctx: click.Context, webhooks: bool, monitor: bool) -> None:
    """Run projections apart from the API (PostgreSQL, STRONGROOM_PROJECTION=worker);
    with --monitor, the monitor (PostgreSQL; on SQLite it runs inside `serve`);
    with --webhooks, the webhook delivery."""
    # Every line the worker writes is JSON, like the server's (R7.3).
    configure_process_logging()
    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    if webhooks and monitor:
        _refuse("give --monitor or --webhooks, not both: --monitor delivers webhooks too")
    if webhooks:
        run_webhooks(ctx, lambda: stopping["now"])
        return
    if monitor:
        from cli.monitor import run_monitor

        run_monitor(ctx, stop=lambda: stopping["now"], refuse=_refuse)
        return
    with components(ctx, refuse=_refuse) as built:
        log.info("worker following the log",
                    extra={"fields": {"position": built.operations.read_model_position()}})
        # R5.3 (issue 13): overdue data-subject requests raise their alerts from here.
        from cli.requests import watch_deadlines

        deadlines_stop = threading.Event()
        watch_deadlines(built, deadlines_stop, log)
        try:
            built.operations.follow_log(stop=lambda: stopping["now"])
        except KeyboardInterrupt:
            pass
        finally:
            deadlines_stop.set()


def run_webhooks(ctx: click.Context, stop: Callable[[], bool]) -> None:
    """`strongroom worker --webhooks`: deliver alerts until stopped (R3.6). Any number may
    run on one PostgreSQL (rows are leased, infrastructure/webhooks.py); on SQLite,
    `strongroom serve` starts exactly one."""
    with components(ctx, refuse=_refuse) as built:
        try:
            dispatcher = webhook_dispatcher(built)
        except ConfigurationError as exc:
            _refuse(str(exc))
        if dispatcher is None:
            _refuse("no webhook is configured (webhook_urls): nothing to deliver")
        log.info("webhook dispatcher delivering alerts", extra={"fields": {"dispatcher": repr(dispatcher)}})
        try:
            dispatcher.run_forever(stop)
        except KeyboardInterrupt:
            pass
