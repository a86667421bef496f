"""Authentication (STYLE 4): a bearer token becomes an `Actor` and an acting context.

Every route under `/api/v1` needs a live session except the two login steps and the
OpenAPI document. The token is read from the `Authorization: Bearer` header only,
never from a query string (URLs end up in logs, proxies and browser histories).
Authorisation is not decided here: the use cases ask the policy (R2.10).

Every view calls `current_actor()` (the one copy) in its body; the acting context (actor,
session, request id, client address, `X-Purpose`) is already set for them, so every
event and access record the request causes says who, where and why (R3.1).
"""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from typing import Any

from flask import Flask, Response, g, request

from application.activation import Activation
from application.context import RequestContext, acting_as
from application.errors import ValidationFailed
from application.identity import (
    UNAUTHENTICATED,
    Identity,
    NotAuthenticated,
    PasswordChangeRequired,
)
from application.policy import CARD_DATA_IN_PURPOSE, stated_purpose
from application.ports import SessionRecord
from application.security import Actor
from application.staff_admin import StaffAdministration
from web.app import components
from web.openapi import Api
from web.schemas import CARD_DATA_MESSAGE

API_PREFIX = "/api/v1/"
# The only API routes reachable without a session.
PUBLIC_RULES = frozenset({"/api/v1/auth/login", "/api/v1/auth/activate", "/api/v1/auth/mfa",
                          "/api/v1/openapi.json"})
# What an account still on its one-time password may do (R2.1): step up (R2.11), change
# it, or leave.
BEFORE_PASSWORD_CHANGE = frozenset({"/api/v1/auth/step-up", "/api/v1/auth/password", "/api/v1/auth/logout"})


def identity() -> Identity:
    return components().identity


def staff_admin() -> StaffAdministration:
    return components().staff_admin


def activation() -> Activation:
    return components().activation


def bearer_token() -> str | None:
    """The token from `Authorization: Bearer <token>`, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 256:
        return None
    return token


def purpose_header() -> str | None:
    value = request.headers.get("X-Purpose")
    if value is None:
        return None
    try:
        # One rule for a stated purpose, the API's and the command line's (application/policy.py).
        return stated_purpose(value)
    except ValidationFailed as exc:
        # PCI DSS 3.3, 3.4: no card data, like every free text (web/schemas.py).
        card = exc.errors.get("purpose") == [CARD_DATA_IN_PURPOSE]
        reason = CARD_DATA_MESSAGE if card else "must be 1 to 200 printable characters"
        raise ValidationFailed({"X-Purpose": [reason]}) from None


def request_context(actor_id: str, session_id: str | None = None) -> RequestContext:
    """The acting context for this request, on behalf of `actor_id`."""
    return RequestContext(
        actor_id=actor_id, via="api", session_id=session_id,
        request_id=g.get("request_id") or uuid.uuid4().hex,
        client_addr=request.remote_addr, purpose=purpose_header(),
    )


def unauthenticated() -> AbstractContextManager[RequestContext]:
    """Context for the login steps: failed attempts are recorded with the address."""
    return acting_as(request_context(UNAUTHENTICATED))


def current_actor() -> Actor:
    """The authenticated staff member of this request (raises NotAuthenticated if none)."""
    actor: Actor | None = g.get("actor")
    if actor is None:
        raise NotAuthenticated()
    return actor


def current_session() -> SessionRecord:
    session: SessionRecord | None = g.get("session")
    if session is None:
        raise NotAuthenticated()
    return session


def authenticate_request() -> None:
    """before_request: resolve the token, set the acting context, apply the
    one-time-password gate. Unknown routes fall through to their 404/405."""
    rule = request.url_rule
    if rule is None or not rule.rule.startswith(API_PREFIX) or rule.rule in PUBLIC_RULES:
        return
    token = bearer_token()
    if token is None:
        raise NotAuthenticated()
    with unauthenticated():
        authenticated = identity().authenticate(token)
    actor = authenticated.actor
    g.actor, g.session = actor, authenticated.session
    acting: AbstractContextManager[RequestContext] = acting_as(request_context(actor.staff_id, actor.session_id))
    acting.__enter__()
    g.acting = acting
    if authenticated.must_change_password and rule.rule not in BEFORE_PASSWORD_CHANGE:
        raise PasswordChangeRequired()


def release_context(_exc: BaseException | None = None) -> None:
    acting: Any = g.pop("acting", None)
    if acting is not None:
        acting.__exit__(None, None, None)


def challenge_header(response: Response) -> Response:
    # RFC 6750: a 401 says how to authenticate.
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="strongroom"'
    return response


def install(app: Flask, api: Api) -> None:
    """Authenticate API requests and serve the identity and staff endpoints."""
    from web import auth_api, staff_api

    app.before_request(authenticate_request)
    app.teardown_request(release_context)
    app.after_request(challenge_header)
    api.register_blueprint(auth_api.blueprint)
    api.register_blueprint(staff_api.blueprint)
