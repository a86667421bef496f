"""`/healthz` (the process answers) and `/readyz` (its stores answer too), R7.2.

A load balancer sends traffic only to ready workers, and an orchestrator restarts
only unhealthy ones: so /healthz touches nothing outside the process (a database
outage must not get every API process killed), and /readyz asks each store one
trivial question, within a deadline (`STRONGROOM_READINESS_TIMEOUT`, seconds).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, wait
from typing import Any

from flask import Flask, Response, current_app, g
from marshmallow import Schema, fields

from web.bounded import BoundedCall
from web.errors import RETRY_AFTER_SECONDS, error_response
from web.logs import ERROR_LOGGER
from web.openapi import Api, Blueprint

log = logging.getLogger(ERROR_LOGGER)

blueprint = Blueprint("operations", __name__, description="Probes for load balancers and orchestrators.")


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["ok"]})


class ReadySchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["ready"]})


@blueprint.get("/healthz")
@blueprint.public
@blueprint.response(200, HealthSchema, description="Alive.")
def healthz() -> dict[str, str]:
    """The process is alive (touches no database)."""
    return {"status": "ok"}


DEFAULT_TIMEOUT_SECONDS = 2.0


def readiness_checks(components: Any) -> dict[str, Callable[[], object]]:
    """Each dependency and the trivial question it must answer."""
    return {
        # The event log itself, through the recorder's own connection pool.
        "event store": components.app.recorder.max_notification_id,
        # The read-model tables, on the application's own database handle.
        "read models": components.directory.position,
        # The wrapped data keys, and the KEK that unwraps them (a read; an HSM
        # that stopped answering shows up here, not at the next customer read).
        "key store": components.keyring.check_kek,
        # Every question above is a read, which a full disk still answers; the
        # next write would not (SQLite: the files' file system; R7.6).
        "event store space": components.events_db.check_space,
        "key store space": components.keys_db.check_space,
    }


class ReadinessProbe:
    """Asks every dependency at once; the first to fail or overrun the deadline decides."""

    def __init__(self, checks: dict[str, Callable[[], object]], timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.calls = [BoundedCall(name, check, deadline=timeout) for name, check in checks.items()]
        self.timeout = timeout

    def failure(self) -> tuple[str, str] | None:
        """(dependency, reason type) of the first failure, or None when all answered."""
        futures = {call.submit(): call.name for call in self.calls}
        done, _ = wait(futures, timeout=self.timeout, return_when=FIRST_EXCEPTION)
        for future, name in futures.items():
            if future in done and future.exception() is not None:
                return name, type(future.exception()).__name__
        for future, name in futures.items():
            if future not in done:
                return name, "TimeoutError"
        return None

    def stop(self) -> None:
        for call in self.calls:
            call.stop()


def readiness_timeout(components: Any) -> float:
    try:
        return float(components.settings.readiness_timeout)
    except (TypeError, ValueError):
        return DEFAULT_TIMEOUT_SECONDS


@blueprint.get("/readyz")
@blueprint.public
@blueprint.response(200, ReadySchema, description="Ready for traffic.")
@blueprint.errors(e503="A dependency does not answer (code `not_ready`).")
def readyz() -> Response | dict[str, str]:
    """The event store, read models and key store all answer, with space left to write."""
    probe: ReadinessProbe = current_app.extensions["strongroom.readiness"]
    failed = probe.failure()
    if failed is not None:
        dependency, reason = failed
        log.warning("not ready", extra={"fields": {
            "request_id": g.get("request_id"), "dependency": dependency, "exc_type": reason}})
        response = error_response(503, "not_ready", f"{dependency} unavailable")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return {"status": "ready"}


def install(app: Flask, api: Api, components: Any) -> ReadinessProbe:
    probe = ReadinessProbe(readiness_checks(components), readiness_timeout(components))
    app.extensions["strongroom.readiness"] = probe
    api.register_blueprint(blueprint)
    return probe
