"""Blind-index lookup (issue 15, item 8): the round trips and the keys one email
lookup costs, and that it still decrypts and compares only what it must (R1.2, R1.3)."""

from __future__ import annotations

from contextlib import contextmanager

from domain.catalogue import KeyKind
from tests.application.conftest import customer_fields


def _register(app, count):
    return [app.register_customer(customer_fields(email=f"c{i}@example.org", cards=[], bank_accounts=[],
                                                  national_id=None, phone=None))["id"] for i in range(count)]


def _bucket(components, email):
    """Every customer id sharing `email`'s blind-index value (8 bits in tests)."""
    directory = components.directory
    digest = directory.blind_index.digest("email", email)
    with components.events_db.transaction(write=False) as cur:
        cur.execute("SELECT customer_id FROM rm_customer_search WHERE field = ? AND digest = ?", ("email", digest))
        return {row[0] for row in cur.fetchall()}


@contextmanager
def _counted(database, seen, name):
    original = database.transaction

    def transaction(*args, **kwargs):
        seen.append(name)
        return original(*args, **kwargs)

    database.transaction = transaction
    try:
        yield
    finally:
        del database.transaction


def test_a_lookup_returns_what_get_returns_in_one_transaction_with_keys_in_the_same_database(app, components):
    ids = _register(app, 40)
    components.keyring.forget_cached()
    seen: list[str] = []
    with _counted(components.events_db, seen, "read model"), _counted(components.keys_db, seen, "keys"):
        found = app.find_customers("email", "C7@example.org")
    assert found == [app.customer_view(ids[7])]
    if components.events_db.dialect == "postgres":
        # The default deployment: keys in their own schema of the same database,
        # read with the candidates (one round trip of statements, not four).
        assert seen == ["read model"]
    else:
        assert seen == ["read model", "keys"]


def test_candidates_that_do_not_match_have_only_the_compared_column_opened_and_no_other_key_unwrapped(
        app, components):
    ids = _register(app, 80)
    # A bucket holding the wanted customer and at least one other (80 in 256 buckets:
    # no collision at all has odds below 1 in 100,000).
    wanted = next(i for i in range(80) if len(_bucket(components, f"c{i}@example.org")) > 1)
    bucket = _bucket(components, f"c{wanted}@example.org")
    keyring, sealer = components.keyring, components.directory.sealer
    keyring.forget_cached()
    unwrapped, opened = [], []
    remember, open_ = keyring._remember, sealer.open

    def spy_remember(stored, now):
        unwrapped.append((stored.subject_id, stored.kind))
        return remember(stored, now)

    def spy_open(table, column, subject_id, *args, **kwargs):
        opened.append((subject_id, column))
        return open_(table, column, subject_id, *args, **kwargs)

    keyring._remember, sealer.open = spy_remember, spy_open
    try:
        found = app.find_customers("email", f"c{wanted}@example.org")
    finally:
        del keyring._remember, sealer.open
    assert [r["id"] for r in found] == [ids[wanted]]
    others = bucket - {ids[wanted]}
    assert {sid for sid, _ in opened if sid in others} == others
    assert {column for sid, column in opened if sid in others} == {"email"}
    assert {(sid, kind) for sid, kind in unwrapped if sid in others} == {(sid, str(KeyKind.PROFILE)) for sid in others}
    assert (ids[wanted], str(KeyKind.KYC)) in unwrapped  # the match's record is whole


def test_a_candidate_whose_key_is_destroyed_is_no_match_and_the_others_are_still_found(app, components):
    ids = _register(app, 3)
    components.keyring.destroy(ids[1], [str(KeyKind.PROFILE)])  # its row not purged yet
    assert app.find_customers("email", "c1@example.org") == []
    assert [r["id"] for r in app.find_customers("email", "c2@example.org")] == [ids[2]]
