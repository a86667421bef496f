"""After an erasure no process serves the erased data (R5.4, issue 13 item 6).

The attack: a second API process read the customer a moment ago, so the customer's
keys sit in its cache (up to `key_cache_seconds`, 60 s by default). Another process
erases the customer. Without invalidation the second process goes on answering
with the erased values until its cache expires. Two separately built Components on
one store (PostgreSQL: NOTIFY; SQLite: the ledger polled) stand for the two processes.
"""

from __future__ import annotations

import time

import pytest

from application.context import acting_as
from application.errors import CustomerErased
from tests.application.conftest import OPERATOR, customer_fields, make_components


def test_another_process_cannot_read_the_erased_customer_immediately(tmp_path, database_url):
    first = make_components(tmp_path, database_url, aml_retention_years=0)
    second = make_components(tmp_path, database_url, aml_retention_years=0)
    try:
        with acting_as(OPERATOR):
            ada = first.app.register_customer(customer_fields())
            other = first.app.register_customer(customer_fields(email="other@example.org"))
            # The second process reads both: their keys are now in its cache for 60 s.
            assert second.app.get_customer(ada["id"])["email"] == "ada.planted@example.org"
            assert second.app.get_customer(other["id"])["email"] == "other@example.org"
            assert second.settings.key_cache_seconds == 60.0

            first.erasures.erase(ada["id"], "DSR-12")

            deadline = time.monotonic() + 0.25  # NOTIFY is asynchronous; give it a quarter second at most
            while True:
                try:
                    second.app.get_customer(ada["id"])
                except CustomerErased:
                    break
                assert time.monotonic() < deadline, "the second process still served the erased customer"
                time.sleep(0.01)
            with pytest.raises(CustomerErased):
                second.app.customer_view(ada["id"])
            # Everyone else is still served (their keys are unwrapped again as needed).
            assert second.app.get_customer(other["id"])["email"] == "other@example.org"
    finally:
        second.close()
        first.close()


def test_the_cache_still_spares_unwrapping_when_nothing_was_destroyed(tmp_path, database_url):
    built = make_components(tmp_path, database_url)
    try:
        with acting_as(OPERATOR):
            ada = built.app.register_customer(customer_fields())
            built.app.get_customer(ada["id"])
            unwraps = []
            real_unwrap = built.keyring.kek.unwrap
            built.keyring.kek.unwrap = lambda *a, **k: unwraps.append(a) or real_unwrap(*a, **k)
            for _ in range(3):
                built.app.get_customer(ada["id"])
            assert unwraps == []
    finally:
        built.close()
