"""Card numbers, IBANs and contact details: what we accept, how it is written down."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import DomainError, InvalidField, SensitiveAuthenticationDataRefused
from domain.values import (
    IBAN_LENGTHS,
    SENSITIVE_AUTHENTICATION_FIELDS,
    card_bin,
    card_last4,
    iban_valid,
    luhn_valid,
    normalise_address,
    normalise_date,
    normalise_email,
    normalise_expiry,
    normalise_iban,
    normalise_national_id,
    normalise_pan,
    normalise_phone,
    parse_card,
    refuse_sensitive_authentication_data,
)
from tests.domain.leaks import shown_spellings
from tests.domain.examples import DE_IBAN, GB_IBAN, MASTERCARD_TEST_PAN, VISA_TEST_PAN

# --- Luhn --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pan", [VISA_TEST_PAN, MASTERCARD_TEST_PAN, "378282246310005", "6011111111111117", "4012888888881881"]
)
def test_published_test_card_numbers_pass_luhn(pan: str) -> None:
    assert luhn_valid(pan)


@pytest.mark.parametrize("pan", ["4111111111111112", "5555555555554440", "1234567812345678", "", "4111-1111"])
def test_a_mistyped_card_number_fails_luhn(pan: str) -> None:
    assert not luhn_valid(pan)


def _luhn_check_digit(body: str) -> str:
    """Independent of the code under test: the check digit that makes body+digit valid."""
    total = 0
    for i, char in enumerate(reversed(body)):
        digit = int(char)
        if i % 2 == 0:  # doubled: these positions are odd once the check digit is appended
            digit = digit * 2 - 9 if digit * 2 > 9 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


@given(st.text(alphabet="0123456789", min_size=11, max_size=18), st.data())
def test_any_card_number_with_its_luhn_digit_validates_and_any_one_digit_typo_fails(
    body: str, data: st.DataObject
) -> None:
    pan = body + _luhn_check_digit(body)
    assert luhn_valid(pan)

    position = data.draw(st.integers(0, len(pan) - 1))
    other = data.draw(st.sampled_from([d for d in "0123456789" if d != pan[position]]))
    typo = pan[:position] + other + pan[position + 1 :]
    assert not luhn_valid(typo)


def test_a_card_number_is_written_as_digits_with_bin_and_last_four() -> None:
    pan = normalise_pan(" 4111 1111-1111 1111 ")
    assert pan == VISA_TEST_PAN
    assert card_bin(pan) == "411111"
    assert card_last4(pan) == "1111"


@pytest.mark.parametrize("text", ["41111111111", "41111111111111111111", "4111 1111 1111 111x", ""])
def test_a_card_number_of_the_wrong_shape_is_refused(text: str) -> None:
    with pytest.raises(InvalidField) as refused:
        normalise_pan(text)
    assert refused.value.field == "pan"


@pytest.mark.parametrize(
    ("typed", "stored"), [("12/29", "2029-12"), ("1/30", "2030-01"), ("07/2031", "2031-07"), ("2032-02", "2032-02")]
)
def test_a_card_expiry_is_written_as_year_and_month(typed: str, stored: str) -> None:
    assert normalise_expiry(typed) == stored


@pytest.mark.parametrize("typed", ["13/29", "00/29", "2029-13", "12-29", "soon"])
def test_an_impossible_expiry_is_refused(typed: str) -> None:
    with pytest.raises(InvalidField):
        normalise_expiry(typed)


# --- Sensitive authentication data (R1.7) ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SENSITIVE_AUTHENTICATION_FIELDS))
@pytest.mark.controls("PCI-DSS-3.3.1")
def test_attack_security_code_track_or_pin_sent_with_a_card_is_refused_without_echo(name: str) -> None:
    secret = "737"  # a security code, or a stand-in for track data or a PIN block
    with pytest.raises(SensitiveAuthenticationDataRefused) as refused:
        parse_card({"pan": VISA_TEST_PAN, "expiry": "12/29", name: secret})
    assert refused.value.field == name
    assert secret not in str(refused.value)
    assert VISA_TEST_PAN not in str(refused.value)


@pytest.mark.parametrize("spelling", ["CVV", "Cvc2", "security-code", "Security Code", "PIN_BLOCK", "Track2"])
def test_attack_security_code_under_another_spelling_is_refused(spelling: str) -> None:
    with pytest.raises(SensitiveAuthenticationDataRefused):
        parse_card({"pan": VISA_TEST_PAN, "expiry": "12/29", spelling: "123"})


def test_attack_security_code_hidden_deep_in_a_request_is_refused() -> None:
    request = {"full_name": "Ada", "cards": [{"pan": VISA_TEST_PAN, "extra": {"meta": [{"cvv2": "123"}]}}]}
    with pytest.raises(SensitiveAuthenticationDataRefused) as refused:
        refuse_sensitive_authentication_data(request)
    assert refused.value.field == "cvv2"
    assert "123" not in str(refused.value)


@pytest.mark.parametrize(
    "swipe", [";4111111111111111=29121011000012345678?", "%B4111111111111111^LOVELACE/ADA^2912101?"]
)
def test_attack_a_card_swipe_pasted_into_the_pan_field_is_refused_as_track_data(swipe: str) -> None:
    with pytest.raises(SensitiveAuthenticationDataRefused) as refused:
        normalise_pan(swipe)
    assert refused.value.field == "track_data"
    assert "4111" not in str(refused.value)


def test_a_card_with_an_unknown_field_is_refused() -> None:
    with pytest.raises(InvalidField):
        parse_card({"pan": VISA_TEST_PAN, "expiry": "12/29", "nickname": "x"})


# --- IBAN (ISO 13616) ------------------------------------------------------------------------


@pytest.mark.parametrize("iban", [GB_IBAN, DE_IBAN, "gb82 west 1234 5698 7654 32", "FR1420041010050500013M02606"])
def test_registry_example_ibans_are_valid(iban: str) -> None:
    assert iban_valid(iban)


def test_an_iban_is_written_upper_case_without_spaces() -> None:
    assert normalise_iban(" gb82 WEST 1234 5698 7654 32 ") == GB_IBAN


@pytest.mark.parametrize(
    "iban",
    [
        "GB82WEST12345698765431",  # one digit changed
        "DE89370400440532013001",  # one digit changed
        "GB82WEST1234569876543",  # too short for GB
        "ZZ82WEST12345698765432",  # no such IBAN country
        "GB8XWEST12345698765432",  # check digits not digits
    ],
)
def test_a_wrong_iban_is_refused(iban: str) -> None:
    assert not iban_valid(iban)


def test_every_sepa_country_and_the_uk_has_an_iban_length() -> None:
    sepa = set(
        "AD AT BE BG CH CY CZ DE DK EE ES FI FR GB GI GR HR HU IE IS IT LI LT LU LV MC MT NL NO PL PT RO SE SI SK SM VA".split()
    )
    assert sepa <= set(IBAN_LENGTHS)
    assert IBAN_LENGTHS["GB"] == 22 and IBAN_LENGTHS["DE"] == 22 and IBAN_LENGTHS["NO"] == 15


def _mod97_check_digits(country: str, bban: str) -> str:
    """Independent of the code under test: ISO 13616 check digits."""
    numeric = "".join(str(int(char, 36)) for char in bban + country + "00")
    return f"{98 - int(numeric) % 97:02d}"


@given(st.sampled_from(sorted(IBAN_LENGTHS)), st.data())
def test_any_iban_with_its_check_digits_validates_and_any_one_digit_typo_fails(
    country: str, data: st.DataObject
) -> None:
    length = IBAN_LENGTHS[country]
    bban = data.draw(st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=length - 4, max_size=length - 4))
    iban = country + _mod97_check_digits(country, bban) + bban
    assert iban_valid(iban)

    digit_positions = [i for i, char in enumerate(iban) if char.isdigit()]
    position = data.draw(st.sampled_from(digit_positions))
    other = data.draw(st.sampled_from([d for d in "0123456789" if d != iban[position]]))
    assert not iban_valid(iban[:position] + other + iban[position + 1 :])


# --- Contact and identity ---------------------------------------------------------------------


def test_an_email_keeps_its_local_part_and_lower_cases_its_domain() -> None:
    assert normalise_email("  Ada.Lovelace@Example.COM ") == "Ada.Lovelace@example.com"


@pytest.mark.parametrize("text", ["ada", "ada@", "@example.com", "ada@example", "a da@example.com", "a@b@c.com"])
def test_a_malformed_email_is_refused(text: str) -> None:
    with pytest.raises(InvalidField):
        normalise_email(text)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("+44 (0)20 7946-0000", "+442079460000"),
        ("0044 20 7946 0000", "+442079460000"),
        ("020.7946.0000", "02079460000"),
    ],
)
def test_a_phone_number_keeps_its_plus_and_digits(typed: str, stored: str) -> None:
    assert normalise_phone(typed) == stored


@pytest.mark.parametrize("text", ["1234567", "+1234567890123456", "call me", "+44 20 7946 000x"])
def test_a_phone_number_of_the_wrong_shape_is_refused(text: str) -> None:
    with pytest.raises(InvalidField):
        normalise_phone(text)


def test_a_national_id_loses_spaces_and_hyphens_and_is_upper_cased() -> None:
    assert normalise_national_id(" qq-12 34 56 c ") == "QQ123456C"


def test_normalisers_are_deterministic_so_blind_indexes_match() -> None:
    typed = [" Ada@Example.com", "ada@EXAMPLE.com "]
    assert {normalise_email(t) for t in typed} == {"Ada@example.com", "ada@example.com"}
    assert normalise_phone("+44 20 7946 0000") == normalise_phone("0044-20-7946-0000")
    assert normalise_national_id("qq 123456 c") == normalise_national_id("QQ-123456-C")


def test_an_address_is_written_with_every_part_and_a_country_code() -> None:
    address = normalise_address({"line1": " 1  High Street ", "city": "London", "postcode": "sw1a 1aa", "country": "gb"})
    assert address == {"line1": "1 High Street", "line2": None, "city": "London", "postcode": "SW1A 1AA", "country": "GB"}


@pytest.mark.parametrize(
    "address",
    [
        {"city": "London", "country": "GB"},
        {"line1": "1 High Street", "country": "GB"},
        {"line1": "1 High Street", "city": "London"},
        {"line1": "1 High Street", "city": "London", "country": "XX"},
        {"line1": "1 High Street", "city": "London", "country": "GB", "flat": "2"},
        {"line1": "1 High\x1b[2J Street", "city": "London", "country": "GB"},
    ],
)
def test_an_incomplete_or_odd_address_is_refused(address: dict[str, str]) -> None:
    with pytest.raises(InvalidField):
        normalise_address(address)


@pytest.mark.parametrize("text", ["10/12/1985", "1985-02-30", "yesterday"])
def test_a_date_must_be_an_iso_calendar_date(text: str) -> None:
    with pytest.raises(InvalidField):
        normalise_date(text, "date_of_birth")


# --- Error messages never carry the value (R1.3, R7.3) -------------------------------------------

_NORMALISERS = [
    ("pan", normalise_pan),
    ("iban", normalise_iban),
    ("email", normalise_email),
    ("phone", normalise_phone),
    ("national_id", normalise_national_id),
    ("expiry", normalise_expiry),
    ("date_of_birth", lambda value: normalise_date(value, "date_of_birth")),
    ("address", lambda value: normalise_address({"line1": value, "city": value, "country": value})),
]


@given(st.text(min_size=6, max_size=40))
def test_no_error_message_repeats_the_value_it_refused(value: str) -> None:
    for field, normalise in _NORMALISERS:
        try:
            normalise(value)
        except DomainError as refused:
            assert shown_spellings(value, refused) == [], field


@given(st.text(alphabet="0123456789", min_size=12, max_size=19))
def test_attack_a_refused_card_number_leaves_no_digits_of_it_in_the_error(digits: str) -> None:
    try:
        parse_card({"pan": digits, "expiry": "12/29"})
    except DomainError as refused:
        shown = f"{refused} {refused!r} {vars(refused)!r}"
        assert digits[-4:] not in shown
        assert digits[:6] not in shown


_TYPED = {
    "email": st.emails().map(lambda e: f"  {e[: e.index('@')]}@{e[e.index('@') + 1:].upper()} "),
    "phone": st.text(alphabet="+0123456789 -.()", min_size=8, max_size=24),
    "national_id": st.text(alphabet="abcXYZ0123456789 -./", min_size=4, max_size=40),
    "pan": st.text(alphabet="0123456789 -", min_size=12, max_size=24),
    "expiry": st.from_regex(r"\A(\d{1,2}/\d{2}|\d{4}-\d{2})\Z"),
}


@given(st.data())
@pytest.mark.parametrize("field", sorted(_TYPED))
def test_a_normalised_value_normalises_to_itself_so_stored_and_searched_values_agree(
    field: str, data: st.DataObject
) -> None:
    normalise = dict(_NORMALISERS)[field]
    value = data.draw(_TYPED[field])
    try:
        once = normalise(value)
    except DomainError:
        return
    assert normalise(once) == once
