"""Attacks on the raw store, and what `AuditTrail.verify` says about each (R3.3).

Each story fills a real instance (SQLite, then PostgreSQL), signs a checkpoint of
the head, lets an attacker with database access change the raw rows with the
append-only triggers out of the way (tests/infrastructure/chain_attacks.py), and
checks that verification fails naming the first bad position and what is wrong.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from application.context import acting_as
from infrastructure.audit.checkpoints import ChainBroken
from infrastructure.composition import Components
from tests.application.conftest import OPERATOR, customer_fields, make_components
from tests.infrastructure.chain_attacks import RawStore


def _fill(built: Components, customers: int = 3) -> list[str]:
    ids = []
    with acting_as(OPERATOR):
        for n in range(customers):
            record = built.app.register_customer(customer_fields(email=f"ada.{n}@example.org"))
            ids.append(record["id"])
            built.app.access_log.record(kind="view", customer_ids=[record["id"]], fields=["email"])
        built.app.update_customer(ids[0], {"segment": "premium"})
    return ids


@pytest.fixture
def instance(tmp_path: Any, database_url: str) -> Iterator[tuple[Components, RawStore]]:
    built = make_components(tmp_path, database_url, checkpoint_seconds=3600)
    _fill(built)
    assert built.tamper_evidence.checkpoint() is not None
    yield built, RawStore(database_url)
    built.close()


def _head(built: Components) -> int:
    head = built.app.recorder.chain_head()
    assert head is not None
    return head[0]


def _first_problem(built: Components) -> tuple[int, str]:
    report = built.tamper_evidence.verify()
    assert not report.intact, "tampering went unnoticed"
    first = report.first_problem
    assert first is not None
    assert report.summary().startswith(f"TAMPERING FOUND at position {first.position}:")
    return first.position, first.what


def test_an_untouched_store_verifies(instance: tuple[Components, RawStore]) -> None:
    built, _ = instance
    report = built.tamper_evidence.verify()
    assert report.intact, report.summary()
    assert report.rows == _head(built) >= 7
    assert report.checkpoints_verified >= 1
    assert report.latest_checkpoint is not None and report.latest_checkpoint.position == _head(built)
    assert report.summary().startswith("chain intact:")
    # From the latest checkpoint: only what follows it is re-read.
    assert built.tamper_evidence.verify(from_checkpoint=True).intact


@pytest.mark.controls("PCI-DSS-10.3.4")
def test_one_flipped_ciphertext_byte_is_named(instance: tuple[Components, RawStore]) -> None:
    built, raw = instance
    raw.flip_byte(3)
    assert _first_problem(built) == (
        3,
        "the row's contents do not match its hash: its ciphertext, stream id, version, topic "
        "or recorded_at was changed, or it was moved here",
    )


def test_a_changed_timestamp_is_named(instance: tuple[Components, RawStore]) -> None:
    built, raw = instance
    raw.shift_recorded_at(4)
    position, what = _first_problem(built)
    assert position == 4 and "contents do not match" in what


@pytest.mark.controls("PCI-DSS-10.3.4")
def test_a_deleted_row_is_named(instance: tuple[Components, RawStore]) -> None:
    built, raw = instance
    raw.delete(3)
    position, what = _first_problem(built)
    assert position == 4
    assert "does not follow row 2" in what and "deleted, inserted or reordered" in what
    assert "positions 3 are absent" in what


def test_an_inserted_row_is_named(instance: tuple[Components, RawStore]) -> None:
    built, raw = instance
    raw.insert_after(2)  # a careful forgery: its own hashes are right for its place
    position, what = _first_problem(built)
    assert position == 4, what  # the row after it no longer links
    assert "does not follow row 3" in what


def test_two_swapped_rows_are_named(instance: tuple[Components, RawStore]) -> None:
    built, raw = instance
    raw.swap(2, 3)
    position, _ = _first_problem(built)
    assert position == 2
    problems = {p.position for p in built.tamper_evidence.verify().problems}
    assert {2, 3} <= problems


def test_a_truncated_tail_is_caught_by_the_last_checkpoint(instance: tuple[Components, RawStore]) -> None:
    built, raw = instance
    head = _head(built)
    raw.truncate_after(head - 2)
    # The chain that is left is internally consistent; only the checkpoint knows.
    position, what = _first_problem(built)
    assert position == head - 1
    assert f"the log ends at position {head - 2}" in what
    assert f"covers rows up to position {head}" in what and "removed from the tail" in what


def test_a_tail_truncated_with_its_checkpoint_rows_is_caught_by_the_copy(
    instance: tuple[Components, RawStore],
) -> None:
    built, raw = instance
    head = _head(built)
    raw.truncate_after(head - 2)
    raw.delete_checkpoints()
    report = built.tamper_evidence.verify()
    assert not report.intact
    whats = " | ".join(p.what for p in report.problems)
    assert "in the checkpoint folder but not in the database" in whats
    assert "removed from the tail" in whats


@pytest.mark.parametrize("column", ["signature", "head_hash"])
def test_a_checkpoint_that_does_not_verify_is_named(
    instance: tuple[Components, RawStore], column: str
) -> None:
    built, raw = instance
    checkpoint = built.tamper_evidence.store.latest_in_database()
    assert checkpoint is not None
    raw.tamper_checkpoint(checkpoint.position, column)
    # ...and its copy, so that both places tell the same lie.
    copy = built.tamper_evidence.store.folder / f"checkpoint-{checkpoint.position:020d}.json"
    data = json.loads(copy.read_text())
    data[column] = ("%02x" % (int(data[column][:2], 16) ^ 1)) + data[column][2:]
    copy.write_text(json.dumps(data))
    position, what = _first_problem(built)
    assert position == checkpoint.position
    assert "does not verify" in what


@pytest.mark.controls("PCI-DSS-10.3.4")
def test_history_rewritten_with_every_hash_recomputed_is_caught_by_a_checkpoint(
    instance: tuple[Components, RawStore],
) -> None:
    built, raw = instance
    head = _head(built)
    raw.rewrite_and_rechain(3)
    report = built.tamper_evidence.verify()
    assert not report.intact
    # Every row links and recomputes; the signed head is what no longer matches.
    assert [p.position for p in report.problems] == [head]
    assert "differs from the head signed in the checkpoint" in report.problems[0].what


@pytest.mark.controls("PCI-DSS-10.7.2")
def test_a_checkpoint_is_never_signed_over_a_tampered_chain(instance: tuple[Components, RawStore]) -> None:
    built, raw = instance
    with acting_as(OPERATOR):
        built.app.access_log.record(kind="view", customer_ids=[], fields=[])
    head = _head(built)
    raw.flip_byte(head)  # after the latest checkpoint: what the next one would vouch for
    with pytest.raises(ChainBroken, match=f"at position {head}"):
        built.tamper_evidence.checkpoint()
    assert built.tamper_evidence.store.latest_in_database().position == head - 1


@pytest.mark.controls("PCI-DSS-10.5.1")
def test_verification_survives_crypto_shredding(tmp_path: Any, database_url: str) -> None:
    built = make_components(tmp_path, database_url, checkpoint_seconds=3600)
    try:
        ids = _fill(built)
        with acting_as(OPERATOR):
            built.app.erase_customer(ids[1], reason="GDPR Art. 17 request")
        built.tamper_evidence.checkpoint()
        built.keyring.forget_cached()
        report = built.tamper_evidence.verify()
        assert report.intact, report.summary()
    finally:
        built.close()


def test_checkpoints_follow_every_n_rows_and_a_finishing_writer(tmp_path: Any, database_url: str) -> None:
    built = make_components(tmp_path, database_url, checkpoint_rows=4, checkpoint_seconds=3600)
    try:
        _fill(built, customers=4)
        head = _head(built)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            latest = built.tamper_evidence.store.latest_in_database()
            if latest is not None and latest.position >= head - 3:
                break
            time.sleep(0.05)
        stored = built.tamper_evidence.store.in_database()
        assert stored and stored[-1].position >= head - 3
        with acting_as(OPERATOR):
            built.app.access_log.record(kind="view", customer_ids=[], fields=[])
        built.tamper_evidence.flush()  # what a command does before it exits
    finally:
        built.close()
    # The process that wrote has finished: its last row is checkpointed, in both places.
    reopened = make_components(tmp_path, database_url)
    try:
        latest = reopened.tamper_evidence.store.latest_in_database()
        assert latest is not None and latest.position == head + 1
        copies, unreadable = reopened.tamper_evidence.store.in_folder()
        assert latest in copies and unreadable == []
        assert reopened.tamper_evidence.verify().intact
    finally:
        reopened.close()
