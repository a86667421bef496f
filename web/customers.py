"""The customer API under /api/v1/customers: thin resources over the customer use cases.

Each view authenticates (`web.auth.current_actor`), parses with a strict schema, calls
one use case of `application.customer_service.CustomerService` (which authorises, acts and
records the access) and dumps with a view schema. Authorisation is not decided here
(R2.10). Every answer carries `Cache-Control: no-store` (web/headers.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from marshmallow import Schema
from werkzeug.exceptions import PreconditionFailed, PreconditionRequired

from application.context import RequestContext, acting_as, current_context
from application.customer_service import SEARCH_FIELDS, CustomerService
from application.security import Actor
from web import openapi
from web.schemas import CustomerCreateSchema
from web.schemas_customers import (
    SCHEMAS,
    AsOfQuerySchema,
    CustomerPageSchema,
    CustomerPatchSchema,
    CustomerQuerySchema,
    CustomerViewSchema,
    HistorySchema,
    InteractionCreateSchema,
    InteractionListSchema,
    InteractionSchema,
    RevealRequestSchema,
    RevealResultSchema,
    RevertRequestSchema,
)

PREFIX = "/api/v1/customers"
blueprint = Blueprint("customers", __name__, url_prefix=PREFIX)

# An If-Match naming one version: `"3"` (or a bare 3). Weak tags never match (RFC 9110 13.1.1).
_IF_MATCH = re.compile(r'^\s*"?(\d{1,18})"?\s*$')


def service() -> CustomerService:
    customers: CustomerService = current_app.extensions["strongroom"].customers
    return customers


def current_actor() -> Actor:
    """The authenticated caller (401 otherwise), from the identity module."""
    from web.auth import current_actor as authenticated

    return authenticated()


@contextmanager
def acting(actor: Actor) -> Iterator[None]:
    """Run the use case as `actor`, keeping the request's id and address (R3.1)."""
    base = current_context()
    if base is not None and base.actor_id == actor.staff_id:
        yield
        return
    context = (
        replace(base, actor_id=actor.staff_id, session_id=actor.session_id)
        if base is not None
        else RequestContext(actor_id=actor.staff_id, via="api", session_id=actor.session_id,
                            request_id=g.get("request_id") or uuid.uuid4().hex, client_addr=request.remote_addr)
    )
    with acting_as(context):
        yield


def load_body(schema: Schema) -> dict[str, Any]:
    # 415 without a JSON content type, 400 for broken JSON, 422 for the wrong shape.
    data: dict[str, Any] = schema.load(request.get_json())
    return data


def load_query(schema: Schema) -> dict[str, Any]:
    data: dict[str, Any] = schema.load(request.args.to_dict())
    return data


def dumped(schema: Schema, data: Mapping[str, Any], status: int = 200, *, etag: int | None = None) -> Response:
    response = jsonify(schema.dump(data))
    response.status_code = status
    if etag is not None:
        response.set_etag(str(etag))
    return response


def expected_version() -> int:
    header = request.headers.get("If-Match")
    if not header:
        raise PreconditionRequired()
    match = _IF_MATCH.match(header)
    if match is None:
        # `*`, a weak tag or a list: none names the version the caller read, so none
        # can guard against overwriting someone else's change.
        raise PreconditionFailed()
    return int(match[1])


# -- the resources ------------------------------------------------------------------------


@blueprint.post("")
def create_customer() -> Response:
    actor = current_actor()
    fields = load_body(CustomerCreateSchema())
    with acting(actor):
        view = service().create(actor, fields)
    response = dumped(CustomerViewSchema(), view, 201, etag=view["version"])
    response.headers["Location"] = f"{PREFIX}/{view['id']}"
    return response


@blueprint.get("")
def search_customers() -> Response:
    actor = current_actor()
    query = load_query(CustomerQuerySchema())
    field = next((name for name in SEARCH_FIELDS if name in query), None)
    with acting(actor):
        page = service().search(
            actor, field=field, value=query.get(field) if field else None,
            portfolio=query.get("portfolio"), status=query.get("status"),
            limit=query["limit"], cursor=query.get("cursor"),
        )
    return dumped(CustomerPageSchema(), page)


@blueprint.get("/<uuid:customer_id>")
def read_customer(customer_id: uuid.UUID) -> Response:
    actor = current_actor()
    query = load_query(AsOfQuerySchema())
    with acting(actor):
        if "as_of" in query:
            view = service().read_as_of(actor, str(customer_id), query["as_of"])
        else:
            view = service().read(actor, str(customer_id))
    return dumped(CustomerViewSchema(), view, etag=view["version"])


@blueprint.patch("/<uuid:customer_id>")
def update_customer(customer_id: uuid.UUID) -> Response:
    actor = current_actor()
    version = expected_version()
    changes = load_body(CustomerPatchSchema())
    with acting(actor):
        view = service().update(actor, str(customer_id), changes, version)
    return dumped(CustomerViewSchema(), view, etag=view["version"])


@blueprint.post("/<uuid:customer_id>/reveal")
def reveal_fields(customer_id: uuid.UUID) -> Response:
    actor = current_actor()
    body = load_body(RevealRequestSchema())
    with acting(actor):
        revealed = service().reveal(actor, str(customer_id), body["field_names"], body["purpose"])
    return dumped(RevealResultSchema(), {"id": revealed["id"], "version": revealed["version"],
                                         "revealed": revealed["fields"]})


@blueprint.get("/<uuid:customer_id>/history")
def customer_history(customer_id: uuid.UUID) -> Response:
    actor = current_actor()
    with acting(actor):
        history = service().history(actor, str(customer_id))
    events = [{**{k: v for k, v in e.items() if k != "fields"}, "field_names": e["fields"]} for e in history["events"]]
    return dumped(HistorySchema(), {"id": history["id"], "events": events})


@blueprint.get("/<uuid:customer_id>/interactions")
def list_interactions(customer_id: uuid.UUID) -> Response:
    actor = current_actor()
    with acting(actor):
        listing = service().interactions(actor, str(customer_id))
    return dumped(InteractionListSchema(), listing)


@blueprint.post("/<uuid:customer_id>/interactions")
def add_interaction(customer_id: uuid.UUID) -> Response:
    actor = current_actor()
    body = load_body(InteractionCreateSchema())
    with acting(actor):
        item = service().add_interaction(actor, str(customer_id), **body)
    return dumped(InteractionSchema(), item, 201)


@blueprint.post("/<uuid:customer_id>/revert")
def revert_customer(customer_id: uuid.UUID) -> Response:
    actor = current_actor()
    body = load_body(RevertRequestSchema())
    with acting(actor):
        view = service().revert(actor, str(customer_id), body["to"], body["reason"])
    return dumped(CustomerViewSchema(), view, etag=view["version"])


# -- which permission each endpoint needs (the authorisation matrix reads this) -------------

ENDPOINT_OPERATIONS: dict[tuple[str, str], str] = {
    ("POST", PREFIX): "create",
    ("GET", PREFIX): "search",
    ("GET", PREFIX + "/<uuid:customer_id>"): "view",
    ("PATCH", PREFIX + "/<uuid:customer_id>"): "update",
    ("POST", PREFIX + "/<uuid:customer_id>/reveal"): "reveal",
    ("GET", PREFIX + "/<uuid:customer_id>/history"): "history",
    ("GET", PREFIX + "/<uuid:customer_id>/interactions"): "interactions_list",
    ("POST", PREFIX + "/<uuid:customer_id>/interactions"): "interactions_create",
    ("POST", PREFIX + "/<uuid:customer_id>/revert"): "revert",
}


# -- the OpenAPI description ------------------------------------------------------------------


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}
    if headers:
        answer["headers"] = headers
    return answer


_ETAG = {"ETag": {"description": "The customer's version, quoted; send it back as If-Match.",
                  "required": True, "schema": {"type": "string"}}}
_ERRORS = {
    "400": "Malformed JSON.",
    "401": "No valid session token.",
    "403": "Not allowed: `forbidden`, `training_lapsed`, `step_up_required`, `field_not_revealable`, "
           "`portfolio_out_of_scope` or `password_change_required`.",
    "404": "No such customer, or not in your scope (the two look the same).",
    "410": "The customer has been erased.",
    "413": "The body is larger than 1 MiB.",
    "415": "The body is not `application/json`.",
    "422": "Validation failed (unknown field, card security code, broken rule); `errors` names the fields.",
    "429": "Rate limited.",
    "503": "The database is unavailable.",
}


def _errors(*statuses: str) -> dict[str, Any]:
    return {status: _json("Error", _ERRORS[status]) for status in statuses}


_ID = [{"name": "customer_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}]
_ON_ONE = ("401", "403", "404", "410", "429", "503")
_WITH_BODY = ("400", "413", "415", "422")


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


def _query(schema: type[Schema]) -> dict[str, Any]:
    # apispec's marshmallow plugin expands this into one parameter per field.
    return {"in": "query", "schema": schema}


def _operations() -> dict[str, dict[str, Any]]:
    one = openapi.openapi_path(PREFIX + "/<uuid:customer_id>")
    tags = ["customers"]
    return {
        openapi.openapi_path(PREFIX): {
            "post": {
                "operationId": "createCustomer", "tags": tags,
                "summary": "Register a customer in one of your portfolios; answers the masked view.",
                "requestBody": _body("CustomerCreate"),
                "responses": {"201": _json("CustomerView", "Created.", {
                    **_ETAG, "Location": {"description": "The new customer's URL.", "required": True,
                                          "schema": {"type": "string"}}}),
                              **_errors("401", "403", "429", "503", *_WITH_BODY)},
            },
            "get": {
                "operationId": "searchCustomers", "tags": tags,
                "summary": "Exact-match search (blind index) by one of email, phone, national_id, pan; or a "
                           "listing by portfolio and status. Only customers in your scope are ever returned.",
                "parameters": [_query(CustomerQuerySchema)],
                "responses": {"200": _json("CustomerPage", "A page of masked views, in id order."),
                              **_errors("400", "401", "403", "422", "429", "503")},
            },
        },
        one: {
            "get": {
                "operationId": "readCustomer", "tags": tags,
                "summary": "The masked view (now, or `as_of` a past moment); ETag is the version.",
                "parameters": [*_ID, _query(AsOfQuerySchema)],
                "responses": {"200": _json("CustomerView", "The masked view.", _ETAG),
                              **_errors(*_ON_ONE, "400", "422")},
            },
            "patch": {
                "operationId": "updateCustomer", "tags": tags,
                "summary": "Change fields; `If-Match` with the version you read is required.",
                "parameters": [*_ID, {"name": "If-Match", "in": "header", "required": True,
                                "schema": {"type": "string"}, "description": "The ETag you read, e.g. `\"3\"`."}],
                "requestBody": _body("CustomerPatch"),
                "responses": {"200": _json("CustomerView", "Changed; the new masked view.", _ETAG),
                              "412": _json("Error", "The customer changed since you read it."),
                              "428": _json("Error", "If-Match is missing."),
                              **_errors(*_ON_ONE, *_WITH_BODY)},
            },
        },
        one + "/reveal": {
            "post": {
                "operationId": "revealFields", "tags": tags, "parameters": _ID,
                "summary": "The plaintext of masked fields, for a stated purpose, after a step-up within "
                           "5 minutes. Recorded as an access record with the purpose.",
                "requestBody": _body("RevealRequest"),
                "responses": {"200": _json("RevealResult", "The fields asked for, in plaintext."),
                              **_errors(*_ON_ONE, *_WITH_BODY)},
            },
        },
        one + "/history": {
            "get": {
                "operationId": "customerHistory", "tags": tags, "parameters": _ID,
                "summary": "Every change from the event log: type, time, actor, changed field names.",
                "responses": {"200": _json("History", "Oldest first."), **_errors(*_ON_ONE)},
            },
        },
        one + "/interactions": {
            "get": {
                "operationId": "listInteractions", "tags": tags, "parameters": _ID,
                "summary": "Calls, emails, notes, complaints and chats, oldest first.",
                "responses": {"200": _json("InteractionList", "The interactions."), **_errors(*_ON_ONE)},
            },
            "post": {
                "operationId": "addInteraction", "tags": tags, "parameters": _ID,
                "summary": "Record an interaction.",
                "requestBody": _body("InteractionCreate"),
                "responses": {"201": _json("Interaction", "Recorded."), **_errors(*_ON_ONE, *_WITH_BODY)},
            },
        },
        one + "/revert": {
            "post": {
                "operationId": "revertCustomer", "tags": tags, "parameters": _ID,
                "summary": "Bring the customer's data back to a past moment with a compensating event "
                           "(R4.5); history is never rewritten.",
                "requestBody": _body("RevertRequest"),
                "responses": {"200": _json("CustomerView", "Reverted; the new masked view.", _ETAG),
                              "501": _json("Error", "Not available in this build."),
                              **_errors(*_ON_ONE, *_WITH_BODY)},
            },
        },
    }


openapi.register_schemas(SCHEMAS)
openapi.register_operations(_operations())


def install(app: Flask) -> None:
    """Mount the customer API over the service the composition root built."""
    app.register_blueprint(blueprint)
