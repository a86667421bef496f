"""Many clients PATCH one customer with the same If-Match at once: one wins, every
other gets the 412 a stale If-Match gets, never a 500 (R7.6)."""

from __future__ import annotations

import threading
from typing import Any

from tests.web.customers_support import (
    access_records_since,
    plant_customer,
    position,
    strongroom,
)
from tests.web.helpers import quick_login

CLIENTS = 24


def test_of_24_patches_with_the_same_if_match_one_wins_and_the_rest_get_412(app_factory, database_url):
    """Fault: 24 requests all load version 1 (held at a barrier after the load, so
    all pass the If-Match check) and then all save version 2 at once; the store's
    unique key refuses 23 of them."""
    app = app_factory(database_url=database_url)
    agent = quick_login(app.test_client(), app, roles=["agent"], portfolios=["retail"])
    cid = plant_customer(app)["id"]
    store = strongroom(app)
    load = store._customer
    loaded = threading.Barrier(CLIENTS, timeout=60)

    def load_then_wait_for_the_others(customer_id: Any) -> Any:
        customer = load(customer_id)
        loaded.wait()
        return customer

    store._customer = load_then_wait_for_the_others
    since = position(app)
    answers: dict[int, Any] = {}

    def patch(n: int) -> None:
        response = app.test_client().patch(
            f"/api/v1/customers/{cid}", json={"phone": f"+44 7700 9001{n:02d}"},
            headers={**agent, "If-Match": '"1"'},
        )
        answers[n] = (response.status_code, response.get_json())

    threads = [threading.Thread(target=patch, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    del store._customer

    statuses = sorted(status for status, _ in answers.values())
    assert statuses == [200] + [412] * (CLIENTS - 1)
    assert {body["code"] for status, body in answers.values() if status == 412} == {"version_conflict"}
    (winner,) = [n for n, (status, _) in answers.items() if status == 200]
    assert answers[winner][1]["version"] == 2

    stored = store.get_customer(cid)
    assert stored["version"] == 2 and stored["phone"] == f"+447700900{100 + winner}"
    assert store.customer_view(cid)["version"] == 2
    assert store.customer_view(cid)["phone"] == stored["phone"]
    # Only the winner's change left an access record saying it was returned.
    updates = [r for r in access_records_since(app, since) if r.details.get("operation") == "update"]
    assert len(updates) == 1
