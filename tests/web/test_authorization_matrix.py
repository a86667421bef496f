"""The authorisation matrix: every customer endpoint x the seven roles x in and out of
scope -> the status the policy says (R2.5, R2.6, R2.10).

The expected statuses are generated from the policy's own tables (which permission
each operation needs, which roles hold it, which roles are portfolio-scoped), then
checked against what the API answers. A route under /api/v1/customers with no entry
in `web.customers.ENDPOINT_OPERATIONS` fails the suite: nobody can add an endpoint
without saying which rule guards it. A few cells are also written out by hand, so a
wrong rule in the tables cannot pass by agreeing with itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from application.policy import OPERATIONS, Operation
from application.security import ROLE_PERMISSIONS, PORTFOLIO_SCOPED_ROLES
from infrastructure.crypto.kek import LocalKek
from tests.web.customers_support import ROLES, customer_body, plant_customer, strongroom
from tests.web.helpers import quick_login, step_up
from web import create_app
from web.app import close_app
from web.customers import ENDPOINT_OPERATIONS, PREFIX

SUCCESS = {
    Operation.CREATE: 201, Operation.SEARCH: 200, Operation.VIEW: 200, Operation.UPDATE: 200,
    Operation.REVEAL: 200, Operation.HISTORY: 200, Operation.INTERACTIONS_LIST: 200,
    Operation.INTERACTIONS_CREATE: 201, Operation.REVERT: 200, Operation.VIEW_AS_OF: 200,
    Operation.CONSENTS_LIST: 200, Operation.CONSENTS_RECORD: 201,
}
SCOPES = ("in_scope", "out_of_scope")


def expected_status(role: str, operation: Operation, scope: str) -> int:
    if OPERATIONS[operation] not in ROLE_PERMISSIONS[role]:
        return 403
    if scope == "out_of_scope" and role in PORTFOLIO_SCOPED_ROLES:
        if operation is Operation.CREATE:
            return 403  # a new customer has nothing to hide: portfolio_out_of_scope
        if operation is not Operation.SEARCH:
            return 404  # exactly as absent (R2.6); a listing of that portfolio is empty instead
    return SUCCESS[operation]


# Written out by hand: the cells the SPEC states in words.
STATED = {
    ("admin", Operation.VIEW, "in_scope"): 403,
    ("admin", Operation.SEARCH, "in_scope"): 403,
    ("security_officer", Operation.VIEW, "in_scope"): 403,
    ("auditor", Operation.VIEW, "out_of_scope"): 200,
    ("auditor", Operation.REVEAL, "in_scope"): 403,
    ("auditor", Operation.UPDATE, "in_scope"): 403,
    ("agent", Operation.VIEW, "out_of_scope"): 404,
    ("agent", Operation.UPDATE, "out_of_scope"): 404,
    ("agent", Operation.REVEAL, "in_scope"): 200,
    ("agent", Operation.REVERT, "in_scope"): 403,
    ("supervisor", Operation.REVEAL, "out_of_scope"): 404,
    ("supervisor", Operation.REVERT, "in_scope"): 200,
    ("compliance_officer", Operation.VIEW, "out_of_scope"): 200,
    ("compliance_officer", Operation.CREATE, "in_scope"): 403,
    ("dpo", Operation.REVEAL, "out_of_scope"): 200,
    ("agent", Operation.CONSENTS_RECORD, "in_scope"): 201,
    ("auditor", Operation.CONSENTS_RECORD, "in_scope"): 403,
    ("dpo", Operation.CONSENTS_RECORD, "out_of_scope"): 201,
}


def test_the_hand_written_cells_agree_with_the_generated_matrix():
    for (role, operation, scope), status in STATED.items():
        assert expected_status(role, operation, scope) == status, (role, operation, scope)


def served_customer_endpoints(app: Any) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules() if rule.rule.startswith(PREFIX)
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def test_every_customer_endpoint_has_a_rule_in_the_matrix(app):
    served = served_customer_endpoints(app)
    assert served, "no customer endpoints are served"
    missing = served - set(ENDPOINT_OPERATIONS)
    assert not missing, f"endpoints without an authorisation rule: {sorted(missing)}"
    assert set(ENDPOINT_OPERATIONS) <= served, "the matrix names endpoints that are not served"
    assert {Operation(op) for op in ENDPOINT_OPERATIONS.values()} <= set(OPERATIONS)


def test_an_endpoint_added_without_a_rule_is_caught(app_factory):
    app = app_factory()
    app.add_url_rule(f"{PREFIX}/<uuid:customer_id>/export", "customers.export", lambda customer_id: "",
                     methods=["GET"])
    assert served_customer_endpoints(app) - set(ENDPOINT_OPERATIONS) == {("GET", f"{PREFIX}/<uuid:customer_id>/export")}


# -- the matrix itself, against one app ---------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("matrix")
    instance = folder / "instance"
    instance.mkdir()
    LocalKek.create(instance / "kek.key")
    app = create_app({"instance": str(instance), "database_url": f"sqlite:///{folder / 'x.sqlite'}",
                      "blind_index_bits": 8})
    client = app.test_client()
    headers = {}
    for role in ROLES:
        headers[role] = quick_login(client, app, roles=[role], portfolios=["retail"])
        if "customers:reveal" in ROLE_PERMISSIONS[role]:
            step_up(client, headers[role])
    yield {"app": app, "client": client, "headers": headers}
    close_app(app)


def request_for(world: dict[str, Any], method: str, rule: str, operation: Operation, scope: str
                ) -> tuple[str, str, dict[str, Any], dict[str, str]]:
    app = world["app"]
    portfolio = "retail" if scope == "in_scope" else "corporate"
    extra: dict[str, str] = {}
    kwargs: dict[str, Any] = {}
    if operation is Operation.CREATE:
        kwargs["json"] = customer_body(portfolio=portfolio)
        return method, rule, kwargs, extra
    if operation is Operation.SEARCH:
        plant_customer(app, portfolio=portfolio)
        kwargs["query_string"] = {"portfolio": portfolio}
        return method, rule, kwargs, extra
    customer = plant_customer(app, portfolio=portfolio)
    path = rule.replace("<uuid:customer_id>", customer["id"])
    if operation is Operation.UPDATE:
        kwargs["json"] = {"risk_rating": "high"}
        extra["If-Match"] = f'"{strongroom(app).customer_view(customer["id"])["version"]}"'
    elif operation is Operation.REVEAL:
        kwargs["json"] = {"fields": ["email"], "purpose": "authorisation matrix"}
    elif operation is Operation.INTERACTIONS_CREATE:
        kwargs["json"] = {"kind": "note", "channel": "matrix", "notes": "a note"}
    elif operation is Operation.REVERT:
        kwargs["json"] = {"to": datetime.now(UTC).isoformat(), "reason": "authorisation matrix"}
    elif operation is Operation.CONSENTS_RECORD:
        kwargs["json"] = {"purpose": "marketing_contact", "channel": "email", "granted": True,
                          "notice_version": "v1", "source": "web_form"}
    return method, path, kwargs, extra


CELLS = [
    (method, rule, Operation(operation), role, scope)
    for (method, rule), operation in sorted(ENDPOINT_OPERATIONS.items())
    for role in ROLES
    for scope in SCOPES
]


@pytest.mark.parametrize(("method", "rule", "operation", "role", "scope"), CELLS,
                         ids=[f"{m} {r.removeprefix(PREFIX) or '/'} {role} {scope}" for m, r, _, role, scope in CELLS])
@pytest.mark.controls("PCI-DSS-7.2.1", "ASVS-V8")
def test_the_api_answers_what_the_policy_says(world, method, rule, operation, role, scope):
    method, path, kwargs, extra = request_for(world, method, rule, operation, scope)
    response = world["client"].open(path, method=method, headers={**world["headers"][role], **extra}, **kwargs)
    want = expected_status(role, operation, scope)
    assert response.status_code == want, response.get_json()
    body = response.get_json()
    if want >= 400:
        assert set(body) <= {"code", "status", "message", "errors"} and body["status"] == want
    if want == 404:
        assert body["code"] == "not_found"
    if operation is Operation.SEARCH and want == 200:
        portfolios = {item["portfolio"] for item in body["items"]}
        if scope == "out_of_scope" and role in PORTFOLIO_SCOPED_ROLES:
            assert portfolios == set()  # the other portfolio lists as empty
        else:
            assert portfolios == {"retail" if scope == "in_scope" else "corporate"}
    if response.status_code < 300:
        assert response.headers["Cache-Control"] == "no-store"


def test_matrix_covers_each_role_and_both_scopes_for_each_endpoint():
    assert len(CELLS) == len(ENDPOINT_OPERATIONS) * len(ROLES) * len(SCOPES) and len(ROLES) == 7
