"""A wired application per test, on SQLite and again on PostgreSQL (STYLE 12)."""

from __future__ import annotations

import pytest

from application.context import RequestContext, acting_as
from infrastructure.composition import Settings, build
from infrastructure.crypto.kek import LocalKek

OPERATOR = RequestContext(actor_id="operator:test", via="cli", purpose="tests")


def make_components(tmp_path, database_url, **overrides):
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    if not (instance / "kek.key").exists():
        LocalKek.create(instance / "kek.key")
    settings = Settings.load(instance, {"database_url": database_url, "blind_index_bits": 8, **overrides})
    return build(settings)


@pytest.fixture
def components(tmp_path, database_url):
    built = make_components(tmp_path, database_url)
    with acting_as(OPERATOR):
        yield built
    built.close()


@pytest.fixture
def app(components):
    return components.app


def customer_fields(**changes):
    fields = {
        "type": "individual",
        "full_name": "Ada Plantedname",
        "date_of_birth": "1980-02-03",
        "national_id": "QQ123456C",
        "email": "ada.planted@example.org",
        "phone": "+44 7700 900123",
        "address": {"line1": "1 Planted Street", "line2": None, "city": "London", "postcode": "SW1A 1AA", "country": "GB"},
        "portfolio": "retail",
        "risk_rating": "low",
        "cards": [{"pan": "4111111111111111", "expiry": "12/29"}],
        "bank_accounts": [{"iban": "GB82WEST12345698765432"}],
    }
    fields.update(changes)
    return fields


def stepped_up(identity, token, totp, clock):
    """The session's actor after a step-up (R2.7, R2.11) with the next TOTP step's code
    (the clock moves on 30 s: each code counts once): what a reveal, break-glass, an
    approval, a role change or a password change needs within 5 minutes."""
    clock.advance(seconds=30)
    identity.step_up(identity.authenticate(token).actor, totp.at(clock.now))
    return identity.authenticate(token).actor
