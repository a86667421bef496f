"""`strongroom serve`: the HTTPS JSON API under gunicorn (R1.6, R7.4).

There is no plain-HTTP mode: without a certificate and key the command refuses to
start. TLS is 1.2 at least, with Mozilla's "intermediate" ciphers for 1.2 (1.3
suites are all sound and left to OpenSSL) and its groups for the key exchange. Each worker builds its own app after
the fork, so workers share nothing but the database.
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import stat
import subprocess  # nosec B404 - starts our own webhook dispatcher
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from cli.context import EXIT_USAGE, instance_of, require_store
from cli.metrics_folders import make_metrics_folder, remove_stale_metrics_folders
from infrastructure.composition import ConfigurationError, Settings
from infrastructure.logs import SERVE_LOGGER, configure_process_logging
from infrastructure.sql import is_postgres
from infrastructure.tls import restrict_groups
from infrastructure.webhooks import WebhookRefused, read_secret

# Everything `serve` writes is a JSON log line on stderr (R7.3), its own start-up
# lines and refusals included: a log collector reading the stream never meets a
# line in another format. There is no separate banner.
log = logging.getLogger(SERVE_LOGGER)

# Mozilla server-side TLS, "intermediate" profile (v5.7), TLS 1.2 suites.
INTERMEDIATE_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])


def tls_context(config: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """gunicorn's `ssl_context` hook: certificate and key from the config, our protocol floor."""
    context = default_ssl_context_factory()
    # TLS 1.0 and 1.1 are broken (BEAST, weak MACs) and forbidden by PCI DSS.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(INTERMEDIATE_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION  # CRIME
    restrict_groups(context)  # X25519, prime256v1, secp384r1: no X448, P-521 or FFDHE
    return context


def refuse(message: str) -> NoReturn:
    """serve's `fail`: the same one line and exit status, as a JSON log line."""
    log.error(message)
    sys.exit(EXIT_USAGE)


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _remove_metrics_dir(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def _watch_privacy_deadlines(worker: Any) -> None:
    # R5.3 (issue 13): each worker checks data-subject request deadlines hourly; the
    # alert ids are deterministic, so several workers never raise one twice.
    import threading

    from cli.requests import watch_deadlines

    app = getattr(worker, "wsgi", None)
    if app is not None and "strongroom" in getattr(app, "extensions", {}):
        watch_deadlines(app.extensions["strongroom"], threading.Event(), log)


def _mark_worker_dead(_arbiter: Any, worker: Any) -> None:
    # A dead worker's counters stay in the sum, but its live gauges must go.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _watch_deadlines_and_monitor(worker: Any) -> None:
    """SQLite: each worker watches request deadlines and offers to run the monitor.
    (gunicorn takes one `post_worker_init`; setting it twice kept only the last.)"""
    _watch_privacy_deadlines(worker)
    _start_monitor(worker)


def _start_monitor(worker: Any) -> None:
    """On SQLite (whose recorder cannot notify a separate process), the monitor runs
    as a thread of the server (issue 12, R3.6): every worker offers to run it, and a
    file lock lets exactly one of them do so at a time (infrastructure/monitor.py)."""
    from infrastructure.monitor import InProcessMonitor

    built = worker.wsgi.extensions["strongroom"]
    InProcessMonitor(built, built.settings.instance / "monitor.lock").start()


class StrongroomServer:
    """A gunicorn application whose workers each call `create_app(config)` after the fork."""

    def __init__(self, config: dict[str, Any], options: dict[str, Any]) -> None:
        from gunicorn.app.base import BaseApplication

        app_config = config

        class _Application(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                for name, value in options.items():
                    self.cfg.set(name, value)

            def load(self) -> Any:
                from web import create_app

                return create_app(app_config)

        self.application = _Application()

    def run(self) -> None:
        self.application.run()


def gunicorn_logger_class() -> type:
    """gunicorn's own log lines as JSON, with query strings blanked and no traces."""
    from gunicorn.glogging import Logger

    from infrastructure.logs import JsonFormatter

    class JsonLogger(Logger):  # type: ignore[misc]
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())

    return JsonLogger


def _check_tls_files(settings: Settings) -> tuple[Path, Path]:
    cert, key = settings.tls_cert, settings.tls_key
    for what, path in (("certificate", cert), ("private key", key)):
        if not path.is_file():
            refuse(f"TLS {what} not found at {path}; run `strongroom init` or set "
                 f"STRONGROOM_TLS_{'CERT' if what == 'certificate' else 'KEY'} "
                 "(there is no plain-HTTP mode)")
    if key.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        message = f"TLS private key {key} can be read by other users; chmod 600 it"
        if settings.environment == "production":
            refuse(message)
        log.warning(message)
    try:
        probe = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        probe.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except (ssl.SSLError, OSError) as exc:
        refuse(f"cannot load the TLS certificate and key ({type(exc).__name__}): {cert}, {key}")
    return cert, key


def _start_webhook_dispatcher(settings: Settings) -> subprocess.Popen[bytes] | None:
    """On SQLite, the one webhook dispatcher (issue 12, R3.6): `strongroom worker
    --webhooks` as a child of the master, so exactly one process delivers however many
    API workers serve. On PostgreSQL run `strongroom worker --webhooks` apart (as many
    as wanted: deliveries are leased). A missing secret stops serve here, not later."""
    if not settings.webhook_urls or is_postgres(settings.database_url):
        return None
    try:
        read_secret(settings.webhook_secret_file)
    except WebhookRefused as exc:
        refuse(str(exc))
    script = Path(sys.executable).with_name("strongroom")
    entry = [str(script)] if script.exists() else [sys.executable, "-c", "from cli.main import run; run()"]
    command = [*entry, "--instance", str(settings.instance), "worker", "--webhooks"]
    child = subprocess.Popen(command)  # nosec B603 - our own entry point, no shell, no outside input
    log.info("webhook dispatcher started", extra={"fields": {"pid": child.pid}})
    return child


def _stop(child: subprocess.Popen[bytes] | None) -> None:
    if child is None:
        return
    child.terminate()
    try:
        child.wait(10)
    except subprocess.TimeoutExpired:
        child.kill()


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8443, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes; each builds its own app.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Threads per worker.")
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int, workers: int, threads: int) -> None:
    """Serve the HTTPS JSON API (TLS 1.2+ only; no plain-HTTP mode)."""
    from web.app import build_components

    configure_process_logging()
    try:
        settings = Settings.load(instance_of(ctx))
    except ConfigurationError as exc:
        refuse(str(exc))
    require_store(settings, refuse)
    cert, key = _check_tls_files(settings)

    master_pid = os.getpid()
    # A master killed outright could not remove its folder: clear those now.
    stale = remove_stale_metrics_folders()
    if stale:
        log.info(f"removed {len(stale)} metrics folder(s) left by stopped servers",
                 extra={"fields": {"removed": [str(folder) for folder in stale]}})
    own_metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_metrics_dir = make_metrics_folder()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_metrics_dir
    if "prometheus_client" in sys.modules:  # pragma: no cover - a host imported it first
        log.warning("prometheus_client was loaded before the workers; /metrics will count per worker")

    # Build once here, before any worker exists: a wrong KEK or an unreachable
    # database stops the command with one clear line, and the schema is created
    # once rather than raced by every worker. (build_components does not load
    # prometheus_client, so the workers still choose its mode after the fork.)
    config: dict[str, Any] = {"instance": str(settings.instance)}
    try:
        build_components(config).close()
    except ConfigurationError as exc:
        _remove_metrics_dir(own_metrics_dir)
        refuse(str(exc))

    options = {
        "bind": _bind(host, port),
        "workers": workers,
        # gthread, whose own error pages carry our security headers and no Server banner.
        "worker_class": "cli.serve_worker.StrongroomWorker",
        "threads": threads,
        "certfile": str(cert),
        "keyfile": str(key),
        "ssl_context": tls_context,
        "ciphers": INTERMEDIATE_CIPHERS,
        "timeout": 30,
        "graceful_timeout": 30,
        "keepalive": 5,
        "preload_app": False,  # each worker builds its own app after the fork
        "accesslog": None,  # the app writes its own request lines, without query strings
        "errorlog": "-",
        "loglevel": "info",
        "logger_class": gunicorn_logger_class(),
        "proc_name": "strongroom",
        # gunicorn's runtime control socket can add workers or stop the server;
        # nothing here needs it, so it is not opened at all.
        "control_socket_disable": True,
        "child_exit": _mark_worker_dead,
        "post_worker_init": _watch_privacy_deadlines,
    }
    webhooks = _start_webhook_dispatcher(settings)
    if not is_postgres(settings.database_url):
        options["post_worker_init"] = _watch_deadlines_and_monitor  # on PostgreSQL: `worker --monitor`
    log.info(f"serving https://{_bind(host, port)} with {workers} worker(s)",
             extra={"fields": {"url": f"https://{_bind(host, port)}", "workers": workers, "threads": threads}})
    try:
        StrongroomServer({**config, "create_schema": False}, options).run()
    finally:
        # Workers are forked inside run() and unwind through here too: only the
        # master may remove the metrics folder the workers share.
        if os.getpid() == master_pid:
            _remove_metrics_dir(own_metrics_dir)
            _stop(webhooks)
