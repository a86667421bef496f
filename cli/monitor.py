"""`strongroom monitor rules` and the monitor process behind `strongroom worker --monitor` (R3.6, R7.4)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import NoReturn

import click

from cli.context import components, load_settings
from infrastructure.composition import ConfigurationError, monitor_hours, monitor_rules, webhook_dispatcher
from infrastructure.logs import WORKER_LOGGER
from infrastructure.sql import is_postgres

log = logging.getLogger(WORKER_LOGGER)
# LISTEN wakes the monitor at each write; this poll only covers a missed notification.
FALLBACK_POLL_SECONDS = 5.0


@click.group("monitor")
def monitor_group() -> None:
    """The monitor: rules over the event log, alerts and responses (R3.6)."""


@monitor_group.command("rules")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the rules and the business hours.")
@click.pass_context
def rules_command(ctx: click.Context, as_json: bool) -> None:
    """The active rules: thresholds, windows, severities, responses, and business hours."""
    settings = load_settings(ctx)
    rules, hours = monitor_rules(settings), monitor_hours(settings)
    if as_json:
        click.echo(json.dumps({"rules": [r.as_json() for r in rules], "business_hours": hours.as_json()}, indent=2))
        return
    click.echo(f"{'rule':28} {'severity':9} {'threshold':>9} {'window':>8}  responses")
    for rule in rules:
        window = f"{rule.window_seconds:g}s" if rule.window_seconds else "-"
        state = "" if rule.enabled else "  (disabled)"
        click.echo(f"{rule.id:28} {rule.severity:9} {rule.threshold:>9} {window:>8}  "
                   f"{','.join(rule.responses)}{state}")
    shown = hours.as_json()
    click.echo(f"business hours: {shown['start']}-{shown['end']} {','.join(shown['days'])} ({shown['time_zone']})")


def run_monitor(ctx: click.Context, *, stop: Callable[[], bool], refuse: Callable[[str], NoReturn]) -> None:
    """The monitor as its own process on PostgreSQL, woken by the insert function's
    NOTIFY, with a slow poll as a fallback (infrastructure/monitor.py)."""
    from infrastructure.monitor import Listener, build_monitor

    settings = load_settings(ctx)
    if not is_postgres(settings.database_url):
        refuse("on SQLite the monitor runs inside `strongroom serve`; `worker --monitor` needs PostgreSQL")
    with components(ctx, refuse=refuse) as built:
        # Webhooks go out from this process too, woken as each alert commits (the
        # dispatcher registers itself on the app's alert listeners), so an alert reaches
        # its receivers within the same two seconds. More `worker --webhooks` processes
        # may run beside it: deliveries are leased (infrastructure/webhooks.py).
        try:
            dispatcher = webhook_dispatcher(built)
        except ConfigurationError as exc:
            refuse(str(exc))
        delivering = None
        if dispatcher is not None:
            delivering = threading.Thread(target=dispatcher.run_forever, args=(stop,), name="webhooks", daemon=True)
            delivering.start()
        monitor = build_monitor(built)
        listener = Listener(settings.database_url, built.app.recorder.channel_name)
        log.info("monitor following the log", extra={"fields": {"position": monitor.store.position(),
                                                                "webhooks": dispatcher is not None}})
        try:
            monitor.run_forever(stop=stop, wait=listener.wait, idle_wait=FALLBACK_POLL_SECONDS)
        except KeyboardInterrupt:
            pass
        finally:
            listener.close()
            if delivering is not None:
                delivering.join(timeout=10)
