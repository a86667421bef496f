"""`GET /api/v1/reports/{name}` (R6.1): the internal-audit reports, JSON or CSV.

Thin view over `application/reports.py`, which decides who may (auditors and
compliance officers), computes the report from the log over the window and records
the read.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from flask_smorest import Api
from marshmallow import Schema, fields, validate

from application.reports import FORMATS, REPORTS, Reports, render
from web.app import components
from web.auth import current_actor
from web.openapi import AUTHENTICATED, Blueprint
from web.schemas import StrictSchema

blueprint = Blueprint("reports", __name__, url_prefix="/api/v1",
                      description="Internal-audit reports (R6.1), computed from the event log over a window.")


class ReportQuerySchema(StrictSchema):
    since = fields.AwareDateTime(metadata={"description": "Window start, ISO-8601 with a zone."})
    until = fields.AwareDateTime(metadata={"description": "Window end, ISO-8601 with a zone; a past window "
                                                          "always gives the same report."})
    format = fields.String(load_default="json", validate=validate.OneOf(FORMATS),
                           metadata={"description": "`json`, or `csv` (text/csv: a header line, then one "
                                                    "line per row; lists joined with `;`)."})


class ReportWindowSchema(Schema):
    since = fields.String(allow_none=True, required=True)
    until = fields.String(allow_none=True, required=True)
    first_position = fields.Integer(required=True)
    last_position = fields.Integer(required=True)
    as_of = fields.String(allow_none=True, required=True)


class ReportSchema(Schema):
    report = fields.String(required=True, metadata={"enum": list(REPORTS)})
    window = fields.Nested(ReportWindowSchema, required=True)
    rows = fields.List(fields.Dict(), required=True)


def reports() -> Reports:
    built: Reports = components().reports
    return built


@blueprint.get("/reports/<name>")
@blueprint.arguments(ReportQuerySchema, location="query")
@blueprint.response(200, ReportSchema, description="The report (JSON; or text/csv with `format=csv`).")
@blueprint.doc(responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})
@blueprint.errors(*AUTHENTICATED, 400, 404, e403="Not an auditor or compliance officer.",
                  e422="A query parameter is not valid, or `since` is after `until`.")
def report(query: dict[str, Any], name: str) -> Any:
    """An internal-audit report over [since, until] (R6.1): access-review, privileged-actions,
    reveals-exports, failed-logins, break-glass, backups-drills, chain-verification, alerts,
    recertification. Auditors and compliance officers; each read is recorded."""
    built = reports().report(current_actor(), name, since=query.get("since"), until=query.get("until"))
    if query["format"] == "csv":
        return Response(render(built, "csv"), mimetype="text/csv", headers={"Cache-Control": "no-store"})
    return built


def install(app: Flask, api: Api) -> None:
    api.register_blueprint(blueprint)
