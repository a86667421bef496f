"""Card data and hostile characters in free text (issue 10 items 5 and 6; R1.7,
PCI DSS 3.3, 3.4): the pure checks of domain/free_text.py.

The Luhn part is a property: a valid PAN of any length from 13 to 19 digits, written
plain or in groups split by spaces or dashes, anywhere in ordinary text, is always
caught; ordinary text, dates, amounts and phone numbers of up to 12 digits never are.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.free_text import card_data_in, hostile_character
from domain.values import luhn_valid

WORDS = st.text(alphabet=st.characters(categories=("L", "P", "Zs"), exclude_characters="%;^="), max_size=40)


def _with_check_digit(body: str) -> str:
    for digit in "0123456789":
        if luhn_valid(body + digit):
            return body + digit
    raise AssertionError("one of ten digits always completes a Luhn number")


@st.composite
def pans(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.text(alphabet="0123456789", min_size=length - 1, max_size=length - 1))
    return _with_check_digit(body)


@st.composite
def written(draw: st.DrawFn, pan: str) -> str:
    """The PAN as a person might type it: plain, or in groups split by a space or a dash."""
    cuts = sorted(draw(st.sets(st.integers(1, len(pan) - 1), max_size=5)))
    separator = draw(st.sampled_from([" ", "-"]))
    parts = [pan[a:b] for a, b in zip([0, *cuts], [*cuts, len(pan)])]
    return separator.join(parts)


def _apart(text: str, left: bool) -> str:
    """Text that does not run into the PAN's digits (a digit next to it makes another number)."""
    if not text:
        return text
    return text + " " if left else " " + text


@given(data=st.data(), before=WORDS, after=WORDS)
@settings(max_examples=400)
def test_a_valid_pan_anywhere_in_text_is_always_caught(data: st.DataObject, before: str, after: str) -> None:
    pan = data.draw(pans())
    text = _apart(before, True) + data.draw(written(pan)) + _apart(after, False)
    assert card_data_in(text) == "card_number"


@given(pan=pans())
def test_a_pan_with_a_short_code_run_on_after_it_is_still_caught(pan: str) -> None:
    # "4929 3812 7816 6016 737": the PAN's groups followed by a security code.
    grouped = " ".join(pan[i:i + 4] for i in range(0, len(pan), 4))
    assert card_data_in(f"card {grouped} 737 thanks") == "card_number"


ORDINARY = st.one_of(
    WORDS,
    st.dates().map(lambda d: f"called on {d.isoformat()} at 10:30"),
    st.dates().map(lambda d: d.strftime("%d/%m/%Y")),
    st.integers(0, 10**9).map(lambda n: f"refund of {n / 100:.2f} EUR"),
    # Phone numbers: E.164 allows 15 digits, but 12 or fewer are never taken for a PAN.
    st.from_regex(r"\+[1-9][0-9]? [0-9]{2,3} [0-9]{3} [0-9]{3,4}", fullmatch=True),
    st.from_regex(r"0[0-9]{3}-[0-9]{3}-[0-9]{4}", fullmatch=True),
)


@given(text=ORDINARY)
@settings(max_examples=400)
def test_ordinary_text_dates_amounts_and_phone_numbers_are_not_card_data(text: str) -> None:
    assert card_data_in(text) is None


@pytest.mark.parametrize(("text", "kind"), [
    ("card 4929381278166016 cvv 737", "security_code"),   # the note of issue 10
    ("customer read out 4929 3812 7816 6016", "card_number"),
    ("4929-3812-7816-6016", "card_number"),
    ("CVC2: 123 given on the phone", "security_code"),
    ("cvv=0737", "security_code"),
    ("security code 123", "security_code"),
    ("%B4929381278166016^PLANTED/GRACE^2811101000000000000000000?", "track_data"),
    (";4929381278166016=28111010000000000000?", "track_data"),
])
def test_card_data_of_each_kind_is_named(text: str, kind: str) -> None:
    assert card_data_in(text) == kind


@pytest.mark.parametrize("text", [
    "4929381278166017",          # one digit off: Luhn fails
    "order 123456789012",        # 12 digits
    "IBAN GB33 BUKB 2020 1555 5555 55",  # not Luhn as a whole, groups neither
    "called 3 times, cvv not asked",  # the word without a code
    "postcode LS1 4AP, flat 12",
])
def test_near_misses_are_not_card_data(text: str) -> None:
    assert card_data_in(text) is None


@pytest.mark.parametrize("char", ["\udfff", "\ud800", "\u202e", "\u2066", "\u200b", "\ufeff", "\u00ad", "\x00"])
def test_surrogates_format_and_bidi_controls_and_nul_are_hostile(char: str) -> None:
    assert hostile_character(f"approved{char}by me")


@given(text=st.text(alphabet=st.characters(exclude_categories=("Cs", "Cf"), exclude_characters="\x00")))
def test_text_without_them_is_not_hostile(text: str) -> None:
    assert not hostile_character(text)
