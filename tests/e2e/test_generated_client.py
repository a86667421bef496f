"""A client generated from the served OpenAPI document by `openapi-python-client` works.

The document is fetched from the app as a client would fetch it, the client is
generated into a temporary folder and imported, and a new member of staff drives the
API with it alone: sign in (password, then TOTP enrolment), change the one-time
password, list staff, register a customer, read it masked, step up, reveal, read its
history. The generated code parses every answer with the document's models, so a
document that misstates a path, a parameter, a body or an answer fails here.

The client speaks to the app in-process (httpx's WSGI transport): what is under test
is the document, not the TLS server (tests/e2e/test_serve_tls.py covers that).
"""

from __future__ import annotations

import importlib
import json
from datetime import date
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from infrastructure.crypto.kek import LocalKek
from tests.web.helpers import MovableClock, create_staff, current_step, use_clock
from web import create_app
from web.app import close_app

PACKAGE = "strongroom_client"
NEW_PASSWORD = "seven amber kites over the quay"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("generated-client")
    instance = folder / "instance"
    instance.mkdir()
    LocalKek.create(instance / "kek.key")
    made = create_app({"instance": str(instance), "database_url": f"sqlite:///{folder / 'x.sqlite'}",
                       "blind_index_bits": 8})
    use_clock(made, MovableClock())
    yield made
    close_app(made)


@pytest.fixture(scope="module")
def generated(app: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The package openapi-python-client writes from the served document, imported."""
    folder = tmp_path_factory.mktemp("client")
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = folder / "openapi.json"
    document.write_text(json.dumps(response.get_json()))
    config = folder / "config.json"
    config.write_text(json.dumps({"post_hooks": []}))  # no formatter run on the generated code
    generator = Path(sys.executable).with_name("openapi-python-client")
    done = subprocess.run(
        [str(generator), "generate", "--path", str(document), "--output-path", str(folder / PACKAGE),
         "--meta", "none", "--config", str(config)],
        capture_output=True, text=True, timeout=120, cwd=folder,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Anything the generator could not model is missing from the client: the document is wrong.
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def api(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.{name}")


def models() -> Any:
    return importlib.import_module(f"{PACKAGE}.models")


def wsgi(app: Any) -> dict[str, Any]:
    return {"transport": httpx.WSGITransport(app=app)}


def test_a_generated_client_signs_in_registers_reads_steps_up_and_reveals(app: Any, generated: Any) -> None:
    m = models()
    _, username, one_time = create_staff(app, "generated.client", roles=("supervisor", "admin"),
                                         portfolios=("retail",))
    anonymous = generated.Client(base_url="http://strongroom.test", httpx_args=wsgi(app), raise_on_unexpected_status=True)

    # Password, then TOTP enrolment with the URI the first login shows.
    started = api("auth.login").sync(client=anonymous, body=m.Login(username=username, password=one_time))
    assert isinstance(started, m.LoginStarted), started
    assert started.status.value == "mfa_enrollment_required"
    totp = pyotp.TOTP(pyotp.parse_uri(started.totp_uri).secret)
    step = current_step(app)
    opened = api("auth.mfa").sync(client=anonymous, body=m.Mfa(challenge=started.challenge,
                                                                   code=totp.generate_otp(step)))
    assert isinstance(opened, m.SessionOpened), opened
    assert opened.must_change_password is True
    client = generated.AuthenticatedClient(base_url="http://strongroom.test", token=opened.token,
                                           httpx_args=wsgi(app), raise_on_unexpected_status=True)

    changed = api("auth.change_password").sync(
        client=client, body=m.PasswordChange(current_password=one_time, new_password=NEW_PASSWORD))
    assert isinstance(changed, m.PasswordChanged) and changed.password_changed

    staff = api("staff.list_staff").sync(client=client)
    assert isinstance(staff, m.StaffPage), staff
    assert username in [member.username for member in staff.items] and staff.next_cursor is None

    body = m.CustomerCreate(
        type_=m.CustomerCreateType.INDIVIDUAL, full_name="Ada Generated", date_of_birth=date(1980, 2, 3), email="ada.generated@example.org",
        phone="+44 7700 900456", portfolio="retail", risk_rating=m.CustomerCreateRiskRating.LOW,
        address=m.Address(line1="1 Client Street", city="London", country=m.AddressCountry.GB),
        cards=[m.Card(pan="4111111111111111", expiry="12/29")],
    )
    created = api("customers.create_customer").sync_detailed(client=client, body=body)
    assert created.status_code == 201, created.content
    customer = created.parsed
    assert isinstance(customer, m.CustomerView)
    assert created.headers["ETag"] == f'"{customer.version}"'

    read = api("customers.read_customer").sync(customer.id, client=client)
    assert isinstance(read, m.CustomerView), read
    assert read.full_name == "Ada Generated" and read.email != "ada.generated@example.org"  # masked
    assert "email" in read.revealable

    # Before a step-up the reveal is refused, in the document's Error shape.
    refused = api("customers.reveal_fields").sync(
        customer.id, client=client, body=m.RevealRequest(fields=[m.RevealRequestFieldsItem.EMAIL],
                                                         purpose="customer called about a refund"))
    assert isinstance(refused, m.Error) and refused.code == "step_up_required"

    app.extensions["strongroom"].identity.clock.advance(seconds=30)  # a fresh TOTP time-step
    stepped = api("auth.step_up").sync(client=client, body=m.StepUp(code=totp.generate_otp(step + 1)))
    assert isinstance(stepped, m.StepUpResult), stepped

    revealed = api("customers.reveal_fields").sync(
        customer.id, client=client, body=m.RevealRequest(fields=[m.RevealRequestFieldsItem.EMAIL],
                                                         purpose="customer called about a refund"))
    assert isinstance(revealed, m.RevealResult), revealed
    assert revealed.fields["email"] == "ada.generated@example.org"

    history = api("customers.customer_history").sync(customer.id, client=client)
    assert isinstance(history, m.History), history
    assert [event.type_ for event in history.events][0] == "Registered"
