"""Stories of the AML investigation flag (R5.4): a compliance officer's recorded
decision that keeps an erased customer's KYC key until it is closed."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.catalogue import KeyKind, key_for
from domain.errors import InvalidField
from domain.holds import InvestigationFlag, investigation_id


def test_an_investigation_is_opened_closed_and_reopened_with_reasons() -> None:
    customer_id = uuid4()
    flag = InvestigationFlag.open_for(customer_id, "case AML-2026-114")
    assert flag.id == investigation_id(customer_id) and flag.under_investigation
    with pytest.raises(InvalidField):
        flag.reopen("again")
    flag.close("case closed, no SAR")
    assert not flag.under_investigation
    with pytest.raises(InvalidField):
        flag.close("twice")
    flag.reopen("new evidence")
    assert flag.to_record()["under_investigation"] is True and flag.version == 3


def test_the_flag_names_a_customer_by_its_random_id_and_needs_a_reason() -> None:
    with pytest.raises(InvalidField):
        InvestigationFlag.open_for("ada@example.com", "case 1")
    with pytest.raises(InvalidField):
        InvestigationFlag.open_for(uuid4(), "   ")


def test_every_field_of_the_flag_and_of_a_hold_outlives_the_profile_key() -> None:
    # Fail-closed would put an uncatalogued name under the profile key, erased with it.
    for name in ("customer_id", "reason", "under_investigation", "kept", "hold_until"):
        assert key_for(name) is KeyKind.SYSTEM, name
