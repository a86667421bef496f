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

A second fuzz (issue 10 item 5) takes each operation's valid requests and spoils one
string in them, or all (body, query or path), with hostile text: unpaired surrogates, bidi and
format controls, NUL, 1 MiB strings. Every answer must be below 500, and a refused
request must leave the event log where it was (no partial write).

One test per operation, listed at collection from the document a throwaway app serves,
so an operation added to the API is fuzzed without anyone remembering to add it here.
(`schemathesis.pytest.from_fixture` does not run under pytest 9, hence the explicit
Hypothesis loop.)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

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


# -- hostile strings in every operation (issue 10 item 5) ------------------------------------------

# Lone surrogates twice: the character of issue 10's 500, and the one most worth trying.
HOSTILE_CHARACTERS = ["\udfff", "\ud800", "\udfff", "\ud800", "\u202e", "\u2066", "\u2069", "\u200b",
                      "\u200d", "\ufeff", "\x00"]
HOSTILE_EXAMPLES = 30
MEBIBYTE = 1024 * 1024
# Refusals decided on the request alone: they must write nothing at all.
SHAPE_REFUSALS = {400, 413, 414, 415, 422}


def hostile_strings(*, in_url: bool) -> Any:
    """Text carrying a hostile character; a URL cannot carry a lone surrogate (it is
    percent-encoded as UTF-8 first), so those go only in bodies and queries."""
    characters = [c for c in HOSTILE_CHARACTERS if not in_url or not "\ud800" <= c <= "\udfff"]
    spoiled = st.builds(lambda before, char, after: before + char + after,
                        st.text(max_size=8), st.sampled_from(characters), st.text(max_size=8))
    huge = st.sampled_from(["x" * MEBIBYTE, "\u202e" * (MEBIBYTE // 3), "4929381278166016 " * (MEBIBYTE // 17)])
    return spoiled if in_url else st.one_of(spoiled, spoiled, spoiled, huge)


def _strings(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Where the strings are in a JSON value, as paths of keys and indexes."""
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _strings(item, (*path, key))]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in _strings(item, (*path, index))]
    return []


def _replaced(value: Any, path: tuple[Any, ...], new: str) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


def _spoiled(case: Any, draw: Any) -> None:
    """Spoil one string of the case (so that the rest is valid and the request gets as far
    as it can), or now and then every string."""
    parts = {"body": case.body if isinstance(case.body, (dict, list, str)) else None,
             "query": dict(case.query) if case.query else None,
             "path_parameters": dict(case.path_parameters) if case.path_parameters else None}
    targets = [(part, path) for part, value in parts.items() if value is not None for path in _strings(value)]
    if not targets:
        return
    # Hypothesis leans to the first choice and to small integers: "one string" is the default.
    chosen = targets if draw(st.integers(0, 3)) == 3 else [draw(st.sampled_from(targets))]
    for part, path in chosen:
        parts[part] = _replaced(parts[part], path, draw(hostile_strings(in_url=part != "body")))
    for part, value in parts.items():
        if value is not None:
            setattr(case, part, value)


def _send(app: Any, case: Any, headers: dict[str, str]) -> Any:
    """The case through Flask's client: its JSON encoder writes a lone surrogate as the
    escape `\\udfff`, as any JSON client can (schemathesis would encode it as UTF-8, which
    cannot be done)."""
    path = case.path
    for name, value in (case.path_parameters or {}).items():
        path = path.replace("{" + name + "}", quote(str(value), safe=""))
    # schemathesis marks "no body" with a sentinel of its own, neither None nor JSON.
    body = {"json": case.body} if isinstance(case.body, (dict, list, str, int, float, bool)) else {}
    return app.test_client().open(path, method=case.method, headers=headers, query_string=case.query or None, **body)


def _log_position(app: Any) -> int:
    return int(app.extensions["strongroom"].app.recorder.max_notification_id() or 0)


@pytest.mark.parametrize(("path", "method"), [pytest.param(p, m, id=f"{m} {p}") for p, m in OPERATIONS])
def test_hostile_strings_never_get_a_5xx_nor_leave_a_partial_write(api: Any, api_schema: Any, supervisor: Any,
                                                                    path: str, method: str) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE), data=st.data())
    @settings(max_examples=HOSTILE_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def fuzz(case: Any, data: Any) -> None:
        headers = dict(supervisor)
        if path in SESSION_ENDING:
            headers = dict(quick_login(api.test_client(), api, roles=["supervisor"], portfolios=["retail"]))
        if "If-Match" in (case.headers or {}):
            headers["If-Match"] = case.headers["If-Match"]
        _spoiled(case, data.draw)
        before = _log_position(api)
        response = _send(api, case, headers)
        assert response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])
        if response.status_code in SHAPE_REFUSALS:
            assert _log_position(api) == before, response.status_code

    fuzz()
