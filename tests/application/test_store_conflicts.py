"""Two writers append to one record at once: the store's unique key on (record,
version) refuses the second, and the application says so as VersionConflict (the
412 of a stale If-Match), leaving nothing of the loser behind (R7.6)."""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

import pytest

from application.context import acting_as
from application.errors import VersionConflict
from tests.application.conftest import OPERATOR, customer_fields, make_components


@pytest.fixture
def rival(components, tmp_path, database_url):
    """A second application over the same store and keys (another web worker)."""
    other = make_components(tmp_path, database_url)
    yield other.app
    other.close()


def _stored_versions(app: Any, customer_id: str) -> list[int]:
    return [e.originator_version for e in app.recorder.select_events(UUID(customer_id))]


def _loser_saves_after_winner(app: Any, rival: Any, customer_id: str) -> VersionConflict:
    """Both load the same version, the rival saves first, `app` saves second."""
    ours, theirs = app._customer(customer_id), rival._customer(customer_id)
    ours.change_contact(email="loser@example.org", phone=ours.phone)
    theirs.change_contact(email="winner@example.org", phone=theirs.phone)
    rival._save(theirs)
    with pytest.raises(VersionConflict) as caught:
        app._save(ours)
    return caught.value


def test_the_second_of_two_saves_at_one_version_is_a_version_conflict_and_leaves_nothing(app, rival):
    """Fault: two applications load version 1 and both save version 2; the store's
    unique key refuses the second insert (IntegrityError from the recorder)."""
    cid = app.register_customer(customer_fields())["id"]
    conflict = _loser_saves_after_winner(app, rival, cid)
    assert conflict.current_version == 2
    assert _stored_versions(app, cid) == [1, 2]
    assert app.get_customer(cid)["email"] == "winner@example.org"
    # The read model committed with the winner's events and not with the loser's.
    assert app.customer_view(cid)["version"] == 2
    assert [c["id"] for c in app.find_customers("email", "winner@example.org")] == [cid]
    assert app.find_customers("email", "loser@example.org") == []


@pytest.mark.parametrize("db_functions", [True, False], ids=["db-functions", "statements"])
def test_both_postgres_insert_paths_turn_the_unique_key_into_a_version_conflict(tmp_path, pg_url, db_functions):
    """Fault: as above, on PostgreSQL through the stored insert function alone and
    through the library's pipelined statement path (the unique violation is raised
    inside the stored function on both)."""
    first, second = make_components(tmp_path, pg_url), make_components(tmp_path, pg_url)
    try:
        for built in (first, second):
            built.app.recorder.datastore.enable_db_functions = db_functions
        with acting_as(OPERATOR):
            cid = first.app.register_customer(customer_fields())["id"]
            conflict = _loser_saves_after_winner(first.app, second.app, cid)
            assert conflict.current_version == 2
            assert _stored_versions(first.app, cid) == [1, 2]
            assert first.app.customer_view(cid)["email"] == "winner@example.org"
            assert first.app.find_customers("email", "loser@example.org") == []
    finally:
        second.close()
        first.close()


def test_a_conditional_update_that_loses_the_race_is_a_version_conflict(app, rival):
    """Fault: the rival saves between this update's version check and its save."""
    cid = app.register_customer(customer_fields())["id"]
    load = app._customer

    def load_then_let_the_rival_in(customer_id: Any) -> Any:
        customer = load(customer_id)
        rival.update_customer(cid, {"risk_rating": "high"}, expected_version=1)
        return customer

    app._customer = load_then_let_the_rival_in
    with pytest.raises(VersionConflict):
        app.update_customer(cid, {"risk_rating": "medium"}, expected_version=1)
    del app._customer
    assert rival.get_customer(cid)["risk_rating"] == "high"
    assert _stored_versions(app, cid) == [1, 2]


def test_commands_without_an_expected_version_try_again_on_the_record_as_it_now_is(app):
    """Fault: 8 threads load the same version and all save at once (a barrier after
    the load); every loser of the store's unique key reloads and tries again."""
    cid = app.register_customer(customer_fields())["id"]
    writers = 8
    loaded = threading.Barrier(writers, timeout=30)
    first_load = threading.local()
    load = app._customer

    def load_together_the_first_time(customer_id: Any) -> Any:
        customer = load(customer_id)
        if not getattr(first_load, "done", False):
            first_load.done = True
            loaded.wait()
        return customer

    app._customer = load_together_the_first_time
    errors: list[BaseException] = []

    def add(n: int) -> None:
        try:
            with acting_as(OPERATOR):
                app.record_interaction(cid, "call", "phone", f"note {n}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    del app._customer
    assert errors == []
    assert _stored_versions(app, cid) == list(range(1, writers + 2))
    assert sorted(i["notes"] for i in app.interactions(cid)) == sorted(f"note {n}" for n in range(writers))


def test_an_erasure_recorded_first_by_another_request_is_finished_not_refused(app, rival):
    """Fault: a rival records the same erasure between this request's check and its
    save (the erasure's id is derived from the customer's, so the store refuses it)."""
    cid = app.register_customer(customer_fields())["id"]
    choose = app.retention.decide
    theirs: dict[str, Any] = {}

    def rival_erases_first(customer: Any, **when: Any) -> Any:
        theirs.update(rival.erase_customer(cid, "rival's request"))
        return choose(customer, **when)

    app.retention.decide = rival_erases_first
    ours = app.erase_customer(cid, "our request")
    # The same outcome, but only the rival's answer knows the record's log position.
    assert ours["position"] is None and theirs["position"] is not None
    assert {**ours, "position": None} == {**theirs, "position": None}
    assert app.is_erased(cid)


def test_the_tries_again_are_bounded_and_end_in_a_version_conflict(app, rival):
    """Fault: a rival appends to the record between every load and save, for ever."""
    from application.customers import UNCONDITIONAL_ATTEMPTS

    cid = app.register_customer(customer_fields())["id"]
    load = app._customer

    def load_then_let_the_rival_in(customer_id: Any) -> Any:
        customer = load(customer_id)
        rival.record_interaction(cid, "call", "phone", "rival")
        return customer

    app._customer = load_then_let_the_rival_in
    with pytest.raises(VersionConflict):
        app.record_interaction(cid, "call", "phone", "ours")
    del app._customer
    assert _stored_versions(app, cid) == list(range(1, UNCONDITIONAL_ATTEMPTS + 2))
    assert {i["notes"] for i in app.interactions(cid)} == {"rival"}
