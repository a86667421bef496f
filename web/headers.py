"""Request ids and the security headers every response carries (R1.6, R7.3)."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

# A client may pass its own id so its logs and ours can be joined; only a plain
# token is taken, so a header cannot inject text (or a new line) into our logs.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")

SECURITY_HEADERS = {
    # Two years, as HSTS preload lists ask; browsers then refuse plain HTTP to us.
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    # A JSON answer must never be sniffed into HTML or script.
    "X-Content-Type-Options": "nosniff",
    # An API has nothing to render: no scripts, no frames (clickjacking).
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


def assign_request_id() -> None:
    offered = request.headers.get("X-Request-Id", "")
    g.request_id = offered if _REQUEST_ID.fullmatch(offered) else str(uuid.uuid4())


def add_response_headers(response: Response) -> Response:
    response.headers["X-Request-Id"] = g.get("request_id") or str(uuid.uuid4())
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    # Customer data must not stay in a browser's or proxy's cache (R1.3). Health
    # and metrics answers are not worth caching either, so the rule is simply "all".
    response.headers["Cache-Control"] = "no-store"
    return response


def install(app: Flask) -> None:
    app.before_request(assign_request_id)
    app.after_request(add_response_headers)
