"""Stories of the erasure ledger (R5.4): which keys of a customer are gone, and why."""

from __future__ import annotations

from uuid import uuid4, uuid5

import pytest

from domain.erasure import CustomerErasure
from domain.errors import ErasureAlreadyComplete, InvalidField


def test_an_erasure_without_a_legal_hold_destroys_both_keys() -> None:
    customer_id = uuid4()
    erasure = CustomerErasure.record(
        customer_id=customer_id, reason="data subject request DSR-1042", keys_destroyed=["kyc", "profile"]
    )
    assert erasure.to_record()["customer_id"] == str(customer_id)
    assert erasure.keys_destroyed == ["profile", "kyc"]
    assert erasure.status == "complete"
    assert erasure.id != customer_id


@pytest.mark.controls("GDPR-5.1.e")
def test_under_an_aml_hold_the_kyc_key_is_destroyed_when_the_hold_ends() -> None:
    erasure = CustomerErasure.record(customer_id=str(uuid4()), reason="DSR-1043", keys_destroyed=["profile"])
    assert erasure.status == "kyc_retained" and erasure.kyc_retained

    erasure.record_kyc_key_destroyed("AML retention ended")
    assert erasure.keys_destroyed == ["profile", "kyc"] and erasure.status == "complete"
    with pytest.raises(ErasureAlreadyComplete):
        erasure.record_kyc_key_destroyed("again")


def test_an_erasure_always_destroys_the_profile_key_and_knows_only_two_keys() -> None:
    with pytest.raises(InvalidField):
        CustomerErasure.record(customer_id=str(uuid4()), reason="DSR", keys_destroyed=["kyc"])
    with pytest.raises(InvalidField):
        CustomerErasure.record(customer_id=str(uuid4()), reason="DSR", keys_destroyed=["profile", "index"])
    with pytest.raises(InvalidField):
        CustomerErasure.record(customer_id="ada@example.com", reason="DSR", keys_destroyed=["profile"])


def test_the_application_may_name_the_erasure_after_the_customers_random_id() -> None:
    customer_id = uuid4()
    erasure_id = uuid5(customer_id, "erasure")
    erasure = CustomerErasure.record(
        id=erasure_id, customer_id=customer_id, reason="DSR", keys_destroyed=["profile", "kyc"]
    )
    assert erasure.id == erasure_id


# -- the AML hold rule (R5.4, issue 13) -------------------------------------------------------

from datetime import UTC, datetime, timedelta  # noqa: E402

from domain.erasure import aml_hold  # noqa: E402

FIVE_YEARS = timedelta(days=5 * 365.25)
NOW = datetime(2026, 12, 5, tzinfo=UTC)


def test_a_relationship_that_ended_recently_keeps_the_kyc_key_until_five_years_after() -> None:
    ended = NOW - timedelta(days=400)
    decision = aml_hold(closed_on=ended, under_investigation=False, now=NOW, retention=FIVE_YEARS)
    assert decision.destroy == ("profile",) and decision.kept == {"kyc": ["aml_retention"]}
    assert decision.hold_until == ended + FIVE_YEARS


def test_an_open_relationship_ends_with_the_erasure_and_is_held_from_then() -> None:
    decision = aml_hold(closed_on=None, under_investigation=False, now=NOW, retention=FIVE_YEARS)
    assert decision.kept == {"kyc": ["aml_retention"]} and decision.hold_until == NOW + FIVE_YEARS


def test_past_the_retention_both_keys_go_unless_an_investigation_is_open() -> None:
    long_ago = NOW - 2 * FIVE_YEARS
    free = aml_hold(closed_on=long_ago, under_investigation=False, now=NOW, retention=FIVE_YEARS)
    assert free.destroy == ("profile", "kyc") and free.kept == {} and free.hold_until is None
    held = aml_hold(closed_on=long_ago, under_investigation=True, now=NOW, retention=FIVE_YEARS)
    assert held.destroy == ("profile",) and held.kept == {"kyc": ["aml_investigation"]}


def test_a_kept_key_must_say_why_and_only_a_kept_key() -> None:
    with pytest.raises(InvalidField):
        CustomerErasure.record(customer_id=str(uuid4()), reason="DSR", keys_destroyed=["profile"],
                               kept={"kyc": ["because"]})
    with pytest.raises(InvalidField):
        CustomerErasure.record(customer_id=str(uuid4()), reason="DSR", keys_destroyed=["profile", "kyc"],
                               kept={"kyc": ["aml_retention"]})
    erasure = CustomerErasure.record(customer_id=str(uuid4()), reason="DSR", keys_destroyed=["profile"],
                                     kept={"kyc": ["aml_investigation"]}, hold_until=NOW)
    assert erasure.kept == {"kyc": ["aml_investigation"]} and erasure.hold_until == NOW.isoformat()
    erasure.record_kyc_key_destroyed("hold ended")
    assert erasure.kept == {} and erasure.status == "complete"
