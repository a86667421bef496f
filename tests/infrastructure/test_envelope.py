"""The per-subject encrypting mapper (R1.1, R1.2, R3.1): what an attacker with the
database but not the keys can and cannot do."""

from __future__ import annotations

import dataclasses
from uuid import uuid4

import pytest
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import JSONTranscoder, StoredEvent
from eventsourcing.application import Application

from application.context import RequestContext, acting_as
from application.errors import AnonymousWrite, SubjectErased
from domain.catalogue import KeyKind
from infrastructure.crypto.envelope import SubjectMapper, TamperedEvent
from infrastructure.crypto.kek import KekError, LocalKek
from infrastructure.crypto.keyring import KeyRing
from infrastructure.crypto.keystore import KeyStore
from infrastructure.sql import Database

OPERATOR = RequestContext(actor_id="operator:test", via="cli", purpose="testing")


class Person(Aggregate):
    @event("Registered")
    def __init__(self, full_name: str, email: str, portfolio: str) -> None:
        self.full_name = full_name
        self.email = email
        self.portfolio = portfolio

    @event("Renamed")
    def rename(self, full_name: str) -> None:
        self.full_name = full_name


@pytest.fixture
def keyring(tmp_path):
    db = Database.connect(f"sqlite:///{tmp_path / 'keys.sqlite'}")
    store = KeyStore(db)
    store.create_tables()
    ring = KeyRing(store, LocalKek.create(tmp_path / "kek.key"))
    ring.check_kek()
    yield ring
    db.close()


@pytest.fixture
def mapper(keyring):
    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    return SubjectMapper(app.construct_transcoder(), keyring)


def _stored(mapper, person):
    (registered,) = person.collect_events()
    with acting_as(OPERATOR):
        return registered, mapper.to_stored_event(registered)


@pytest.mark.controls("PCI-DSS-3.5.1")
def test_round_trip_restores_the_event_and_hides_every_value(mapper):
    person = Person(full_name="Ada Plantedname", email="ada.planted@example.org", portfolio="retail")
    event, stored = _stored(mapper, person)
    for secret in (b"Plantedname", b"ada.planted", b"retail", b"operator:test"):
        assert secret not in stored.state
    back = mapper.to_domain_event(stored)
    assert (back.full_name, back.email, back.portfolio) == ("Ada Plantedname", "ada.planted@example.org", "retail")
    assert back.originator_id == person.id and back.timestamp == event.timestamp


@pytest.mark.controls("PCI-DSS-10.2.2")
def test_the_acting_context_travels_in_the_system_part(mapper):
    _, stored = _stored(mapper, Person(full_name="A", email="a@b.c", portfolio="p"))
    meta = mapper.metadata(stored)
    assert meta["actor_id"] == "operator:test" and meta["purpose"] == "testing" and meta["via"] == "cli"


def test_no_actor_no_write(mapper):
    (registered,) = Person(full_name="A", email="a@b.c", portfolio="p").collect_events()
    with pytest.raises(AnonymousWrite):
        mapper.to_stored_event(registered)


@pytest.mark.parametrize("field", ["originator_id", "originator_version", "topic"])
@pytest.mark.controls("GDPR-32")
def test_attack_moving_a_ciphertext_to_another_row_fails_authentication(mapper, field):
    _, stored = _stored(mapper, Person(full_name="A", email="a@b.c", portfolio="p"))
    _, other = _stored(mapper, Person(full_name="B", email="b@b.c", portfolio="p"))
    moved = {
        "originator_id": other.originator_id,  # another customer who has keys
        "originator_version": 2,
        "topic": "tests.infrastructure.test_envelope:Person.Renamed",
    }[field]
    swapped = dataclasses.replace(stored, **{field: moved})
    with pytest.raises(TamperedEvent):
        mapper.to_domain_event(swapped)


def test_a_stream_with_no_key_at_all_is_reported_not_crashed(mapper):
    _, stored = _stored(mapper, Person(full_name="A", email="a@b.c", portfolio="p"))
    with pytest.raises(TamperedEvent, match="failed authentication|no profile key"):
        mapper.to_domain_event(dataclasses.replace(stored, originator_id=uuid4()))


@pytest.mark.controls("ASVS-V11")
def test_attack_flipping_one_byte_is_detected(mapper):
    _, stored = _stored(mapper, Person(full_name="A", email="a@b.c", portfolio="p"))
    state = bytearray(stored.state)
    state[-1] ^= 0x01
    with pytest.raises(TamperedEvent):
        mapper.to_domain_event(dataclasses.replace(stored, state=bytes(state)))


def test_destroyed_profile_key_gives_an_explicit_erased_result_but_metadata_survives(mapper, keyring):
    person = Person(full_name="A", email="a@b.c", portfolio="p")
    _, stored = _stored(mapper, person)
    keyring.destroy(str(person.id), [str(KeyKind.PROFILE), str(KeyKind.KYC)])
    with pytest.raises(SubjectErased):
        mapper.to_domain_event(stored)
    assert mapper.metadata(stored)["actor_id"] == "operator:test"


@pytest.mark.controls("PCI-DSS-3.7.5")
def test_a_destroyed_key_never_comes_back(mapper, keyring):
    person = Person(full_name="A", email="a@b.c", portfolio="p")
    _stored(mapper, person)
    keyring.destroy(str(person.id), ["profile", "kyc"])
    keyring.forget_cached()
    with pytest.raises(SubjectErased):
        keyring.aead(str(person.id), "profile", create=True)


@pytest.mark.controls("ASVS-V11")
def test_each_field_goes_under_the_key_the_catalogue_names(mapper, keyring):
    person = Person(full_name="A", email="a@b.c", portfolio="p")
    _, stored = _stored(mapper, person)
    parts = mapper.open_parts(stored)
    assert "full_name" in parts[KeyKind.KYC]
    assert "email" in parts[KeyKind.PROFILE]
    assert "portfolio" in parts[KeyKind.SYSTEM]
    # Destroying only the profile key leaves the KYC part readable (AML hold, R5.4).
    keyring.destroy(str(person.id), ["profile"])
    assert mapper.open_parts(stored, only=KeyKind.KYC)[KeyKind.KYC]["full_name"] == "A"


@pytest.mark.controls("PCI-DSS-3.7.7")
def test_wrong_kek_stops_start_up_and_changes_nothing(tmp_path, keyring):
    store = keyring.store
    keyring.aead(str(uuid4()), "profile", create=True)
    before = (tmp_path / "keys.sqlite").read_bytes()
    other = KeyRing(store, LocalKek.create(tmp_path / "other.key"))
    with pytest.raises(KekError, match="not the one"):
        other.check_kek()
    assert (tmp_path / "keys.sqlite").read_bytes() == before


@pytest.mark.controls("PCI-DSS-3.6.1")
def test_kek_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "kek.key"
    LocalKek.create(path)
    path.chmod(0o644)
    with pytest.raises(KekError, match="readable by others"):
        LocalKek.load(path)


def test_missing_kek_file_is_a_clear_error(tmp_path):
    with pytest.raises(KekError, match="no KEK file"):
        LocalKek.load(tmp_path / "kek.key")


@pytest.mark.controls("PCI-DSS-3.7.4")
def test_kek_rotation_rewraps_keys_and_old_events_still_read(mapper, keyring, tmp_path):
    person = Person(full_name="A", email="a@b.c", portfolio="p")
    _, stored = _stored(mapper, person)
    new_kek = LocalKek.create(tmp_path / "new.key")
    assert keyring.rotate_kek(new_kek) >= 3
    fresh = KeyRing(keyring.store, new_kek)
    fresh.check_kek()
    reread = SubjectMapper(mapper.transcoder, fresh).to_domain_event(stored)
    assert reread.full_name == "A"
    with pytest.raises(KekError):
        KeyRing(keyring.store, LocalKek.load(tmp_path / "kek.key")).check_kek()


@pytest.mark.controls("PCI-DSS-3.6.1")
def test_wrapped_key_copied_to_another_subject_does_not_unwrap(keyring):
    a, b = str(uuid4()), str(uuid4())
    keyring.aead(a, "profile", create=True)
    wrapped_a = keyring.store.get(a, "profile").wrapped
    with pytest.raises(KekError):
        keyring.kek.unwrap(wrapped_a, f"strongroom/dek/v1|{b}|profile".encode())


# -- chain v2: the metadata digest in the clear header ---------------------------------


def test_the_clear_header_carries_a_salted_digest_of_what_an_auditor_reads(mapper):
    import hashlib
    import json

    from infrastructure.audit.chain import META_TAG, meta_digest_of_state

    _, stored = _stored(mapper, Person(full_name="Ada Lovelace", email="ada@example.org", portfolio="retail"))
    assert stored.state[:3] == b"SR\x02"
    salt, text = mapper.chained_metadata(stored)
    assert len(salt) == 16
    assert json.loads(text) == {"context": dataclasses.asdict(OPERATOR)}
    assert meta_digest_of_state(stored.state) == hashlib.sha256(META_TAG + salt + text.encode()).digest()
    # Salted: the same metadata twice gives two digests, so a guess cannot be confirmed.
    _, again = _stored(mapper, Person(full_name="Ada Lovelace", email="ada@example.org", portfolio="retail"))
    assert meta_digest_of_state(again.state) != meta_digest_of_state(stored.state)
    assert b"operator:test" not in stored.state


def test_attack_swapping_the_clear_digest_between_rows_fails_authentication(mapper):
    _, first = _stored(mapper, Person(full_name="Ada Lovelace", email="ada@example.org", portfolio="retail"))
    _, second = _stored(mapper, Person(full_name="Grace Hopper", email="grace@example.org", portfolio="retail"))
    swapped = dataclasses.replace(first, state=first.state[:3] + second.state[3:35] + first.state[35:])
    with pytest.raises(TamperedEvent, match="failed authentication"):
        mapper.to_domain_event(swapped)
