"""Only `application/json` bodies reach a view (issue 10, item 10g).

Attack: a cross-site "simple request" (a form post or text/plain, which a browser
sends without a CORS preflight) or a `+json` type that a proxy or WAF parses
differently from us. Routes with a body schema already refused those; a route that
ignores its body (logout) used to act on them. Every one now answers 415 through
the one error table, and nothing happens.
"""

from __future__ import annotations

import pytest

from tests.web.helpers import quick_login
from tests.web.test_errors import assert_error_shape

NOT_JSON = [
    ("text/plain", "x"),
    ("application/x-www-form-urlencoded", "a=b"),
    ("multipart/form-data; boundary=zz", "--zz\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--zz--\r\n"),
    ("application/merge-patch+json", "{}"),
    ("application/vnd.strongroom+json", "{}"),
    (None, "{}"),
]


@pytest.mark.parametrize(("content_type", "body"), NOT_JSON)
def test_logout_with_a_body_that_is_not_json_is_415_and_the_session_lives_on(client, app, content_type, body):
    headers = quick_login(client, app)
    sent = {**headers, **({"Content-Type": content_type} if content_type else {})}
    response = client.post("/api/v1/auth/logout", headers=sent, data=body)
    assert_error_shape(response, 415, "unsupported_media_type")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # The view never ran: the session was not ended.
    assert client.get("/api/v1/auth/sessions", headers=headers).status_code == 200


@pytest.mark.parametrize(("content_type", "body"), NOT_JSON)
@pytest.mark.controls("ASVS-V4")
def test_a_login_with_a_body_that_is_not_json_is_415(client, content_type, body):
    sent = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/v1/auth/login", headers=sent,
                           data=body if body != "{}" else '{"username": "admin", "password": "x"}')
    assert_error_shape(response, 415, "unsupported_media_type")


def test_json_with_a_charset_and_a_bodiless_write_are_still_accepted(client, app):
    headers = quick_login(client, app)
    response = client.post("/api/v1/auth/login", data='{"username": "nobody", "password": "wrong password!"}',
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 401  # parsed and judged, not refused for its type
    assert client.post("/api/v1/auth/logout", headers=headers).status_code in (200, 204)


def test_the_document_says_a_body_must_be_json(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert "415" in document["info"]["description"]
    login = document["paths"]["/api/v1/auth/login"]["post"]
    assert "415" in login["responses"] and list(login["requestBody"]["content"]) == ["application/json"]
