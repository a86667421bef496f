"""The app factory (STYLE 7): one Flask app over one built application.

`create_app` loads the settings (defaults, the instance folder, `STRONGROOM_*`, then
the given mapping), builds the components once and keeps them in
`app.extensions["strongroom"]`. Nothing is built at import time. Under gunicorn each
worker calls it after the fork, so workers share nothing but the database.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Request, Response, current_app, g, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

from infrastructure import logs
from infrastructure.composition import Components, ConfigurationError, Settings, build
from infrastructure.crypto.kek import KekError
from infrastructure.faults import end_deadline, start_deadline
from infrastructure.sql import DatabaseUnavailable
from web import errors, headers, health, openapi

MAX_BODY_BYTES = 1024 * 1024  # 1 MiB: far above any customer record, far below a memory attack

request_log = logging.getLogger(logs.REQUEST_LOGGER)


class JsonRequest(Request):
    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        try:
            return super().get_json(force=force, silent=silent, cache=cache)
        except RecursionError:
            # A body nested deeper than the parser's stack (1 MiB of "[" is enough) is
            # malformed for us: a 400, not a crashed request.
            raise errors.MalformedJson() from None

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is not None:
            # werkzeug's message quotes the decoder's complaint; ours says only what happened.
            raise errors.MalformedJson()
        return super().on_json_loading_failed(e)


class _CloseOnce:
    """Closes the app's resources at process exit, or earlier when asked; never twice."""

    def __init__(self) -> None:
        self.closers: list[Callable[[], None]] = []
        self.closed = False

    def __call__(self) -> None:
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self)
        for close in reversed(self.closers):
            close()


def components() -> Components:
    """The built application of the app handling this request."""
    built: Components = current_app.extensions["strongroom"]
    return built


def close_app(app: Flask) -> None:
    """Close the app's database pools and recorders now (tests; a host shutting down)."""
    app.extensions["strongroom.close"]()


def build_components(config: Mapping[str, Any]) -> Components:
    """Settings from `config` (plus the instance folder and environment), built once."""
    overrides = dict(config)
    instance = overrides.pop("instance", None)
    create_schema = bool(overrides.pop("create_schema", True))
    try:
        settings = Settings.load(instance, overrides)
        return build(settings, create_schema=create_schema)
    except (KekError, DatabaseUnavailable, ValueError) as exc:
        # A worker that cannot reach its stores must not boot half-made; the message
        # names the problem (a missing KEK, an unreachable database), not a trace.
        raise ConfigurationError(f"cannot start: {exc}") from exc


def _refuse_oversized_body() -> None:
    # Checked before any view runs, so even an unknown route or a view that never
    # reads its body answers 413 rather than letting the client stream a gigabyte.
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    length = request.content_length
    if length is not None and length > limit:
        raise RequestEntityTooLarge()
    if length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        # werkzeug stops reading a streamed body at the limit without complaint, so
        # the view would get a silently truncated body; read it here (cached for the
        # view) and refuse one that fills the limit.
        try:
            body = request.get_data(cache=True)
        except Exception:  # noqa: BLE001 - see below
            # The server's chunk parser refused the framing (a bad chunk size, a missing
            # terminator: gunicorn's own ParseException, which the web layer does not
            # import) or the client went away: the client's fault, a 400, never a 500.
            raise BadRequest() from None
        if len(body) >= limit:
            raise RequestEntityTooLarge()


def _refuse_a_body_that_is_not_json() -> None:
    # A body is `application/json` or absent, on every route (issue 10, item 10g): a
    # form post or a text/plain "simple request" a browser sends cross-site without a
    # preflight, or a `+json` type a proxy or WAF inspects differently from us, never
    # reaches a view, even one that ignores its body (logout, approvals).
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if ((request.content_length or 0) > 0 or chunked) and request.mimetype != "application/json":
        raise UnsupportedMediaType()


def _start_deadline() -> None:
    # One deadline for every wait on a database during this request (R7.6).
    g.store_deadline = start_deadline(components().settings.request_deadline_seconds)


def _end_deadline(_exc: BaseException | None) -> None:
    token = g.pop("store_deadline", None)
    if token is not None:
        end_deadline(token)


def _record_request(response: Response) -> Response:
    from web.metrics import elapsed_seconds, endpoint_label

    seconds = elapsed_seconds()
    endpoint = endpoint_label()
    current_app.extensions["strongroom.metrics"].observe(request.method, endpoint, response.status_code, seconds)
    # The rule, not the path, and never the query string, a body, a token or a cookie:
    # those are where emails, names and credentials travel (R7.3).
    request_log.info("request", extra={"fields": {
        "request_id": g.get("request_id"),
        "method": request.method,
        "rule": endpoint,
        "status": response.status_code,
        "duration_ms": round(seconds * 1000, 3),
        "remote_addr": request.remote_addr,
    }})
    return response


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Strongroom API; `config` may name the `instance` folder and override any setting."""
    # Imported here, after any fork, so that `strongroom serve` can choose the
    # metrics mode before prometheus_client is first loaded (see web/metrics.py).
    from web import metrics

    logs.configure_logging()
    built = build_components(config or {})
    app = Flask(__name__, static_folder=None, instance_path=str(built.settings.instance))
    app.request_class = JsonRequest
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        # No sessions or cookies are ever issued: authentication is a bearer token.
        SESSION_COOKIE_SECURE=True,
    )
    closer = _CloseOnce()
    closer.closers.append(built.close)
    app.extensions["strongroom"] = built
    app.extensions["strongroom.close"] = closer
    atexit.register(closer)

    # Order matters: an id and a timer first, so that even a request refused by the
    # size check is logged and counted with its id.
    headers.install(app)
    app.before_request(metrics.start_timer)
    app.before_request(_start_deadline)
    app.teardown_request(_end_deadline)
    app.before_request(_refuse_oversized_body)
    app.before_request(_refuse_a_body_that_is_not_json)
    app.after_request(_record_request)

    errors.register_error_handlers(app)
    # Each blueprint declares its schemas and answers; the Api builds the document
    # from them as they are registered (web/openapi.py).
    api = openapi.make_api(app)
    timeout = health.readiness_timeout(built)
    closer.closers.append(health.install(app, api, built).stop)
    closer.closers.append(metrics.install(app, api, built, timeout).stop)
    from web import alerts_api, audit_api, auth, customers, privacy_api  # bearer tokens -> actors; the /api/v1 resources

    auth.install(app, api)
    customers.install(app, api)
    audit_api.install(app, api)
    alerts_api.install(app, api)  # issue 12 (R3.6)
    privacy_api.install(app, api)
    from web import erasure_api  # issue 13: erasure against AML holds (R5.4)

    erasure_api.install(app, api)
    from web import recertification_api, reports_api, training_api  # issue 14 (R6.1, R6.2, R6.4)

    training_api.install(app, api)
    recertification_api.install(app, api)
    reports_api.install(app, api)
    api.register_blueprint(openapi.blueprint)
    return app
