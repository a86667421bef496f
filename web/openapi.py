"""The OpenAPI 3.1 document at `/api/v1/openapi.json`, generated from the schemas (STYLE 8).

Request bodies are described by the same marshmallow schemas that parse them, so
the document cannot drift from what the API accepts. Each route is described in
`OPERATIONS`; a test checks that every route the app serves is described here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify
from marshmallow import Schema, fields

from web.schemas import AddressSchema, BankAccountSchema, CardSchema, CustomerCreateSchema

OPENAPI_VERSION = "3.1.0"

blueprint = Blueprint("openapi", __name__)


class ErrorSchema(Schema):
    code = fields.String(required=True, metadata={"description": "Stable machine-readable error code."})
    status = fields.Integer(required=True, metadata={"description": "The HTTP status, repeated."})
    message = fields.String(required=True, metadata={"description": "Human-readable; never carries submitted values."})
    errors = fields.Dict(
        keys=fields.String(), values=fields.List(fields.String()),
        metadata={"description": "Field name to reasons, for validation errors."},
    )
    request_id = fields.String(metadata={"description": "Present on internal errors, to quote to support."})


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["ok"]})


class ReadySchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["ready"]})


SCHEMAS: dict[str, type[Schema]] = {
    "Error": ErrorSchema,
    "Health": HealthSchema,
    "Ready": ReadySchema,
    "Address": AddressSchema,
    "Card": CardSchema,
    "BankAccount": BankAccountSchema,
    "CustomerCreate": CustomerCreateSchema,
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


_PUBLIC: list[dict[str, list[str]]] = []  # no authentication: probes and scrapers call these

OPERATIONS: dict[str, dict[str, Any]] = {
    "/healthz": {"get": {
        "operationId": "healthz", "tags": ["operations"], "security": _PUBLIC,
        "summary": "The process is alive (touches no database).",
        "responses": {"200": _json("Health", "Alive.")},
    }},
    "/readyz": {"get": {
        "operationId": "readyz", "tags": ["operations"], "security": _PUBLIC,
        "summary": "The event store, read models and key store all answer.",
        "responses": {"200": _json("Ready", "Ready for traffic."),
                      "503": _json("Error", "A dependency does not answer (code `not_ready`).")},
    }},
    "/metrics": {"get": {
        "operationId": "metrics", "tags": ["operations"], "security": _PUBLIC,
        "summary": "Prometheus metrics; labels carry URL rules, never paths, queries or personal data.",
        "responses": {"200": {"description": "Prometheus text exposition format (or OpenMetrics, by Accept).",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }},
    "/api/v1/openapi.json": {"get": {
        "operationId": "openapi", "tags": ["meta"], "security": _PUBLIC,
        "summary": "This document.",
        "responses": {"200": {"description": "OpenAPI 3.1 document.",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }},
}


def register_schemas(schemas: Mapping[str, type[Schema]]) -> None:
    """Add a blueprint's schemas to the document (its module calls this on import)."""
    SCHEMAS.update(schemas)


def register_operations(operations: Mapping[str, Mapping[str, Any]]) -> None:
    """Add a blueprint's operations, {path: {method: operation}}, to the document."""
    for path, methods in operations.items():
        OPERATIONS.setdefault(path, {}).update(methods)


def package_version() -> str:
    try:
        return version("strongroom")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def openapi_path(rule: str) -> str:
    """Flask's `/customers/<uuid:id>` as OpenAPI's `/customers/{id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def build_spec() -> dict[str, Any]:
    spec = APISpec(
        title="Strongroom",
        version=package_version(),
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info={"description": "Encrypted, audited customer records for payment companies. "
                             "Errors are always `Error` objects; the API is served over TLS 1.2+ only."},
        servers=[{"url": "/"}],
    )
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "Opaque session token from /api/v1/auth/mfa."}
    )
    for name, schema in SCHEMAS.items():
        if name not in spec.components.schemas:
            spec.components.schema(name, schema=schema)
    for path, operations in OPERATIONS.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    # Every operation needs a token unless it says otherwise (the customer API never is public).
    document["security"] = [{"bearerAuth": []}]
    return document


@blueprint.get("/api/v1/openapi.json")
def openapi_document() -> Response:
    return jsonify(current_app.extensions["strongroom.openapi"])


def install(app: Flask) -> None:
    app.extensions["strongroom.openapi"] = build_spec()
    app.register_blueprint(blueprint)
