"""Schemathesis over /api/v1/openapi.json with ALL its checks: every operation,
authenticated, in-process through the WSGI app, with valid and with invalid requests.

Not only "no server errors": every answer must be a documented status with the
documented content type, headers and body; a request the document calls valid must be
accepted, one it calls invalid refused; a required header left out must be refused;
an authenticated operation must refuse a request without its token.

The caller is a supervisor of the `retail` portfolio, stepped up, with customers on
file, so generated requests reach the use cases rather than stopping at 401/403.
Bounded (`MAX_EXAMPLES` per operation and mode, derandomised so CI sees the same
examples each run) so the whole run stays well under a minute and a half.

Where a rule cannot be said in JSON Schema, the operation's 422 (or 412) says it in
words, and `CONFIG` below lets *that* status through the "valid data is accepted"
check for *that* operation only, naming the rule. Every other rule is in the schema
(enums from domain/, ISO country codes, lengths, patterns, the purpose's shape).

One test per operation, listed at collection from the document a throwaway app serves,
so an operation added to the API is fuzzed without anyone remembering to add it here.
(`schemathesis.pytest.from_fixture` does not run under pytest 9, hence the explicit
Hypothesis loop.)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from infrastructure.crypto.kek import LocalKek
from tests.web.customers_support import plant_customer
from tests.web.schemathesis_config import config
from tests.web.helpers import quick_login, step_up
from web import create_app
from web.app import close_app
from web.openapi import openapi_path

MAX_EXAMPLES = 12
METHODS = ("get", "put", "post", "patch", "delete")

# Operations whose examples may end the session they run under: each example signs in anew.
SESSION_ENDING = {"/api/v1/auth/logout", "/api/v1/auth/password", "/api/v1/auth/sessions/{session_id}"}

def _app(folder: Path) -> Any:
    instance = folder / "instance"
    instance.mkdir()
    LocalKek.create(instance / "kek.key")
    return create_app({"instance": str(instance), "database_url": f"sqlite:///{folder / 'x.sqlite'}",
                       "blind_index_bits": 8})


def served_document() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        app = _app(Path(folder))
        try:
            document: dict[str, Any] = app.test_client().get("/api/v1/openapi.json").get_json()
        finally:
            close_app(app)
    return document


DOCUMENT = served_document()
OPERATIONS = sorted((path, method.upper()) for path, item in DOCUMENT["paths"].items()
                    for method in item if method in METHODS)


def _can_be_invalid(path: str, method: str) -> bool:
    """Whether a request to the operation can be made invalid: a parameter, a body or a token to spoil."""
    operation = DOCUMENT["paths"][path][method.lower()]
    return bool(operation.get("parameters") or operation.get("requestBody") or operation.get("security") != [])


CASES = [pytest.param(path, method, mode, id=f"{method} {path}-{label}")
         for path, method in OPERATIONS
         for mode, label in ((GenerationMode.POSITIVE, "valid"), (GenerationMode.NEGATIVE, "invalid"))
         if mode is GenerationMode.POSITIVE or _can_be_invalid(path, method)]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    app = _app(tmp_path_factory.mktemp("schemathesis"))
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
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api, config=SchemathesisConfig.from_dict(config()))


def all_checks() -> list[Any]:
    load_all_checks()
    return CHECKS.get_all()


def test_all_of_schemathesis_checks_run() -> None:
    names = {check.__name__ for check in all_checks()}
    assert {"positive_data_acceptance", "negative_data_rejection", "status_code_conformance",
            "missing_required_header", "ignored_auth", "response_schema_conformance"} <= names


def test_every_route_the_app_serves_is_fuzzed(api: Any) -> None:
    served = {(openapi_path(rule.rule), method) for rule in api.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == set(OPERATIONS)
    assert ("/api/v1/customers/{customer_id}", "PATCH") in served


@pytest.mark.parametrize(("path", "method", "mode"), CASES)
def test_the_operation_answers_as_its_document_says(api: Any, api_schema: Any, supervisor: Any,
                                                    path: str, method: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    customer_ids = api.extensions["test.customer_ids"]
    checks = all_checks()

    @given(case=operation.as_strategy(generation_mode=mode), real_customer=st.sampled_from([None, *customer_ids]))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def fuzz(case: Any, real_customer: str | None) -> None:
        headers = dict(supervisor)
        if path in SESSION_ENDING:
            headers = dict(quick_login(api.test_client(), api, roles=["supervisor"], portfolios=["retail"]))
        if mode is GenerationMode.NEGATIVE:
            # Sent as generated: patching it up could repair the very part made invalid.
            # A case whose invalid part is the missing token goes without one.
            if "Authorization" not in (case.headers or {}) and operation.definition.raw.get("security") != []:
                headers = {}
            case.call_and_validate(headers=headers, checks=checks)
            return
        # Half the time aim at a customer on file, so requests get past "not found".
        if real_customer is not None and "customer_id" in (case.path_parameters or {}):
            case.path_parameters["customer_id"] = real_customer
            if method == "PATCH":  # and name the version on file
                version = api.extensions["strongroom"].app.customer_view(real_customer)["version"]
                case.headers = {**(case.headers or {}), "If-Match": f'"{version}"'}
        if real_customer is not None and path == "/api/v1/customers" and isinstance(case.body, dict):
            case.body["portfolio"] = "retail"  # one of the caller's own
        case.call_and_validate(headers=headers, checks=checks)

    fuzz()
