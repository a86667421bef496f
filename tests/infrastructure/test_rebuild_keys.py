"""A rebuild fetches a page's keys at once and looks at the erasure ledger once a page
(issue 15 item 2, R1.3, R5.4), on SQLite and again on PostgreSQL.

Before, every key of every customer was its own query and its own transaction, and
every use of a cached key (ten per projected event: one per sealed column) asked
the erasure ledger whether it had moved. What must not change: the rows come out
the same, an erased customer's keys are never fetched back, and a key destroyed by
another process is dropped no later than the next page.
"""

from __future__ import annotations

import time

import pytest

from application.context import acting_as
from application.errors import CustomerErased, SubjectErased
from infrastructure.crypto.keystore import KeyStore
from tests.application.conftest import OPERATOR, customer_fields, make_components


@pytest.fixture
def built(tmp_path, database_url):
    components = make_components(tmp_path, database_url, aml_retention_years=0)
    with acting_as(OPERATOR):
        yield components
    components.close()


def _fill(app, customers: int) -> list[str]:
    ids = []
    for n in range(customers):
        customer = app.register_customer(customer_fields(
            email=f"k{n}@example.org", national_id=f"QQ{200000 + n}C", phone=f"+44 7700 8{n:05d}"))
        app.record_interaction(customer["id"], "call", "phone", f"note {n}")
        app.update_customer(customer["id"], {"risk_rating": "high" if n % 2 else "medium"})
        ids.append(customer["id"])
    return ids


def _contents(built, ids: list[str]) -> dict[str, object]:
    """What the read model says of each customer (sealed columns opened), its search
    entries and interactions; positions aside (inline writes stamp each save's own)."""
    with built.events_db.transaction(write=False) as cur:
        cur.execute("SELECT field, digest, customer_id FROM rm_customer_search ORDER BY field, digest, customer_id")
        search = [list(r) for r in cur.fetchall()]
    return {"rows": {cid: built.directory.get(cid) for cid in ids},
            "interactions": {cid: built.directory.interactions(cid) for cid in ids}, "search": search}


def _counting(monkeypatch, name: str) -> list[object]:
    calls: list[object] = []
    real = getattr(KeyStore, name)

    def counted(self, *args, **kwargs):
        calls.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(KeyStore, name, counted)
    return calls


@pytest.mark.parametrize("jobs", [None, 1])
def test_a_rebuild_fetches_each_pages_keys_in_one_query_and_makes_the_same_rows(built, monkeypatch, jobs):
    ids = _fill(built.app, 8)
    built.app.erase_customer(ids[2], "data subject request")
    inline = _contents(built, ids)
    assert sum(row is not None for row in inline["rows"].values()) == 7

    built.keyring.forget_cached()  # cold, as after a restore
    one_by_one = _counting(monkeypatch, "get")
    per_page = _counting(monkeypatch, "get_kinds")
    built.projection.rebuild(built.app, jobs=jobs)

    assert _contents(built, ids) == inline
    # One query for the page (the log fits in one page here); what is left one by one
    # is the erased customer (no key to fetch: `aead` tells erased from missing) and
    # the system's own keys, never destroyed.
    assert len(per_page) == 1
    customers_fetched_alone = {args[0] for args in one_by_one} & set(ids)
    assert customers_fetched_alone <= {ids[2]}


def test_a_prefetch_never_brings_back_an_erased_customers_keys(built):
    first, second = _fill(built.app, 2)
    built.app.erase_customer(first, "data subject request")
    built.keyring.forget_cached()

    assert built.keyring.prefetch_subjects([first, second]) == 2  # the other's profile and KYC keys
    with pytest.raises(SubjectErased):
        built.keyring.aead(first, "profile")
    assert built.keyring.aead(second, "profile") is not None


def _refused_within_a_batch(keyring, subject_id: str, failure: str) -> None:
    """A new batch (`steady()`) refuses the subject's destroyed key: at once on SQLite,
    within half a second on PostgreSQL (NOTIFY is asynchronous)."""
    deadline = time.monotonic() + 0.5
    while True:
        with keyring.steady():
            try:
                keyring.aead(subject_id, "profile")
            except SubjectErased:
                return
        assert time.monotonic() < deadline, failure
        time.sleep(0.01)


def test_a_key_destroyed_elsewhere_is_dropped_no_later_than_the_next_page(tmp_path, database_url):
    first = make_components(tmp_path, database_url, aml_retention_years=0)
    second = make_components(tmp_path, database_url, aml_retention_years=0)
    try:
        with acting_as(OPERATOR):
            ada = first.app.register_customer(customer_fields())["id"]
            for _ in range(2):
                assert second.app.get_customer(ada)["email"] == "ada.planted@example.org"  # cached there

            with second.keyring.steady():  # a page being projected in the second process
                first.erasures.erase(ada, "DSR-15")

            # The next page looks at the ledger first.
            _refused_within_a_batch(second.keyring, ada, "the next page still used the destroyed key")
            with pytest.raises(CustomerErased):
                second.app.get_customer(ada)  # and outside a page, at once, as before
    finally:
        second.close()
        first.close()


def test_a_save_looks_at_the_erasure_ledger_once_and_still_sees_an_erasure_before_it(
        tmp_path, database_url, monkeypatch):
    """Issue 15 item 1: a registration sealed three event parts and eight read-model
    columns, each use of a cached key asking the ledger (on SQLite, a query each).
    One look now, as the save starts; an erasure committed before it is still seen."""
    first = make_components(tmp_path, database_url, aml_retention_years=0)
    second = make_components(tmp_path, database_url, aml_retention_years=0)
    try:
        with acting_as(OPERATOR):
            ada = first.app.register_customer(customer_fields())["id"]
            looks = []
            real = type(first.keyring.watch).changed

            def counted(watch):
                looks.append(watch)
                return real(watch)

            monkeypatch.setattr(type(first.keyring.watch), "changed", counted)
            first.app.register_customer(customer_fields(email="bo@example.org", national_id="QQ654321C"))
            assert len([w for w in looks if w is first.keyring.watch]) == 1
            first.app.record_interaction(ada, "call", "phone", "warm cache")  # ada's keys cached here

            second.erasures.erase(ada, "DSR-16")
            # What a save does first.
            _refused_within_a_batch(first.keyring, ada, "a save after the erasure still used the destroyed key")
    finally:
        second.close()
        first.close()
