"""A client generated from the served OpenAPI document by `openapi-python-client` works.

The document is fetched from a running `strongroom serve` over TLS, as a client's
developer would fetch it; the client is generated into a temporary folder, imported,
and used alone against that server: the first administrator signs in (password, then
the TOTP enrolled at init) and lists staff; a new supervisor signs in (password, then
TOTP enrolment), changes the one-time password, registers a customer, reads it
masked, is refused a reveal before stepping up, steps up, reveals and reads the
history. The generated code parses every answer with the document's models, so a
document that misstates a path, a parameter, a body or an answer fails here.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.e2e.server import call, initialise, serving, staff_add, trusting

PACKAGE = "strongroom_client"
NEW_PASSWORD = "seven amber kites over the quay"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("generated-client")
    admin = initialise(folder / "instance")
    supervisor = staff_add(folder / "instance", "generated.client", "supervisor", "retail")
    with serving(folder / "instance", folder / "serve.log") as running:
        yield {**running, "admin": admin, "supervisor": supervisor}


@pytest.fixture(scope="module")
def generated(server: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The package openapi-python-client writes from the served document, imported."""
    folder = tmp_path_factory.mktemp("client")
    status, _, served = call(server, "GET", "/api/v1/openapi.json")
    assert status == 200
    document = folder / "openapi.json"
    document.write_text(json.dumps(served))
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


def over_tls(server: dict[str, Any]) -> dict[str, Any]:
    """How the generated client reaches the server: HTTPS, trusting the instance's certificate."""
    return {"base_url": f"https://localhost:{server['port']}", "raise_on_unexpected_status": True,
            "verify_ssl": trusting(server["cert"])}


def test_a_generated_client_signs_in_registers_reads_steps_up_and_reveals(server: dict[str, Any],
                                                                          generated: Any) -> None:
    m = models()
    anonymous = generated.Client(**over_tls(server))

    # The first administrator: password, then the TOTP enrolled at init; lists staff.
    admin = server["admin"]
    started = api("auth.login").sync(client=anonymous, body=m.Login(username="admin", password=admin["password"]))
    assert isinstance(started, m.LoginStarted) and started.status.value == "mfa_required", started
    admin_totp = pyotp.parse_uri(admin["totp_uri"])
    opened = api("auth.mfa").sync(client=anonymous, body=m.Mfa(challenge=started.challenge, code=admin_totp.now()))
    assert isinstance(opened, m.SessionOpened), opened
    as_admin = generated.AuthenticatedClient(token=opened.token, **over_tls(server))
    changed = api("auth.change_password").sync(
        client=as_admin, body=m.PasswordChange(current_password=admin["password"], new_password=NEW_PASSWORD))
    assert isinstance(changed, m.PasswordChanged) and changed.password_changed
    staff = api("staff.list_staff").sync(client=as_admin)
    assert isinstance(staff, m.StaffPage), staff
    assert {"admin", "generated.client"} <= {member.username for member in staff.items}
    assert staff.next_cursor is None

    # A supervisor: password, then TOTP enrolment with the URI the first login shows.
    username, one_time = "generated.client", server["supervisor"]["one_time_password"]
    started = api("auth.login").sync(client=anonymous, body=m.Login(username=username, password=one_time))
    assert isinstance(started, m.LoginStarted), started
    assert started.status.value == "mfa_enrollment_required"
    totp = pyotp.TOTP(pyotp.parse_uri(started.totp_uri).secret)
    step = int(time.time()) // 30
    opened = api("auth.mfa").sync(client=anonymous, body=m.Mfa(challenge=started.challenge,
                                                               code=totp.generate_otp(step)))
    assert isinstance(opened, m.SessionOpened), opened
    assert opened.must_change_password is True
    client = generated.AuthenticatedClient(token=opened.token, **over_tls(server))

    changed = api("auth.change_password").sync(
        client=client, body=m.PasswordChange(current_password=one_time, new_password=NEW_PASSWORD))
    assert isinstance(changed, m.PasswordChanged) and changed.password_changed
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

    # Each code counts once; the next time-step's code is accepted (±1 step, R2.2).
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
