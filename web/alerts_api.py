"""Alerts over the API (R3.6): `GET /api/v1/alerts`, `GET /api/v1/alerts/{id}` and
`POST /api/v1/alerts/{id}/ack`.

Thin resources over `application.alerts.AlertDesk`, which decides who may (reading
needs `alerts:read`; acknowledging, `alerts:acknowledge`: security officers) and
records each listing, each read and each refusal.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

from application.alerts import AlertDesk, AlertFilter
from web.auth import current_actor
from web.openapi import AUTHENTICATED, WITH_BODY, Api, Blueprint
from web.schemas_alerts import AcknowledgeSchema, AlertPageSchema, AlertSchema, AlertsQuerySchema

PREFIX = "/api/v1/alerts"
blueprint = Blueprint("alerts", __name__, url_prefix=PREFIX,
                      description="Alerts the monitor raised: list them, read one, acknowledge it with a note.")


def desk() -> AlertDesk:
    """The alerts use cases, built once by the composition root."""
    built: AlertDesk = current_app.extensions["strongroom"].alerts
    return built


@blueprint.get("")
@blueprint.arguments(AlertsQuerySchema, location="query")
@blueprint.response(200, AlertPageSchema, description="A page of alerts, newest first; follow next_cursor.")
@blueprint.errors(*AUTHENTICATED, 400, e403="Needs alerts:read (security or compliance officer).",
                  e422="A query parameter is not valid, or `since` is after `until`.")
def list_alerts(query: dict[str, Any]) -> dict[str, Any]:
    """Alerts, newest first, filtered by status, severity, rule, staff member and time (R3.6).

    Each listing is itself recorded in the audit trail."""
    filters = AlertFilter(status=query.get("status"), severity=query.get("severity"),
                          rule_id=query.get("rule_id"), actor=query.get("actor"),
                          since=query.get("since"), until=query.get("until"))
    page = desk().list_alerts(current_actor(), filters, limit=query["limit"], cursor=query.get("cursor"))
    return {"items": page.items, "next_cursor": page.next_cursor}


@blueprint.get("/<alert_id>")
@blueprint.response(200, AlertSchema, description="The alert.")
@blueprint.errors(*AUTHENTICATED, 404, e403="Needs alerts:read (security or compliance officer).")
def get_alert(alert_id: str) -> Any:
    """One alert (R3.6); the read is recorded."""
    return desk().get_alert(current_actor(), alert_id)


@blueprint.post("/<alert_id>/ack")
@blueprint.arguments(AcknowledgeSchema)
@blueprint.response(200, AlertSchema, description="Acknowledged; the note is an event on the alert.")
@blueprint.errors(*AUTHENTICATED, *WITH_BODY, 404, e403="Needs alerts:acknowledge (security officer).",
                  e409="The alert is already acknowledged; the first note stands.")
def acknowledge_alert(body: dict[str, Any], alert_id: str) -> Any:
    """Acknowledge an alert with a note saying what was found or done (R3.6)."""
    return desk().acknowledge(current_actor(), alert_id, body["note"])


def install(app: Flask, api: Api) -> None:
    api.register_blueprint(blueprint)
