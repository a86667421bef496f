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
