"""Schemathesis over /api/v1/openapi.json: every operation, authenticated, in-process
through the WSGI app. Zero server errors, zero responses that break the document.

The caller is a supervisor of the `retail` portfolio, stepped up, with customers on
file, so generated requests reach the use cases rather than stopping at 401/403.
Bounded (`MAX_EXAMPLES` per operation, derandomised so CI sees the same examples each
run) so the whole run stays well under a minute.

One test per operation, listed at collection from the same document the app serves
(`web.openapi.build_spec`), so an operation added to the API is fuzzed without
anyone remembering to add it here. (`schemathesis.pytest.from_fixture` does not run
under pytest 9, hence the explicit Hypothesis loop.)
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from infrastructure.crypto.kek import LocalKek
from tests.web.customers_support import plant_customer
from tests.web.helpers import quick_login, step_up
from web import create_app
from web.app import close_app

MAX_EXAMPLES = 25
# No 5xx, and every answer within the document: a documented status, content type,
# headers and body. Not `positive_data_acceptance`: a request can fit the JSON Schema
# and still break a domain rule no schema states (a Luhn digit, an ISO country code,
# a KYC transition, an If-Match naming another version), and the 422 it gets is right.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
METHODS = ("get", "put", "post", "patch", "delete")

# Operations whose examples may end the session they run under: each example signs in anew.
SESSION_ENDING = {"/api/v1/auth/logout", "/api/v1/auth/password", "/api/v1/auth/sessions/{session_id}"}


def documented_operations() -> list[tuple[str, str]]:
    import importlib
    import pkgutil

    import web
    from web.openapi import build_spec

    for module in pkgutil.iter_modules(web.__path__):
        importlib.import_module(f"web.{module.name}")  # each blueprint registers its operations

    document = build_spec()
    return sorted((path, method.upper()) for path, item in document["paths"].items()
                  for method in item if method in METHODS)


OPERATIONS = documented_operations()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("schemathesis")
    instance = folder / "instance"
    instance.mkdir()
    LocalKek.create(instance / "kek.key")
    app = create_app({"instance": str(instance), "database_url": f"sqlite:///{folder / 'x.sqlite'}",
                      "blind_index_bits": 8})
    app.extensions["test.customer_ids"] = [plant_customer(app)["id"] for _ in range(3)]
    yield app
    close_app(app)


@pytest.fixture(scope="module")
def supervisor(api: Any) -> Any:
    client = api.test_client()
    headers = quick_login(client, api, roles=["supervisor"], portfolios=["retail"])
    step_up(client, headers)
    return headers


@pytest.fixture(scope="module")
def api_schema(api: Any) -> Any:
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api)


def test_every_route_the_app_serves_is_fuzzed(api: Any) -> None:
    from web.openapi import openapi_path

    served = {(openapi_path(rule.rule), method) for rule in api.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == set(OPERATIONS)
    assert ("/api/v1/customers/{customer_id}", "PATCH") in served


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_the_operation_answers_within_its_documented_shape(api: Any, api_schema: Any, supervisor: Any,
                                                           path: str, method: str) -> None:
    operation = api_schema[path][method]

    customer_ids = api.extensions["test.customer_ids"]

    @given(case=operation.as_strategy(), real_customer=st.sampled_from([None, *customer_ids]))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def fuzz(case: Any, real_customer: str | None) -> None:
        # Half the time aim at a customer on file, so requests get past "not found".
        if real_customer is not None and "customer_id" in (case.path_parameters or {}):
            case.path_parameters["customer_id"] = real_customer
            if method == "PATCH":  # and, for a change, name the version on file
                version = api.extensions["strongroom"].app.customer_view(real_customer)["version"]
                case.headers = {**(case.headers or {}), "If-Match": f'"{version}"'}
        if real_customer is not None and path == "/api/v1/customers" and isinstance(case.body, dict):
            case.body["portfolio"] = "retail"  # one of the caller's own
        headers = dict(supervisor)
        if path in SESSION_ENDING:
            headers = dict(quick_login(api.test_client(), api, roles=["supervisor"], portfolios=["retail"]))
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        assert response.status_code < 500

    fuzz()
