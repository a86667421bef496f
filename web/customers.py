"""The customer API under /api/v1/customers: thin resources over the customer use cases.

Each view is authenticated already (web/auth.py), parses with a strict schema, calls
one use case of `application.customer_service.CustomerService` (which authorises, acts and
records the access) and dumps with a view schema. Authorisation is not decided here
(R2.10). Every answer carries `Cache-Control: no-store` (web/headers.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import wraps
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import PreconditionFailed, PreconditionRequired

from application.context import RequestContext, acting_as, current_context
from application.customer_service import SEARCH_FIELDS, CustomerService
from application.errors import ProjectionLagging
from application.idempotency import MAX_KEY_LENGTH, check_key, fingerprint
from application.security import Actor
from web.auth import current_actor
from web.openapi import AUTHENTICATED, WITH_BODY, Api, Blueprint
from web.schemas import CustomerCreateSchema
from web.schemas_customers import (
    AcceptedSchema,
    AsOfQuerySchema,
    CustomerPageSchema,
    CustomerPatchSchema,
    CustomerQuerySchema,
    CustomerViewSchema,
    HistorySchema,
    InteractionCreateSchema,
    InteractionPageSchema,
    InteractionSchema,
    RevealRequestSchema,
    RevealResultSchema,
    RevertRequestSchema,
)

PREFIX = "/api/v1/customers"
blueprint = Blueprint("customers", __name__, url_prefix=PREFIX,
                      description="Customer records: masked views, reveals, history, interactions.")

# An If-Match naming one version: `"3"` (or a bare 3). Weak tags never match (RFC 9110 13.1.1).
_IF_MATCH = re.compile(r'^\s*"?(\d{1,18})"?\s*$')

_ETAG = {"ETag": {"description": "The customer's version, quoted; send it back as If-Match.",
                  "required": True, "schema": {"type": "string"}}}
_LOCATION = {"Location": {"description": "The new customer's URL.", "required": True, "schema": {"type": "string"}}}
# An empty If-Match names nothing: the server treats it as missing (428), so the
# document does not call it valid.
IF_MATCH = {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string", "minLength": 1},
            "description": "The ETag you read, e.g. `\"3\"`. Missing or empty: 428; `*`, a weak tag, a list "
                           "or another version: 412."}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[!-~]+$"},
    "description": "Any unique string of visible ASCII: a retry with the same key and body within 24 h "
                   "does not write again but answers what the first attempt did (its resource as it is "
                   "now). The same key with another body: 422 `idempotency_key_reused`. Keys are yours "
                   "alone; another member of staff's same key is another request."}
_FORBIDDEN = ("Not allowed: `forbidden`, `training_lapsed`, `step_up_required`, `field_not_revealable`, "
              "`portfolio_out_of_scope` or `password_change_required`.")
# Seconds a client is told to wait before polling a change the read model has yet to reach.
ACCEPTED_RETRY_AFTER = 1
_ACCEPTED = ("Accepted: the change is committed (do not send it again) but a separate projection worker "
             "has not reached it yet. `Location` answers it once `position` is projected; poll after "
             "`Retry-After` seconds.")
_ACCEPTED_HEADERS = {
    "Location": {"description": "Where the change can be read once projected.", "required": True,
                 "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait before polling `Location`.", "required": True,
                    "schema": {"type": "string"}},
}
# What every operation on one customer can answer, besides its own.
_ON_ONE = (*AUTHENTICATED, 404, 410)


def service() -> CustomerService:
    """The customer use cases, built once by the composition root."""
    customers: CustomerService = current_app.extensions["strongroom"].customers
    return customers


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


def tagged(view: dict[str, Any], status: int = 200) -> tuple[dict[str, Any], int, dict[str, str]]:
    """The view with its version as the ETag."""
    return view, status, {"ETag": f'"{view["version"]}"'}


def expected_version() -> int:
    """The version named by If-Match: 428 without one, 412 for one that names no single version."""
    header = request.headers.get("If-Match")
    if not header:
        raise PreconditionRequired()
    match = _IF_MATCH.match(header)
    if match is None:
        # `*`, a weak tag or a list: none names the version the caller read, so none
        # can guard against overwriting someone else's change.
        raise PreconditionFailed()
    return int(match[1])


def if_match(view: Callable[..., Any]) -> Callable[..., Any]:
    """Read If-Match before the body, so a change without a precondition is refused as such (428)."""

    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        return view(*args, version=expected_version(), **kwargs)

    return checked


def accepts_lagging(where: Callable[[str], str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Answer 202 Accepted, never an error, for a committed change the read model has
    yet to reach (R7.4): the log position, and `where(customer_id)` to poll."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def answered(*args: Any, **kwargs: Any) -> Any:
            try:
                return view(*args, **kwargs)
            except ProjectionLagging as lag:
                return accepted(lag, where)

        documented: Callable[..., Any] = blueprint.alt_response(
            202, schema=AcceptedSchema, description=_ACCEPTED, headers=_ACCEPTED_HEADERS, success=True,
        )(answered)
        return documented

    return decorator


def accepted(lag: ProjectionLagging, where: Callable[[str], str]) -> Response:
    customer_id = lag.subject_ids[0]
    response = jsonify(AcceptedSchema().dump({
        "code": "accepted", "status": 202, "message": "accepted; the read model is catching up",
        "id": customer_id, "position": lag.position,
    }))
    response.status_code = 202
    response.headers["Location"] = where(customer_id)
    response.headers["Retry-After"] = str(ACCEPTED_RETRY_AFTER)
    return response


def _one(customer_id: str) -> str:
    return f"{PREFIX}/{customer_id}"


def _its_interactions(customer_id: str) -> str:
    return f"{PREFIX}/{customer_id}/interactions"


def keyed() -> tuple[str | None, str]:
    """The request's Idempotency-Key (422 if malformed) and its fingerprint: SHA-256 of
    method, path and the canonical JSON body."""
    key = request.headers.get("Idempotency-Key")
    return (None if key is None else check_key(key),
            fingerprint(request.method, request.path, request.get_json(silent=True)))


# -- the resources ------------------------------------------------------------------------


@blueprint.post("")
@blueprint.doc(parameters=[IDEMPOTENCY_KEY])
@blueprint.arguments(CustomerCreateSchema)
@blueprint.response(201, CustomerViewSchema, description="Created.", headers={**_ETAG, **_LOCATION})
@blueprint.errors(*AUTHENTICATED, *WITH_BODY, e403=_FORBIDDEN,
                  e422="Validation failed (unknown field, card security code, a Luhn or mod-97 check, "
                       "a portfolio outside your own; `errors` names the fields), or "
                       "`idempotency_key_reused`.")
@accepts_lagging(_one)
def create_customer(fields: dict[str, Any]) -> Any:
    """Register a customer in one of your portfolios; answers the masked view."""
    actor = current_actor()
    with acting(actor):
        view = service().once(actor, *keyed(), 201, lambda: service().create(actor, fields),
                              lambda first: service().recorded_customer(actor, first))
    body, status, headers = tagged(view, 201)
    return body, status, {**headers, "Location": f"{PREFIX}/{view['id']}"}


@blueprint.get("")
@blueprint.arguments(CustomerQuerySchema, location="query")
@blueprint.response(200, CustomerPageSchema, description="A page of masked views, in id order.")
@blueprint.errors(*AUTHENTICATED, 400, 429,
                  e403=_FORBIDDEN + " Searching by a field one may not reveal: `search_not_allowed`.",
                  e422="A parameter is not valid, more than one of email, phone, national_id and pan was "
                       "given (search by one at a time), or the cursor is not one this API gave.")
def search_customers(query: dict[str, Any]) -> Any:
    """Exact-match search (blind index) by one of email, phone, national_id, pan; or a listing by
    portfolio and status. Only customers in your scope are ever returned."""
    actor = current_actor()
    field = next((name for name in SEARCH_FIELDS if name in query), None)
    with acting(actor):
        return service().search(
            actor, field=field, value=query.get(field) if field else None,
            portfolio=query.get("portfolio"), status=query.get("status"),
            limit=query["limit"], cursor=query.get("cursor"),
        )


@blueprint.get("/<uuid:customer_id>")
@blueprint.arguments(AsOfQuerySchema, location="query")
@blueprint.response(200, CustomerViewSchema, description="The masked view.", headers=_ETAG)
@blueprint.errors(*_ON_ONE, 400, 422, e403=_FORBIDDEN)
def read_customer(query: dict[str, Any], customer_id: uuid.UUID) -> Any:
    """The masked view (now, or `as_of` a past moment); ETag is the version."""
    actor = current_actor()
    with acting(actor):
        if "as_of" in query:
            view = service().read_as_of(actor, str(customer_id), query["as_of"])
        else:
            view = service().read(actor, str(customer_id))
    return tagged(view)


@blueprint.patch("/<uuid:customer_id>")
@blueprint.doc(parameters=[IF_MATCH, IDEMPOTENCY_KEY])
@if_match
@blueprint.arguments(CustomerPatchSchema)
@blueprint.response(200, CustomerViewSchema, description="Changed; the new masked view.", headers=_ETAG)
@blueprint.errors(*_ON_ONE, *WITH_BODY, 412, 428, e403=_FORBIDDEN,
                  e409="Processing of this customer is restricted (`restricted`, R5.6): the record is read-only.",
                  e422="Validation failed (unknown field, broken rule, a KYC change the rules do not "
                       "allow; `errors` names the fields), or `idempotency_key_reused`.")
@accepts_lagging(_one)
def update_customer(changes: dict[str, Any], customer_id: uuid.UUID, version: int) -> Any:
    """Change fields; `If-Match` with the version you read is required."""
    actor = current_actor()
    with acting(actor):
        view = service().once(actor, *keyed(), 200, lambda: service().update(actor, str(customer_id), changes, version),
                              lambda first: service().recorded_customer(actor, first))
    return tagged(view)


@blueprint.post("/<uuid:customer_id>/reveal")
@blueprint.arguments(RevealRequestSchema)
@blueprint.response(200, RevealResultSchema, description="The fields asked for, in plaintext.")
@blueprint.errors(*_ON_ONE, *WITH_BODY,
                  e403="Not allowed: `step_up_required` (no step-up in the last 5 minutes: POST "
                       "/api/v1/auth/step-up), `field_not_revealable`, `training_lapsed`, `forbidden`, "
                       "`portfolio_out_of_scope` or `password_change_required`.",
                  e422="Validation failed, or no purpose stated (refused and recorded).")
def reveal_fields(body: dict[str, Any], customer_id: uuid.UUID) -> dict[str, Any]:
    """The plaintext of masked fields, for a stated purpose, after a step-up within 5 minutes.
    Recorded as an access record with the purpose."""
    actor = current_actor()
    with acting(actor):
        revealed = service().reveal(actor, str(customer_id), body["field_names"], body["purpose"])
    return {"id": revealed["id"], "version": revealed["version"], "revealed": revealed["fields"]}


@blueprint.get("/<uuid:customer_id>/history")
@blueprint.response(200, HistorySchema, description="Oldest first.")
@blueprint.errors(*_ON_ONE, e403=_FORBIDDEN)
def customer_history(customer_id: uuid.UUID) -> dict[str, Any]:
    """Every change from the event log: type, time, actor, changed field names."""
    actor = current_actor()
    with acting(actor):
        history = service().history(actor, str(customer_id))
    events = [{**{k: v for k, v in e.items() if k != "fields"}, "field_names": e["fields"]} for e in history["events"]]
    return {"id": history["id"], "events": events}


@blueprint.get("/<uuid:customer_id>/interactions")
@blueprint.response(200, InteractionPageSchema, description="The interactions (one page: `next_cursor` is null).")
@blueprint.errors(*_ON_ONE, e403=_FORBIDDEN)
def list_interactions(customer_id: uuid.UUID) -> dict[str, Any]:
    """Calls, emails, notes, complaints and chats, oldest first."""
    actor = current_actor()
    with acting(actor):
        listing = service().interactions(actor, str(customer_id))
    return {**listing, "next_cursor": None}


@blueprint.post("/<uuid:customer_id>/interactions")
@blueprint.doc(parameters=[IDEMPOTENCY_KEY])
@blueprint.arguments(InteractionCreateSchema)
@blueprint.response(201, InteractionSchema, description="Recorded.")
@blueprint.errors(*_ON_ONE, *WITH_BODY, e403=_FORBIDDEN,
                  e409="Processing of this customer is restricted (`restricted`, R5.6).",
                  e422="Validation failed, or `idempotency_key_reused`.")
@accepts_lagging(_its_interactions)
def add_interaction(body: dict[str, Any], customer_id: uuid.UUID) -> dict[str, Any]:
    """Record an interaction."""
    actor = current_actor()
    with acting(actor):
        return service().once(actor, *keyed(), 201,
                              lambda: service().add_interaction(actor, str(customer_id), **body),
                              lambda first: service().recorded_interaction(actor, first))


@blueprint.post("/<uuid:customer_id>/revert")
@blueprint.doc(parameters=[IDEMPOTENCY_KEY])
@blueprint.arguments(RevertRequestSchema)
@blueprint.response(200, CustomerViewSchema, description="Reverted; the new masked view.", headers=_ETAG)
@blueprint.errors(*_ON_ONE, *WITH_BODY, e403=_FORBIDDEN,
                  e409="Processing of this customer is restricted (`restricted`, R5.6).",
                  e422="Validation failed, `to` is before the customer existed, or `idempotency_key_reused`.")
@accepts_lagging(_one)
def revert_customer(body: dict[str, Any], customer_id: uuid.UUID) -> Any:
    """Bring the customer's data back to a past moment with a compensating event (R4.5); history is
    never rewritten."""
    actor = current_actor()
    with acting(actor):
        view = service().once(actor, *keyed(), 200,
                              lambda: service().revert(actor, str(customer_id), body["to"], body["reason"]),
                              lambda first: service().recorded_customer(actor, first))
    return tagged(view)


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
    # R5.2 (web/privacy_api.py): the consent ledger.
    ("GET", PREFIX + "/<uuid:customer_id>/consents"): "consents_list",
    ("POST", PREFIX + "/<uuid:customer_id>/consents"): "consents_record",
}


def install(app: Flask, api: Api) -> None:
    """Mount the customer API; its use cases come built from the composition root."""
    api.register_blueprint(blueprint)
