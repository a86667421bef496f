"""`/healthz` (the process answers) and `/readyz` (its stores answer too), R7.2.

A load balancer sends traffic only to ready workers, and an orchestrator restarts
only unhealthy ones: so /healthz touches nothing outside the process (a database
outage must not get every API process killed), and /readyz asks each store one
trivial question, within a deadline (`STRONGROOM_READINESS_TIMEOUT`, seconds).

Some faults are worth an operator's attention but no reason to stop traffic: those
are `warnings` in a ready answer (still 200). A checkpoint with no second copy past
its grace period is one: the rows and the checkpoint row are stored and requests are
served correctly; taking every API process out of the load balancer over a full
backup disk would turn a fault in the evidence trail into an outage of the service.
`audit verify` fails on it, and the warning is logged when it appears and clears.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, wait
from typing import Any

from flask import Flask, Response, current_app, g
from marshmallow import Schema, fields

from web.bounded import BoundedCall
from web.errors import RETRY_AFTER_SECONDS, error_response
from infrastructure.logs import ERROR_LOGGER
from web.openapi import Api, Blueprint

log = logging.getLogger(ERROR_LOGGER)

blueprint = Blueprint("operations", __name__, description="Probes for load balancers and orchestrators.")


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["ok"]})


class ReadySchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["ready"]})
    warnings = fields.List(fields.String(), metadata={
        "description": "Present only when something needs an operator but traffic is still safe, "
                       "e.g. signed checkpoints with no second copy past the grace period."})


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


def readiness_warnings(components: Any) -> dict[str, Callable[[], str | None]]:
    """Questions whose answer (a sentence, or None) is reported without stopping traffic."""
    return {
        # Signed checkpoints whose second copy is missing past the grace period (R3.3).
        "checkpoint copies": components.tamper_evidence.copy_warning,
    }


class ReadinessProbe:
    """Asks every dependency at once; the first to fail or overrun the deadline decides."""

    def __init__(self, checks: dict[str, Callable[[], object]], timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 warnings: dict[str, Callable[[], str | None]] | None = None) -> None:
        self.calls = [BoundedCall(name, check, deadline=timeout) for name, check in checks.items()]
        self.warning_calls = [BoundedCall(name, check, deadline=timeout) for name, check in (warnings or {}).items()]
        self.timeout = timeout
        self._warned: dict[str, str] = {}

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

    def warnings(self, timeout: float | None = None) -> list[str]:
        """`name: sentence` for each warning check that has one, within `timeout`.

        A check that fails or overruns repeats its last answer (a slow one answers a
        later probe); the dependency checks report a store that does not answer.
        """
        futures = {call.submit(): call.name for call in self.warning_calls}
        done, _ = wait(futures, timeout=self.timeout if timeout is None else timeout)
        found: dict[str, str] = {}
        for future, name in futures.items():
            if future not in done or future.exception() is not None:
                if name in self._warned:
                    found[name] = self._warned[name]
            elif future.result():
                found[name] = str(future.result())
        for name in sorted(set(found) | set(self._warned)):
            if found.get(name) != self._warned.get(name):  # logged when it appears, changes or clears
                log.warning("readiness warning" if name in found else "readiness warning cleared",
                            extra={"fields": {"check": name, "warning": found.get(name)}})
        self._warned = found
        return [f"{name}: {sentence}" for name, sentence in sorted(found.items())]

    def stop(self) -> None:
        for call in (*self.calls, *self.warning_calls):
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
def readyz() -> Response | dict[str, Any]:
    """The event store, read models and key store all answer, with space left to write
    (and the warnings, if any)."""
    probe: ReadinessProbe = current_app.extensions["strongroom.readiness"]
    started = time.monotonic()
    failed = probe.failure()
    if failed is not None:
        dependency, reason = failed
        log.warning("not ready", extra={"fields": {
            "request_id": g.get("request_id"), "dependency": dependency, "exc_type": reason}})
        response = error_response(503, "not_ready", f"{dependency} unavailable")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    # The warnings share the one deadline: a probe never waits twice.
    warnings = probe.warnings(timeout=max(0.0, probe.timeout - (time.monotonic() - started)))
    return {"status": "ready", "warnings": warnings} if warnings else {"status": "ready"}


def install(app: Flask, api: Api, components: Any) -> ReadinessProbe:
    probe = ReadinessProbe(readiness_checks(components), readiness_timeout(components),
                           readiness_warnings(components))
    app.extensions["strongroom.readiness"] = probe
    api.register_blueprint(blueprint)
    return probe
