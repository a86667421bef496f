"""The OpenAPI 3.1 document at `/api/v1/openapi.json`, generated from the routes (STYLE 8).

Each blueprint is a flask-smorest `Blueprint`: a view declares the schema that parses
its input (`@blp.arguments`), the schema that dumps its answer (`@blp.response`) and
every error it can answer (`@blp.errors`), and the document is built from those
declarations when the blueprints are registered on the app's `Api`. Nothing is
registered at import time, so two apps never share a document.

Input is parsed by `StrictParser`: the schema's own `unknown = RAISE` decides in every
location, a body that is not JSON is 415 and broken JSON 400 (web/app.py's request
class), and a schema's refusal reaches the one error table (web/errors.py) as a
marshmallow `ValidationError`, so it leaves in our error shape, never webargs'.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

import flask_smorest  # type: ignore[import-untyped]
from flask import Flask, Request, Response, current_app, jsonify
from marshmallow import Schema, ValidationError, fields
from webargs.flaskparser import FlaskParser

OPENAPI_VERSION = "3.1.0"
DOCUMENT_PATH = "/api/v1/openapi.json"

# What each error status means, wherever it is answered; an operation may say more.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed JSON (code `malformed_json`), or a request that could not be understood.",
    401: "No valid session token (code `unauthenticated`).",
    403: "Not allowed (code `forbidden`, or the refusal's own code), or `password_change_required` "
         "until the one-time password is changed.",
    404: "No such record, or not in your scope (the two look the same).",
    409: "Conflicts with the current state.",
    410: "The customer's data has been erased.",
    412: "The record has changed since it was read (If-Match names another version).",
    413: "The body is larger than 1 MiB.",
    415: "The body is not `application/json`.",
    422: "Validation failed; `errors` names each field and the rule it breaks, never the value.",
    428: "If-Match is required.",
    429: "Too many requests (code `rate_limited`); `Retry-After` says how many seconds to wait.",
    503: "The database is unavailable; try again later.",
}
# Every operation under /api/v1 that needs a session can answer these.
AUTHENTICATED = (401, 403, 503)
# Every operation that reads a JSON body can answer these.
WITH_BODY = (400, 413, 415, 422)


class ErrorSchema(Schema):
    code = fields.String(required=True, metadata={"description": "Stable machine-readable error code."})
    status = fields.Integer(required=True, metadata={"description": "The HTTP status, repeated."})
    message = fields.String(required=True, metadata={"description": "Human-readable; never carries submitted values."})
    errors = fields.Dict(
        keys=fields.String(), values=fields.List(fields.String()),
        metadata={"description": "Field name to reasons, for validation errors."},
    )
    request_id = fields.String(metadata={"description": "Present on internal errors, to quote to support."})


class StrictParser(FlaskParser):
    """webargs' Flask parser, made to keep Strongroom's rules for what comes in."""

    # The schema's own Meta.unknown (RAISE) decides in every location: an unknown
    # query parameter is refused like an unknown body field (mass assignment).
    DEFAULT_UNKNOWN_BY_LOCATION: dict[str, str | None] = {"headers": "exclude"}

    def load_json(self, req: Request, schema: Schema) -> Any:
        # Flask's own parsing, through web/app.py's request class: 415 without a JSON
        # content type (webargs would treat the body as absent: a 422), 400 for broken JSON.
        return req.get_json()

    def _on_validation_error(self, error: ValidationError, req: Request, schema: Schema, location: str, *,
                             error_status_code: int | None, error_headers: Any) -> NoReturn:
        # As marshmallow raised it, not namespaced under the location: the error
        # table names fields as a client sent them (`address.country`).
        raise error


class Blueprint(flask_smorest.Blueprint):
    """A flask-smorest blueprint whose views declare their errors too."""

    ARGUMENTS_PARSER = StrictParser()

    def errors(self, *statuses: int, **described: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Document each status the view can answer with an `Error`; `described` overrides
        the text, keyed `e403="..."`."""

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            codes = sorted({*statuses, *(int(key[1:]) for key in described)})
            for status in codes:
                text = described.get(f"e{status}", ERROR_DESCRIPTIONS[status])
                func = self.alt_response(status, schema=ErrorSchema, description=text)(func)
            return func

        return decorator

    def public(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Mark an operation as reachable without a session (the document's default is bearerAuth)."""
        decorated: Callable[..., Any] = self.doc(security=[])(func)
        return decorated

    def route(self, rule: str, *, parameters: Any = None, tags: Any = None, **options: Any) -> Any:
        register = super().route(rule, parameters=parameters, tags=tags, **options)

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            # operationId from the view's name (`read_customer` -> `readCustomer`): the
            # name a generated client gives the call.
            head, *rest = func.__name__.split("_")
            manual = func.__dict__.setdefault("_apidoc", {}).setdefault("manual_doc", {})
            manual.setdefault("operationId", head + "".join(part.title() for part in rest))
            result: Callable[..., Any] = register(func)
            return result

        return decorator


class Api(flask_smorest.Api):  # type: ignore[misc]
    """flask-smorest's Api over Strongroom's error table rather than its own."""

    ERROR_SCHEMA = ErrorSchema
    # No catch-all `default` answer: each operation lists every status it can give,
    # and a check (schemathesis) holds the API to that list.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self) -> None:
        """web/errors.py registers the one error table; flask-smorest's would replace it."""


def package_version() -> str:
    try:
        return version("strongroom")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def openapi_path(rule: str) -> str:
    """Flask's `/customers/<uuid:id>` as OpenAPI's `/customers/{id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def make_api(app: Flask) -> Api:
    """The app's `Api`: register each blueprint on it (`api.register_blueprint`)."""
    app.config.update(
        API_TITLE="Strongroom",
        API_VERSION=package_version(),
        OPENAPI_VERSION=OPENAPI_VERSION,
        # No ReDoc or Swagger pages: the document is served by `openapi` below.
        OPENAPI_URL_PREFIX=None,
    )
    api = Api(app, spec_kwargs={
        "info": {"description": "Encrypted, audited customer records for payment companies. "
                                "Errors are always `Error` objects; the API is served over TLS 1.2+ only. "
                                "A request body, on any operation, is `application/json` or "
                                "answered 415 (`unsupported_media_type`)."},
        "servers": [{"url": "/"}],
        # Every operation needs a token unless it says otherwise (the customer API never is public).
        "security": [{"bearerAuth": []}],
    })
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "Opaque session token from /api/v1/auth/mfa."}
    )
    # Issue 10 item 5: every request string states the one text rule (web/schemas.py).
    from web.schemas import text_rule_property

    api.ma_plugin.converter.add_attribute_function(text_rule_property)
    app.extensions["strongroom.api"] = api
    return api


blueprint = Blueprint("meta", __name__, description="This document.")


@blueprint.get(DOCUMENT_PATH)
@blueprint.public
@blueprint.response(200, {"type": "object"}, description="This OpenAPI 3.1 document.")
def openapi() -> Response:
    """This document, generated from the routes."""
    api: Api = current_app.extensions["strongroom.api"]
    return jsonify(api.spec.to_dict())
