"""Weak passwords and weak recovery codes, attacked through the API on SQLite and on
PostgreSQL (issue 10, items 10a and 10b; R2.1, R2.2).

10b: a member of staff (or someone choosing for them) sets a password a guesser tries
first: spaces, one key held down, the username spelt with look-alike letters, the
service's name and the year. Each is refused with 422 naming `new_password`, never
echoing it, and a sound passphrase still passes.

10a: recovery codes carry 80 random bits and are kept salted, so a stolen staff table
cannot be searched offline; codes of the old 40-bit, unsalted format still open one
session (people hold them on paper) and that first use replaces the whole set.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from uuid import UUID

import pyotp
import pytest

from domain.staff import StaffMember
from tests.web.helpers import OPERATOR, PASSWORD, components, create_staff, login, sign_in
from application.context import acting_as


@pytest.fixture
def app(app_factory, database_url):
    return app_factory(database_url=database_url)


# -- 10b: the password check --------------------------------------------------------------------


def weak_passwords(username: str, year: int) -> dict[str, str]:
    cyrillic = username.replace("o", "\u043e").replace("e", "\u0435").replace("a", "\u0430")
    return {
        "spaces only": " " * 16,
        "no-break spaces only": "\u00a0" * 16,
        "invisible characters only": "\u200b" * 16,
        "one key held down": "a" * 16,
        "one key, both cases and full width": "Aa\uff41" * 5,
        "the username in Cyrillic letters": f"{cyrillic} keeps the keys",
        "the username with digits for letters": f"{username.replace('o', '0').replace('l', '1')}!! keeps the keys",
        "the username in full-width letters": "".join(chr(ord(c) + 0xFEE0) for c in username) + " keeps keys",
        "the service's name and the year": f"Strongroom{year}!",
        "the service's name in look-alikes and the year": f"Str0ngr00m-{year}-ok",
        "the year between the service's name": f"strongroom{year}strongroom",
    }


def test_weak_passwords_are_refused_at_the_password_change(app, client):
    staff_id, username, one_time = create_staff(app, username="joel.olafsson")
    opened, _totp, _step = sign_in(client, app, username, one_time)
    headers = {"Authorization": f"Bearer {opened['token']}"}
    year = components(app).identity.now().year
    for name, weak in weak_passwords(username, year).items():
        response = client.post("/api/v1/auth/password", headers=headers,
                               json={"current_password": one_time, "new_password": weak})
        assert response.status_code == 422, (name, response.get_json())
        body = response.get_json()
        assert list(body["errors"]) == ["new_password"], name
        assert weak not in response.get_data(as_text=True), name
    # The control: a passphrase with none of the above (and a space or two) is taken.
    response = client.post("/api/v1/auth/password", headers=headers,
                           json={"current_password": one_time, "new_password": PASSWORD})
    assert response.status_code == 200, response.get_json()


# -- 10a: recovery codes ------------------------------------------------------------------------------

CROCKFORD_CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$")


def stored_codes(app, staff_id: str) -> list[str]:
    member = components(app).app.repository.get(UUID(staff_id))
    return list(member.recovery_codes)


def mfa(client, username: str, code: str, password: str = PASSWORD):
    started = client.post("/api/v1/auth/login", json={"username": username, "password": password}).get_json()
    return client.post("/api/v1/auth/mfa", json={"challenge": started["challenge"], "code": code})


@pytest.mark.controls("PCI-DSS-8.3.2")
def test_recovery_codes_carry_80_bits_and_are_kept_salted(app, client):
    headers = login(client, app)
    codes = headers.recovery_codes
    assert len(codes) == len(set(codes)) == 10
    for code in codes:
        # 16 symbols of a 32-letter alphabet: 80 bits.
        assert CROCKFORD_CODE.match(code), code
    stored = stored_codes(app, headers.staff_id)
    salts = {entry.split("$")[1] for entry in stored}
    assert len(salts) == 10 and all(len(bytes.fromhex(salt)) >= 16 for salt in salts)
    for code in codes:
        plain = code.replace("-", "")
        for guess in (plain, plain.lower(), code, code.lower()):
            assert hashlib.sha256(guess.encode()).hexdigest() not in "".join(stored)
            assert hashlib.sha256(b"strongroom-recovery-code\x00" + guess.encode()).hexdigest() not in "".join(stored)
        assert plain not in "".join(stored)
    # Typed back as read off paper: lower case, spaces for dashes, O for 0 and I for 1.
    retyped = codes[0].lower().replace("-", " ").replace("0", "o").replace("1", "i")
    assert mfa(client, headers.username, retyped).status_code == 200
    assert mfa(client, headers.username, codes[0]).status_code == 401  # once only


def old_format_codes() -> tuple[list[str], list[str]]:
    """Codes as they were made before (10 hex characters, one unsalted SHA-256)."""
    codes = ["-".join(secrets.token_hex(5)[i : i + 5] for i in (0, 5)) for _ in range(10)]
    return codes, [hashlib.sha256(b"strongroom-recovery-code\x00" + c.encode()).hexdigest() for c in codes]


def test_an_old_format_code_still_works_once_and_replaces_the_whole_set(app, client):
    built = components(app)
    old_codes, old_hashes = old_format_codes()
    member = StaffMember.enrol(username=f"legacy-{uuid.uuid4().hex[:8]}", display_name="Held Codes",
                               roles=["agent"], portfolios=["retail"],
                               password_hash=built.identity.hasher.hash(PASSWORD), must_change_password=False)
    member.enrol_totp(pyotp.random_base32(), old_hashes)
    with acting_as(OPERATOR):
        built.app._save(member)
    built.identity.directory.reserve_username(member.username, str(member.id), built.identity.now())

    opened = mfa(client, member.username, old_codes[3])
    assert opened.status_code == 200, opened.get_json()
    fresh = opened.get_json()["recovery_codes"]
    assert len(fresh) == 10 and all(CROCKFORD_CODE.match(code) for code in fresh)
    assert all(entry.startswith("rc2$") for entry in stored_codes(app, str(member.id)))
    # Every old code is gone with the old set, the one used and the nine unused.
    for code in (old_codes[3], old_codes[4], old_codes[9]):
        assert mfa(client, member.username, code).status_code == 401
    assert mfa(client, member.username, fresh[0]).status_code == 200
