"""Stories of a customer record: registering, changing, closing, restricting."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.customer import KYC_STATUSES, KYC_TRANSITIONS, Customer
from domain.errors import (
    BankAccountNotFound,
    DomainError,
    CardNotFound,
    CustomerRestricted,
    InvalidField,
    InvalidKycTransition,
    NotRestricted,
    RelationshipClosed,
    SensitiveAuthenticationDataRefused,
)
from tests.domain.leaks import shown_spellings
from tests.domain.examples import DE_IBAN, GB_IBAN, MASTERCARD_TEST_PAN, VISA_TEST_PAN, register_ada

# --- registering -------------------------------------------------------------------------


def test_a_registered_customer_is_active_with_normalised_fields_and_a_random_id() -> None:
    ada = register_ada(
        email=" Ada@EXAMPLE.com ",
        cards=[{"pan": "4111 1111 1111 1111", "expiry": "12/29"}],
        bank_accounts=[{"iban": "gb82 west 1234 5698 7654 32"}],
    )
    record = ada.to_record()

    assert ada.id.version == 4  # random, never derived from personal data (R1.5)
    assert record["status"] == "active"
    assert record["kyc_status"] == "not_started"
    assert record["restricted"] is False
    assert record["email"] == "Ada@example.com"
    assert record["phone"] == "+442079460000"
    assert record["national_id"] == "QQ123456C"
    assert record["address"]["country"] == "GB"
    assert record["bank_accounts"] == [{"account_id": ada.bank_accounts[0]["account_id"], "iban": GB_IBAN}]
    (card,) = record["cards"]
    assert card["bin"] == "411111" and card["last4"] == "1111" and card["expiry_month"] == "2029-12"


@pytest.mark.controls("GDPR-25")
def test_two_customers_with_the_same_details_get_different_ids() -> None:
    assert register_ada().id != register_ada().id


@pytest.mark.controls("PCI-DSS-3.4.1")
def test_the_record_never_shows_a_full_card_number() -> None:
    ada = register_ada(cards=[{"pan": VISA_TEST_PAN, "expiry": "12/29"}])
    assert VISA_TEST_PAN not in repr(ada.to_record(include_interactions=True))


def test_an_individual_needs_a_date_of_birth_but_a_business_does_not() -> None:
    with pytest.raises(InvalidField) as refused:
        register_ada(date_of_birth=None)
    assert refused.value.field == "date_of_birth"

    shop = register_ada(type="business", full_name="Analytical Engines Ltd", date_of_birth=None)
    assert shop.to_record()["date_of_birth"] is None


def test_a_date_of_birth_in_the_future_is_refused() -> None:
    tomorrow = date.today() + timedelta(days=2)
    with pytest.raises(InvalidField) as refused:
        register_ada(date_of_birth=tomorrow.isoformat())
    assert refused.value.field == "date_of_birth"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "person"),
        ("risk_rating", "extreme"),
        ("kyc_status", "approved"),
        ("portfolio", ""),
        ("portfolio", "no spaces allowed"),
        ("full_name", "   "),
        ("email", "not-an-email"),
    ],
)
def test_a_field_outside_its_rules_is_refused_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(InvalidField) as refused:
        register_ada(**{field: value})
    assert refused.value.field == field


def test_a_card_failing_luhn_is_refused() -> None:
    with pytest.raises(InvalidField) as refused:
        register_ada(cards=[{"pan": "4111111111111112", "expiry": "12/29"}])
    assert refused.value.field == "pan"
    assert "4111" not in str(refused.value)


def test_attack_a_cvv_sent_with_a_new_customer_is_refused_and_not_echoed() -> None:
    with pytest.raises(SensitiveAuthenticationDataRefused) as refused:
        register_ada(cards=[{"pan": VISA_TEST_PAN, "expiry": "12/29", "cvv": "737"}])
    assert refused.value.field == "cvv"
    assert "737" not in str(refused.value)


def test_an_iban_failing_mod_97_is_refused() -> None:
    with pytest.raises(InvalidField) as refused:
        register_ada(bank_accounts=[{"iban": "GB82WEST12345698765431"}])
    assert refused.value.field == "iban"


def test_the_same_card_twice_is_refused() -> None:
    ada = register_ada(cards=[{"pan": VISA_TEST_PAN, "expiry": "12/29"}])
    with pytest.raises(InvalidField):
        ada.add_card({"pan": "4111-1111-1111-1111", "expiry": "01/30"})


# --- changing ---------------------------------------------------------------------------------


def test_an_agent_updates_contact_details_and_an_omitted_one_stays() -> None:
    ada = register_ada()
    ada.change_contact(email="ada@analytical.example")
    assert ada.email == "ada@analytical.example"
    assert ada.phone == "+442079460000"

    ada.change_contact(phone=None)
    assert ada.phone is None and ada.email == "ada@analytical.example"


def test_identity_is_rectified_field_by_field() -> None:
    ada = register_ada()
    ada.change_identity(full_name="Augusta Ada King")
    ada.change_identity(national_id="qq 65 43 21 a")
    assert (ada.full_name, ada.date_of_birth, ada.national_id) == ("Augusta Ada King", "1985-12-10", "QQ654321A")
    with pytest.raises(InvalidField):
        ada.change_identity(date_of_birth=None)  # an individual keeps a date of birth


def test_address_risk_segment_and_portfolio_change() -> None:
    ada = register_ada()
    ada.change_address({"line1": "1 Marylebone Road", "city": "London", "country": "gb"})
    ada.rate_risk("high")
    ada.change_segment("premium")
    ada.move_portfolio("uk-private")
    record = ada.to_record()
    assert record["address"] == {
        "line1": "1 Marylebone Road", "line2": None, "city": "London", "postcode": None, "country": "GB",
    }
    assert (record["risk_rating"], record["segment"], record["portfolio"]) == ("high", "premium", "uk-private")


def test_cards_and_bank_accounts_are_added_and_removed_by_id() -> None:
    ada = register_ada()
    card_id = ada.add_card({"pan": MASTERCARD_TEST_PAN, "expiry": "2030-06"})
    account_id = ada.add_bank_account({"iban": DE_IBAN})
    assert [c["last4"] for c in ada.to_record()["cards"]] == ["4444"]
    assert [a["iban"] for a in ada.to_record()["bank_accounts"]] == [DE_IBAN]

    ada.remove_card(card_id)
    ada.remove_bank_account(account_id)
    assert ada.cards == [] and ada.bank_accounts == []
    with pytest.raises(CardNotFound):
        ada.remove_card(card_id)
    with pytest.raises(BankAccountNotFound):
        ada.remove_bank_account(account_id)


def test_attack_a_security_code_smuggled_into_add_card_is_refused() -> None:
    ada = register_ada()
    with pytest.raises(SensitiveAuthenticationDataRefused):
        ada.add_card({"pan": VISA_TEST_PAN, "expiry": "12/29", "CVC2": "123"})
    assert ada.cards == [] and len(ada.pending_events) == 1  # only the registration


def test_an_interaction_is_recorded_with_its_own_id_and_time() -> None:
    ada = register_ada()
    before = datetime.now(timezone.utc)
    interaction_id = ada.record_interaction("complaint", "Phone", "Disputes a fee.\nWants a call back.")
    (interaction,) = ada.interactions
    assert interaction["interaction_id"] == interaction_id
    assert (interaction["kind"], interaction["channel"]) == ("complaint", "phone")
    assert interaction["notes"] == "Disputes a fee.\nWants a call back."
    assert datetime.fromisoformat(interaction["occurred_at"]) >= before


def test_an_interaction_time_may_be_given_but_not_in_the_future() -> None:
    ada = register_ada()
    ada.record_interaction("call", "phone", "", occurred_at="2026-01-05T10:00:00+01:00")
    assert ada.interactions[0]["occurred_at"] == "2026-01-05T09:00:00+00:00"
    with pytest.raises(InvalidField):
        ada.record_interaction("call", "phone", "", occurred_at=datetime.now(timezone.utc) + timedelta(hours=1))
    with pytest.raises(InvalidField):
        ada.record_interaction("call", "phone", "", occurred_at="2026-01-05T10:00:00")  # no time zone


def test_an_interaction_of_unknown_kind_or_with_a_free_text_channel_is_refused() -> None:
    ada = register_ada()
    with pytest.raises(InvalidField) as refused:
        ada.record_interaction("visit", "branch", "")
    assert refused.value.field == "kind"
    with pytest.raises(InvalidField) as refused:
        ada.record_interaction("call", "called Ada on her mobile", "")
    assert refused.value.field == "channel"


# --- KYC ------------------------------------------------------------------------------------------

_PATH_TO = {
    "not_started": [],
    "pending": ["pending"],
    "verified": ["pending", "verified"],
    "rejected": ["pending", "rejected"],
    "expired": ["pending", "verified", "expired"],
}


def customer_with_kyc(status: str) -> Customer:
    customer = register_ada()
    for step in _PATH_TO[status]:
        customer.change_kyc_status(step)
    assert customer.kyc_status == status
    return customer


ALLOWED = [(a, b) for a, targets in KYC_TRANSITIONS.items() for b in sorted(targets)]
FORBIDDEN = [(a, b) for a in KYC_STATUSES for b in KYC_STATUSES if (a, b) not in ALLOWED]


def test_the_allowed_kyc_transitions_are_the_documented_ones() -> None:
    assert sorted(ALLOWED) == sorted(
        [
            ("not_started", "pending"),
            ("pending", "verified"), ("pending", "rejected"),
            ("verified", "expired"), ("verified", "pending"),
            ("expired", "pending"),
            ("rejected", "pending"),
        ]
    )


@pytest.mark.parametrize(("start", "target"), ALLOWED)
def test_an_allowed_kyc_transition_happens(start: str, target: str) -> None:
    customer = customer_with_kyc(start)
    customer.change_kyc_status(target)
    assert customer.to_record()["kyc_status"] == target


@pytest.mark.parametrize(("start", "target"), FORBIDDEN)
@pytest.mark.controls("ASVS-V2")
def test_a_forbidden_kyc_transition_is_refused_naming_both_states(start: str, target: str) -> None:
    customer = customer_with_kyc(start)
    with pytest.raises(InvalidKycTransition) as refused:
        customer.change_kyc_status(target)
    assert start in str(refused.value) and target in str(refused.value)
    assert customer.kyc_status == start


def test_an_unknown_kyc_status_is_refused_without_echo() -> None:
    customer = customer_with_kyc("pending")
    with pytest.raises(InvalidField) as refused:
        customer.change_kyc_status("ada-lovelace-1985")
    assert "ada-lovelace-1985" not in str(refused.value)


# --- closing and restricting ------------------------------------------------------------------------


def _every_edit(customer: Customer, card_id: str, account_id: str) -> list[Any]:
    past = customer
    return [
        lambda: customer.change_contact(email="new@example.com"),
        lambda: customer.change_address({"line1": "2 Road", "city": "Leeds", "country": "GB"}),
        lambda: customer.change_identity(full_name="Someone Else"),
        lambda: customer.rate_risk("high"),
        lambda: customer.change_segment("vip"),
        lambda: customer.move_portfolio("elsewhere"),
        lambda: customer.change_kyc_status("pending"),
        lambda: customer.add_card({"pan": MASTERCARD_TEST_PAN, "expiry": "12/30"}),
        lambda: customer.remove_card(card_id),
        lambda: customer.add_bank_account({"iban": DE_IBAN}),
        lambda: customer.remove_bank_account(account_id),
        lambda: customer.record_interaction("note", "desk", "a note"),
        lambda: customer.revert_to(past, "wrong change"),
    ]


def test_a_closed_relationship_refuses_every_edit() -> None:
    ada = register_ada(cards=[{"pan": VISA_TEST_PAN, "expiry": "12/29"}], bank_accounts=[{"iban": GB_IBAN}])
    ada.close_relationship("customer asked to close the account")
    record = ada.to_record()
    assert record["status"] == "closed"
    assert record["closed_on"] == ada.modified_on.isoformat()  # the closing event's own time

    for edit in _every_edit(ada, ada.cards[0]["card_id"], ada.bank_accounts[0]["account_id"]):
        with pytest.raises(RelationshipClosed):
            edit()
    with pytest.raises(RelationshipClosed):
        ada.close_relationship("again")
    assert ada.to_record() == record


def test_a_restricted_customer_refuses_every_edit_until_the_restriction_is_lifted() -> None:
    ada = register_ada(cards=[{"pan": VISA_TEST_PAN, "expiry": "12/29"}], bank_accounts=[{"iban": GB_IBAN}])
    ada.restrict("accuracy contested by the data subject")
    assert ada.to_record()["restricted"] is True

    for edit in _every_edit(ada, ada.cards[0]["card_id"], ada.bank_accounts[0]["account_id"]):
        with pytest.raises(CustomerRestricted):
            edit()
    with pytest.raises(CustomerRestricted):
        ada.restrict("twice")

    ada.lift_restriction("accuracy confirmed")
    ada.rate_risk("medium")
    assert ada.risk_rating == "medium"
    with pytest.raises(NotRestricted):
        ada.lift_restriction("nothing to lift")


def test_an_ended_relationship_can_still_be_restricted_for_an_aml_hold() -> None:
    ada = register_ada()
    ada.close_relationship("relationship ended")
    ada.restrict("erasure requested; KYC data under AML hold")
    assert ada.to_record()["restricted"] is True


def test_a_reason_is_required_to_close_or_restrict() -> None:
    ada = register_ada()
    with pytest.raises(InvalidField) as refused:
        ada.close_relationship("  ")
    assert refused.value.field == "reason"


# --- reverting (R4.5) ------------------------------------------------------------------------------


def test_a_customer_is_reverted_to_a_past_version_by_a_new_event() -> None:
    ada = register_ada()
    past = Customer.Registered.mutate(ada.pending_events[0], None)  # version 1, rebuilt from its event
    ada.change_contact(email="wrong@example.com")
    ada.rate_risk("high")
    ada.change_kyc_status("pending")
    ada.record_interaction("call", "phone", "asked about fees")

    ada.revert_to(past, "changes made on the wrong customer")

    assert ada.version == 6
    assert (ada.email, ada.risk_rating, ada.kyc_status) == ("ada@example.com", "low", "not_started")
    assert len(ada.interactions) == 1  # service history is not reverted


def test_revert_to_another_customers_state_is_refused() -> None:
    with pytest.raises(InvalidField):
        register_ada().revert_to(register_ada(), "mistake")


# --- errors never carry the value (R1.3, R7.3) -------------------------------------------------------

_REGISTRATION_FIELDS = [
    "type", "full_name", "date_of_birth", "national_id", "email", "phone", "portfolio",
    "risk_rating", "kyc_status", "segment",
]


@settings(max_examples=50)
@given(st.sampled_from(_REGISTRATION_FIELDS), st.text(min_size=6, max_size=300))
def test_a_refused_registration_never_repeats_the_value(field: str, value: str) -> None:
    try:
        register_ada(**{field: value})
    except DomainError as refused:
        assert shown_spellings(value, refused) == []
