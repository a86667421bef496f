"""The one error table (STYLE 3): every error leaves as `{"code", "status", "message", "errors"?}`.

Application errors are mapped by class, HTTP errors by status; anything else is a
500 that says only "internal error" and the request id. Messages come from this
table or from errors whose messages are written to name ids, fields and rules, never
values; a database's or library's own message never reaches a client, because it
may carry a host name, a file path or a value.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, Response, g, jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from application.errors import (
    AnonymousWrite,
    CustomerNotFound,
    ProjectionLagging,
    StoreUnavailable,
    SubjectErased,
    ValidationFailed,
    VersionConflict,
)
from application.idempotency import IdempotencyKeyReused
from application.lockout import AccountNotLocked
from application.policy import (
    AccessDenied,
    DutiesConflict,
    FieldNotRevealable,
    PortfolioOutOfScope,
    SearchNotAllowed,
    StepUpRequired,
    TrainingLapsed,
)
from application.identity import (
    InvalidCredentials,
    NotAuthenticated,
    PasswordChangeRequired,
    SessionNotFound,
    StepUpFailed,
)
from application.activation import ActivationUnavailable
from application.alerts import AlertAlreadyAcknowledged, AlertNotFound
from application.staff_admin import (
    AlreadyActivated,
    ApprovalAlreadyDecided,
    ApprovalExpired,
    ApprovalNotFound,
    NotPermitted,
    SelfApproval,
    SelfRoleChange,
    StaffNotFound,
    UsernameTaken,
)
from application.throttle import PasswordCheckBusy, RateLimited
from application.privacy_requests import PrivacyRequestNotFound
from domain.errors import AlreadyExtended, CustomerRestricted, DomainError, IdentityNotVerified, PrivacyRequestClosed
from application.training import SelfTrainingRecord
from application.reports import UnknownReport
from application.recertification import CampaignNotFound, CampaignOpen, ItemAlreadyDecided, ItemNotYours
from infrastructure.faults import is_store_unavailable
from infrastructure.sql import DatabaseUnavailable, ServerSpace, is_disk_full
from infrastructure.logs import ERROR_LOGGER
from web.schemas import flatten_errors

log = logging.getLogger(ERROR_LOGGER)

UNAVAILABLE_MESSAGE = "the database is unavailable; try again later"
# Seconds a client is told to wait after a 503 (R7.6).
RETRY_AFTER_SECONDS = 5

# class -> (status, code, fixed message or None to use the error's own safe message)
ERROR_TABLE: dict[type[Exception], tuple[int, str, str | None]] = {
    AnonymousWrite: (401, "unauthenticated", "authentication required"),
    # Identity (R2.1-R2.4): one answer for every login failure, whatever its cause (R2.3).
    InvalidCredentials: (401, "invalid_credentials", "invalid username, password or code"),
    NotAuthenticated: (401, "unauthenticated", "authentication required"),
    PasswordChangeRequired: (403, "password_change_required", None),
    StepUpFailed: (403, "step_up_failed", None),
    SessionNotFound: (404, "not_found", None),
    # Staff administration and separation of duties (R2.9).
    NotPermitted: (403, "forbidden", None),
    SelfRoleChange: (403, "self_role_change", None),
    SelfApproval: (403, "self_approval", None),
    StaffNotFound: (404, "not_found", None),
    ApprovalNotFound: (404, "not_found", None),
    ApprovalAlreadyDecided: (409, "already_decided", None),
    UsernameTaken: (409, "username_taken", None),
    # R2.9: a request past its time; an account with no activation waiting; the
    # channel that carries activation codes is down (nothing was created).
    ApprovalExpired: (409, "approval_expired", None),
    AlreadyActivated: (409, "already_activated", None),
    ActivationUnavailable: (503, "activation_unavailable", None),
    DutiesConflict: (409, "separation_of_duties", None),
    CustomerNotFound: (404, "not_found", None),
    SubjectErased: (410, "erased", "this customer's data has been erased"),
    VersionConflict: (412, "version_conflict", None),
    # Before ValidationFailed, its base: a retry's key used for another request (R7.6).
    IdempotencyKeyReused: (422, "idempotency_key_reused", "this Idempotency-Key was used for a different request"),
    ValidationFailed: (422, "validation_failed", "the request is not valid"),
    # Issue 13 (R5.3, R5.6): before DomainError, their base; each names its rule.
    CustomerRestricted: (409, "restricted", None),
    PrivacyRequestClosed: (409, "request_closed", None),
    IdentityNotVerified: (409, "identity_not_verified", None),
    AlreadyExtended: (409, "already_extended", None),
    PrivacyRequestNotFound: (404, "not_found", None),
    DomainError: (422, "validation_failed", "the request is not valid"),
    ValidationError: (422, "validation_failed", "the request is not valid"),
    StoreUnavailable: (503, "unavailable", UNAVAILABLE_MESSAGE),
    # Not a failure: the write is committed and only the read model is behind (R7.4).
    # The customer views answer it themselves with where to poll (web/customers.py);
    # this is the floor for any other, so a committed write never answers 500.
    ProjectionLagging: (202, "accepted", None),
    DatabaseUnavailable: (503, "unavailable", UNAVAILABLE_MESSAGE),
    # The customer-data policy (application/policy.py): each refusal has its own code.
    AccessDenied: (403, "forbidden", "not allowed"),
    TrainingLapsed: (403, "training_lapsed", None),
    StepUpRequired: (403, "step_up_required", None),
    FieldNotRevealable: (403, "field_not_revealable", None),
    PortfolioOutOfScope: (403, "portfolio_out_of_scope", None),
    # Throttling (R2.11): each carries its own Retry-After.
    SearchNotAllowed: (403, "search_not_allowed", None),
    RateLimited: (429, "rate_limited", "too many requests; try again later"),
    PasswordCheckBusy: (503, "busy", None),
    AccountNotLocked: (409, "not_locked", None),
    # Alerts (R3.6): a second acknowledgement keeps the first note.
    AlertNotFound: (404, "not_found", None),
    AlertAlreadyAcknowledged: (409, "already_acknowledged", None),
    SelfTrainingRecord: (403, "self_training_record", None),  # R6.4
    # Access recertification (R6.2).
    CampaignNotFound: (404, "not_found", None),
    CampaignOpen: (409, "campaign_open", None),
    ItemAlreadyDecided: (409, "already_decided", None),
    ItemNotYours: (403, "not_your_review", None),
    UnknownReport: (404, "not_found", None),  # R6.1
}

# Our own words for HTTP errors: werkzeug's descriptions are long and, for some
# errors (a JSON decoding failure), quote what the client sent.
HTTP_MESSAGES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "the request could not be understood"),
    401: ("unauthenticated", "authentication required"),
    403: ("forbidden", "not allowed"),
    404: ("not_found", "no such resource"),
    405: ("method_not_allowed", "method not allowed on this resource"),
    406: ("not_acceptable", "only application/json is offered"),
    411: ("length_required", "a Content-Length is required"),
    412: ("precondition_failed", "the record has changed since it was read"),
    413: ("payload_too_large", "the request body is too large"),
    414: ("uri_too_long", "the URI is too long"),
    415: ("unsupported_media_type", "send application/json"),
    428: ("precondition_required", "If-Match is required"),
    429: ("rate_limited", "too many requests; try again later"),
    431: ("headers_too_large", "the request headers are too large"),
    500: ("internal_error", "internal error"),
    503: ("unavailable", "the service is unavailable; try again later"),
}


class MalformedJson(HTTPException):
    """The body claims to be JSON and is not."""

    code = 400
    description = "the request body is not valid JSON"


def error_response(status: int, code: str, message: str, errors: dict[str, list[str]] | None = None,
                   **extra: Any) -> Response:
    body: dict[str, Any] = {"code": code, "status": status, "message": message}
    if errors:
        body["errors"] = errors
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    return response


def _lookup(exc: Exception) -> tuple[int, str, str | None] | None:
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    # A store's own error that reached us untranslated (psycopg's, psycopg_pool's,
    # sqlite3's, or the event-sourcing library's wrapper of one): unreachable, full,
    # locked or conflicting is StoreUnavailable, whoever raised it.
    if is_store_unavailable(exc):
        return ERROR_TABLE[StoreUnavailable]
    return None


def _field_errors(exc: Exception) -> dict[str, list[str]] | None:
    if isinstance(exc, ValidationFailed):
        return exc.errors
    if isinstance(exc, ValidationError):
        return flatten_errors(exc.messages)
    if isinstance(exc, DomainError):
        return {exc.field or "_schema": [exc.rule]}
    if isinstance(exc, FieldNotRevealable):
        return {name: ["not revealable for your roles"] for name in exc.fields}
    return None


def handle_http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if isinstance(exc, MalformedJson):
        code, message = "malformed_json", MalformedJson.description
    else:
        name = exc.name or "error"
        code, message = HTTP_MESSAGES.get(status, (re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_"), name))
    response = error_response(status, code, message)
    # 405 must say what is allowed; 401 how to authenticate; 429/503 when to retry.
    for header in ("Allow", "WWW-Authenticate", "Retry-After"):
        value = exc.get_response().headers.get(header)
        if value:
            response.headers[header] = value
    return response


def handle_exception(exc: Exception) -> Response:
    mapped = _lookup(exc)
    if mapped is not None:
        status, code, message = mapped
        extra = {"position": exc.position} if isinstance(exc, ProjectionLagging) else {}
        response = error_response(status, code, message or str(exc), _field_errors(exc), **extra)
        if status == 503 and not isinstance(exc, PasswordCheckBusy):
            if is_disk_full(exc):  # the event store's own write, refused for space
                ServerSpace.refused()
            # The type alone: a database's message names hosts, files and values.
            log.warning("dependency unavailable", extra={"fields": {
                "request_id": g.get("request_id"), "exc_type": type(exc).__name__}})
        if status in (429, 503):
            response.headers["Retry-After"] = str(getattr(exc, "retry_after", RETRY_AFTER_SECONDS))
        return response
    # The type alone: the message or trace may hold a value from the request.
    log.error("unhandled exception", extra={"fields": {
        "request_id": g.get("request_id"), "exc_type": type(exc).__name__}})
    return error_response(500, "internal_error", "internal error", request_id=g.get("request_id"))


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_exception)
