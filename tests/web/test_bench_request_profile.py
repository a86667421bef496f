"""The masked-read profile of the api suite (issue 15 item 6): it runs against the real
app and names where the request's time goes, each part within the whole."""

from __future__ import annotations

import pytest

from benchmarks.request_profile import PARTS, breakdown_lines, masked_read_profile, profile_requests
from tests.web.customers_support import plant_customer
from tests.web.helpers import quick_login


def test_the_profile_splits_a_masked_read_into_authentication_and_the_use_case(app, client):
    customer = plant_customer(app)
    agent = quick_login(client, app, roles=["agent"])

    parts = profile_requests(lambda: client.get(f"/api/v1/customers/{customer['id']}", headers=agent).status_code,
                             requests=5, warm_up=1)

    whole = parts["whole request in Flask"]
    assert set(PARTS) <= set(parts) and parts["in-app median (unprofiled)"] > 0
    for part in ("authentication", "  session, lockout, break-glass (one look)", "  account at its stream version",
                 "use case (load, decrypt, mask, record)", "  access record"):
        assert 0 < parts[part] <= whole, part
    assert parts["authentication"] + parts["use case (load, decrypt, mask, record)"] <= whole
    lines = breakdown_lines(parts)
    assert len(lines) == len(PARTS) + 1 and lines[1].startswith("authentication")


def test_a_refused_read_stops_the_profile(app, client):
    agent = quick_login(client, app, roles=["admin"])  # an admin reads no customer
    customer = plant_customer(app)
    with pytest.raises(RuntimeError):
        profile_requests(lambda: client.get(f"/api/v1/customers/{customer['id']}", headers=agent).status_code,
                         requests=2, warm_up=1)


def test_the_api_suite_profiles_a_second_app_over_the_same_store(app, client, instance, tmp_path):
    """As the api suite calls it: a new app built from the instance, the token of a
    session opened elsewhere (the server)."""
    customer = plant_customer(app)
    agent = quick_login(client, app, roles=["agent"])
    config = {"instance": str(instance), "database_url": f"sqlite:///{tmp_path / 'x.sqlite'}", "blind_index_bits": 8}
    parts = masked_read_profile(config, agent.token, customer["id"], 3)
    assert 0 < parts["authentication"] < parts["whole request in Flask"]
