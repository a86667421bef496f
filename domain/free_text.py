"""What no text Strongroom takes may carry (R1.6, R1.7; PCI DSS 3.3, 3.4).

Two pure checks, applied once at the API's schema layer (web/schemas.py) to every
string of every request, and the second to every free-text field:

- `hostile_character`: an unpaired surrogate (category Cs), a format or bidi control
  (Cf: U+202E RIGHT-TO-LEFT OVERRIDE, U+200B, U+FEFF, ...) or NUL. A lone surrogate
  cannot be encoded as UTF-8, so it breaks whatever stores or seals the text (issue
  10: it failed a break-glass audit record after its grant was written); bidi
  controls make a reviewer read a reason or a name other than what was stored
  (Trojan Source); NUL truncates C strings and is refused by PostgreSQL text.
- `card_data_in`: a primary account number (a Luhn-valid run of 13 to 19 digits,
  spaces or dashes allowed between them), a card security code given as such
  ("cvv 737", "CVC2: 123") or magnetic-stripe track data. Free text (notes, names,
  address lines, reasons) is no place for card data: PCI DSS 3.3 forbids keeping
  security codes and track data at all, and 3.4 a PAN shown in full; the PAN has its
  own field, stored encrypted and shown masked.

The detector errs on the side of refusing: an ordinary 13-19 digit number that
happens to pass Luhn (one in ten do) is refused as well, and the member of staff
writes it another way. Numbers of 12 digits or fewer (phones, dates, amounts,
postcodes) are never taken for a PAN.
"""

from __future__ import annotations

import re
import unicodedata

from domain.values import luhn_valid

PAN_MIN_DIGITS, PAN_MAX_DIGITS = 13, 19

# Categories refused in any text: Cs (surrogates, unpaired in a decoded str) and Cf
# (format controls, the bidi overrides and isolates among them).
HOSTILE_CATEGORIES = frozenset({"Cs", "Cf"})


def hostile_character(text: str) -> bool:
    """Whether `text` holds an unpaired surrogate, a format/bidi control or NUL."""
    if text.isascii() and text.isprintable():
        return False  # printable ASCII holds none of them: ids and names skip the per-character walk
    return any(char == "\x00" or unicodedata.category(char) in HOSTILE_CATEGORIES for char in text)


# A run of digit groups: digits, with single spaces or dashes between them. Each
# group is a maximal block of ASCII digits; a PAN may be any consecutive groups.
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*(?![0-9])")
_GROUP_SPLIT = re.compile(r"[ -]")

_SECURITY_CODE = re.compile(
    r"(?<![a-z0-9])(?:cvv2?|cvc2?|cvn|cid|csc|cav2|security[ _-]?code|sec[ _-]?code|card[ _-]?code)"
    r"(?![a-z])[^a-z0-9\n]{0,4}[0-9]{3,4}(?![0-9])",
    re.IGNORECASE,
)
# Track 1: %B, the PAN, ^NAME^, expiry...; track 2: ;PAN=expiry... (ISO/IEC 7813).
_TRACK_1 = re.compile(r"%?B[0-9]{12,19}\^[^^\n]{0,26}\^[0-9]{4}")
_TRACK_2 = re.compile(r";?(?<![0-9])[0-9]{12,19}=[0-9]{4}")


def _holds_pan(run: str) -> bool:
    groups = _GROUP_SPLIT.split(run)
    for start in range(len(groups)):
        digits = ""
        for group in groups[start:]:
            digits += group
            if len(digits) > PAN_MAX_DIGITS:
                break
            if len(digits) >= PAN_MIN_DIGITS and luhn_valid(digits):
                return True
    return False


def card_data_in(text: str) -> str | None:
    """What card data `text` holds ("card_number", "security_code", "track_data"), or
    None. The kind only: never the value, which must not travel any further."""
    if _TRACK_1.search(text) or _TRACK_2.search(text):
        return "track_data"
    if _SECURITY_CODE.search(text):
        return "security_code"
    if any(_holds_pan(match.group()) for match in _DIGIT_RUN.finditer(text)):
        return "card_number"
    return None
