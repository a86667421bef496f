"""`SubjectMapper.open_event` and `authenticate` (R3.5, R3.6): the audit trail's and the
monitor's readers open each row once, and see what the two-step reading saw."""

from __future__ import annotations

import dataclasses

import pytest

from domain.catalogue import KeyKind
from infrastructure.crypto.envelope import TamperedEvent
from tests.infrastructure.test_envelope import Person, _stored, keyring, mapper  # noqa: F401 - fixtures

_BOOKKEEPING = {"originator_id", "originator_version"}


class _CountingCipher:
    """The real AES-GCM cipher, counting its decryptions."""

    def __init__(self, aead, calls):
        self._aead, self._calls = aead, calls

    def decrypt(self, nonce, data, associated):
        self._calls.append(1)
        return self._aead.decrypt(nonce, data, associated)


def test_open_event_gives_the_context_and_attributes_of_the_two_step_reading(mapper):
    person = Person(full_name="Ada Lovelace", email="ada@example.org", portfolio="retail")
    _, stored = _stored(mapper, person)

    opened = mapper.open_event(stored)

    event = mapper.to_domain_event(stored)
    assert opened.meta == mapper.metadata(stored)
    assert opened.meta["actor_id"] == "operator:test"
    assert opened.attributes == {k: v for k, v in vars(event).items() if k not in _BOOKKEEPING}
    assert opened.attributes["email"] == "ada@example.org" and not opened.erased


def test_open_event_decrypts_each_part_once(mapper, keyring, monkeypatch):
    # Before: the context (system part), then the whole event (system part again).
    _, stored = _stored(mapper, Person(full_name="A", email="a@b.c", portfolio="p"))
    calls: list[int] = []
    real = keyring.aead
    monkeypatch.setattr(keyring, "aead", lambda *a, **k: _CountingCipher(real(*a, **k), calls))

    parts = len(mapper.open_parts(stored))
    calls.clear()
    mapper.open_event(stored)
    opened_once = len(calls)
    calls.clear()
    mapper.metadata(stored), mapper.to_domain_event(stored)

    assert parts >= 2 and opened_once == parts
    assert len(calls) == parts + 1


def test_open_event_after_erasure_says_erased_and_keeps_the_context(mapper, keyring):
    person = Person(full_name="A", email="a@b.c", portfolio="p")
    _, stored = _stored(mapper, person)
    keyring.destroy(str(person.id), [str(KeyKind.PROFILE), str(KeyKind.KYC)])

    opened = mapper.open_event(stored)

    assert opened.erased and opened.meta["actor_id"] == "operator:test"
    assert "email" not in opened.attributes and "full_name" not in opened.attributes
    mapper.authenticate(stored)  # the destroyed parts cannot be checked; the rest still is


@pytest.mark.parametrize("offset", [-1, 40])
def test_attack_a_flipped_byte_fails_authentication_without_decoding(mapper, offset):
    # The monitor skips the content of rows no rule reads, but a changed row must
    # still raise its alert: the last part (personal) and the first (after the header).
    _, stored = _stored(mapper, Person(full_name="A", email="a@b.c", portfolio="p"))
    mapper.authenticate(stored)
    state = bytearray(stored.state)
    state[offset] ^= 0x01
    with pytest.raises(TamperedEvent):
        mapper.authenticate(dataclasses.replace(stored, state=bytes(state)))
