"""Validation and normalisation of the values a customer record holds.

Pure functions over plain types. Each normaliser returns the one canonical form of
its input or raises `InvalidField`, and is deterministic: blind indexes (R1.3) are
HMACs of these canonical forms, so the same email typed twice must normalise to the
same string, today and on replay years from now. Change a normaliser and every blind
index built with it must be rebuilt.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import date
from typing import Any

from domain.errors import InvalidField, SensitiveAuthenticationDataRefused

# --- Card data (R1.7, PCI DSS v4.0.1 3.3-3.5) -------------------------------------

SENSITIVE_AUTHENTICATION_FIELDS: frozenset[str] = frozenset(
    {
        "cvv", "cvc", "cvv2", "cvc2", "cid", "security_code",
        "track1", "track2", "track_data",
        "pin", "pin_block",
    }
)
"""Names under which card security codes, magnetic-stripe data or PIN blocks arrive.
PCI DSS 3.3.1 forbids keeping them after authorisation; we never take them at all."""

_CARD_INPUT_FIELDS = frozenset({"pan", "expiry"})


def _field_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def refuse_sensitive_authentication_data(data: object) -> None:
    """Raise `SensitiveAuthenticationDataRefused` if any key, at any depth, names SAD.

    The whole input is walked, not just the card, so a CVV tucked into a nested
    object or a list is refused all the same. The error names the canonical field
    (e.g. "cvv"), never its value.
    """
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(key, str) and _field_key(key) in SENSITIVE_AUTHENTICATION_FIELDS:
                raise SensitiveAuthenticationDataRefused(_field_key(key))
            refuse_sensitive_authentication_data(value)
    elif isinstance(data, (list, tuple)):
        for item in data:
            refuse_sensitive_authentication_data(item)


def luhn_valid(pan: str) -> bool:
    """True when the digits of `pan` pass the Luhn (mod 10) check (ISO/IEC 7812-1)."""
    if not pan.isascii() or not pan.isdigit() or len(pan) < 2:
        return False
    total = 0
    for position, char in enumerate(reversed(pan)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def normalise_pan(value: object) -> str:
    """Digits only, 12-19 of them (ISO/IEC 7812). Spaces and hyphens are dropped.

    Does not check the Luhn digit: see `check_pan`.
    """
    if not isinstance(value, str):
        raise InvalidField("pan", "must be a string of digits")
    if "=" in value or "^" in value:
        # Field separators of magnetic-stripe track 2 (=) and track 1 (^): someone
        # pasted a card swipe into the PAN field. That is track data (R1.7).
        raise SensitiveAuthenticationDataRefused("track_data")
    pan = re.sub(r"[\s\-]", "", value)
    if not pan.isascii() or not pan.isdigit():
        raise InvalidField("pan", "must contain digits only")
    if not 12 <= len(pan) <= 19:
        raise InvalidField("pan", "must have 12 to 19 digits")
    return pan


def check_pan(pan: str) -> None:
    """A stored PAN is normalised and passes Luhn."""
    if normalise_pan(pan) != pan:
        raise InvalidField("pan", "must be normalised")
    if not luhn_valid(pan):
        raise InvalidField("pan", "fails the Luhn check digit")


def card_bin(pan: str) -> str:
    """The issuer identification number: the first six digits."""
    return pan[:6]


def card_last4(pan: str) -> str:
    return pan[-4:]


_EXPIRY_SLASH = re.compile(r"^(\d{1,2})\s*/\s*(\d{2}|\d{4})$")
_EXPIRY_ISO = re.compile(r"^(\d{4})-(\d{2})$")


def normalise_expiry(value: object) -> str:
    """"MM/YY", "MM/YYYY" or "YYYY-MM" to "YYYY-MM"."""
    if not isinstance(value, str):
        raise InvalidField("expiry", "must be MM/YY or YYYY-MM")
    text = value.strip()
    if match := _EXPIRY_SLASH.match(text):
        month, year_text = int(match[1]), match[2]
        year = 2000 + int(year_text) if len(year_text) == 2 else int(year_text)
    elif match := _EXPIRY_ISO.match(text):
        year, month = int(match[1]), int(match[2])
    else:
        raise InvalidField("expiry", "must be MM/YY or YYYY-MM")
    if not 1 <= month <= 12:
        raise InvalidField("expiry", "month must be 01 to 12")
    if not 2000 <= year <= 2099:
        raise InvalidField("expiry", "year out of range")
    return f"{year:04d}-{month:02d}"


def check_expiry_month(expiry_month: str) -> None:
    if not isinstance(expiry_month, str) or normalise_expiry(expiry_month) != expiry_month:
        raise InvalidField("expiry_month", "must be YYYY-MM")


def parse_card(raw: object) -> tuple[str, str]:
    """Card input {pan, expiry} to (pan, expiry_month), refusing SAD first (R1.7)."""
    if not isinstance(raw, Mapping):
        raise InvalidField("cards", "each card must be an object with pan and expiry")
    refuse_sensitive_authentication_data(raw)
    unknown = {key for key in raw if key not in _CARD_INPUT_FIELDS}
    if unknown:
        raise InvalidField("cards", "unknown card field; allowed: pan, expiry")
    if "pan" not in raw or "expiry" not in raw:
        raise InvalidField("cards", "pan and expiry are required")
    pan = normalise_pan(raw["pan"])
    check_pan(pan)
    return pan, normalise_expiry(raw["expiry"])


# --- Bank accounts (ISO 13616) -------------------------------------------------------

IBAN_LENGTHS: Mapping[str, int] = {
    # SEPA scheme countries and territories.
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27,
    "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "VA": 22,
    # Other IBAN countries of the SWIFT IBAN registry.
    "AE": 23, "AL": 28, "AZ": 28, "BA": 20, "BH": 22, "BR": 29, "BY": 28, "CR": 22,
    "DO": 28, "EG": 29, "FO": 18, "GE": 22, "GL": 18, "GT": 28, "IL": 23, "IQ": 23,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MU": 30, "PK": 24, "PS": 29, "QA": 29, "RS": 22, "SA": 24, "SC": 31,
    "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}

_IBAN_SHAPE = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]+$")


def _iban_remainder(iban: str) -> int:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97


def normalise_iban(value: object) -> str:
    """Upper-case, spaces removed; the country's length and the mod-97 check hold."""
    if not isinstance(value, str):
        raise InvalidField("iban", "must be a string")
    iban = re.sub(r"\s", "", value).upper()
    if not iban.isascii() or not _IBAN_SHAPE.match(iban):
        raise InvalidField("iban", "must be a country code, two check digits and letters or digits")
    length = IBAN_LENGTHS.get(iban[:2])
    if length is None:
        raise InvalidField("iban", "country does not issue IBANs we accept")
    if len(iban) != length:
        raise InvalidField("iban", "wrong length for its country")
    if _iban_remainder(iban) != 1:
        raise InvalidField("iban", "fails the mod-97 check digits")
    return iban


def iban_valid(value: str) -> bool:
    try:
        normalise_iban(value)
    except InvalidField:
        return False
    return True


def parse_bank_account(raw: object) -> str:
    """Bank account input {iban} to the normalised IBAN."""
    if not isinstance(raw, Mapping):
        raise InvalidField("bank_accounts", "each bank account must be an object with iban")
    refuse_sensitive_authentication_data(raw)
    if set(raw) != {"iban"}:
        raise InvalidField("bank_accounts", "a bank account has exactly one field: iban")
    return normalise_iban(raw["iban"])


# --- Contact data ---------------------------------------------------------------------

_EMAIL_DOMAIN_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def normalise_email(value: object) -> str:
    """Strip, lower-case the domain (domains are case-insensitive; local parts may not be).

    Syntax is checked simply: one "@", a local part of printable characters without
    spaces, a domain of at least two ASCII labels.
    """
    if not isinstance(value, str):
        raise InvalidField("email", "must be a string")
    text = value.strip()
    if len(text) > 254 or text.count("@") != 1:
        raise InvalidField("email", "must be one address of the form local@domain")
    local, domain = text.split("@")
    domain = domain.lower()
    if not local or len(local) > 64 or any(c.isspace() or not c.isprintable() for c in local):
        raise InvalidField("email", "local part must be 1 to 64 printable characters")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_EMAIL_DOMAIN_LABEL.match(label) for label in labels):
        raise InvalidField("email", "domain must be a valid domain name")
    return f"{local}@{domain}"


def normalise_phone(value: object) -> str:
    """E.164-ish: keep a leading "+", drop spaces, dots, hyphens and brackets; 8-15 digits.

    A leading international prefix "00" becomes "+", and the "(0)" of the national
    trunk prefix written after a country code is dropped, so "0044 20...",
    "+44 (0)20..." and "+44 20..." find each other through the blind index.
    """
    if not isinstance(value, str):
        raise InvalidField("phone", "must be a string")
    text = value.strip().replace("(0)", "")
    plus = text.startswith("+")
    digits = re.sub(r"[\s.\-()]", "", text[1:] if plus else text)
    if not digits.isascii() or not digits.isdigit():
        raise InvalidField("phone", "must contain digits, with an optional leading +")
    if not plus and digits.startswith("00"):
        # After the separators are gone, so that "0 044..." and "0044..." agree and
        # normalising a normalised number changes nothing.
        plus, digits = True, digits[2:]
    if not 8 <= len(digits) <= 15:
        raise InvalidField("phone", "must have 8 to 15 digits")
    return f"+{digits}" if plus else digits


_NATIONAL_ID = re.compile(r"^[A-Z0-9./]{4,32}$")


def normalise_national_id(value: object) -> str:
    """Spaces and hyphens removed, upper-cased: 4 to 32 letters, digits, dots or slashes."""
    if not isinstance(value, str):
        raise InvalidField("national_id", "must be a string")
    text = re.sub(r"[\s\-]", "", value).upper()
    if not text.isascii() or not _NATIONAL_ID.match(text):
        raise InvalidField("national_id", "must be 4 to 32 letters, digits, dots or slashes")
    return text


# --- Text, dates, addresses ----------------------------------------------------------


_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Cf"})


def normalise_text(value: object, field: str, *, max_length: int, required: bool = True) -> str | None:
    """One line of text: NFC, whitespace runs collapsed, no control characters.

    Control characters are refused because these values end up in terminals, CSV
    exports and log viewers, where they can forge lines or escape sequences.
    Returns None for an absent optional value.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidField(field, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidField(field, "must be a string")
    text = " ".join(unicodedata.normalize("NFC", value).split())
    # Cs and Cf too (issue 10): a lone surrogate cannot be stored or sealed as UTF-8,
    # and a bidi control makes a reviewer read other than what is stored.
    if any(unicodedata.category(char) in _REFUSED_CATEGORIES for char in text):
        raise InvalidField(field, "must not contain control characters")
    if len(text) > max_length:
        raise InvalidField(field, f"must be at most {max_length} characters")
    return text


def normalise_required_text(value: object, field: str, *, max_length: int) -> str:
    text = normalise_text(value, field, max_length=max_length, required=True)
    assert text is not None  # normalise_text raises for a missing required value
    return text


def normalise_notes(value: object, *, max_length: int = 10_000) -> str:
    """Free text that may span lines: NFC, stripped; tabs and newlines are kept."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidField("notes", "must be a string")
    text = unicodedata.normalize("NFC", value).replace("\r\n", "\n").strip()
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES and c not in "\n\t" for c in text):
        raise InvalidField("notes", "must not contain control characters")
    if len(text) > max_length:
        raise InvalidField("notes", f"must be at most {max_length} characters")
    return text


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def normalise_date(value: object, field: str) -> str:
    """An ISO 8601 calendar date, "YYYY-MM-DD"; a `date` is accepted and formatted."""
    if isinstance(value, date):
        return value.isoformat()[:10]
    if not isinstance(value, str) or not _ISO_DATE.match(value.strip()):
        raise InvalidField(field, "must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise InvalidField(field, "must be a real calendar date") from None


def check_date_of_birth(date_of_birth: str, today: date) -> None:
    born = date.fromisoformat(normalise_date(date_of_birth, "date_of_birth"))
    if born > today:
        raise InvalidField("date_of_birth", "must not be in the future")
    if born.year < 1900:
        raise InvalidField("date_of_birth", "must be in 1900 or later")


# A portfolio code; stated as is in the API's document (web/schemas.py), applied here.
PORTFOLIO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
_PORTFOLIO = re.compile(PORTFOLIO_PATTERN)


def normalise_portfolio(value: object) -> str:
    """A portfolio is a short code: 1-32 letters, digits, dots, underscores or hyphens."""
    if not isinstance(value, str) or not _PORTFOLIO.match(value.strip()):
        raise InvalidField("portfolio", "must be a short code of 1 to 32 letters, digits, . _ -")
    return value.strip()


COUNTRY_CODES: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM
    BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX
    CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG
    GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR
    IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV
    LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE
    NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO
    RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF
    WS YE YT ZA ZM ZW
    """.split()
)
"""ISO 3166-1 alpha-2 officially assigned codes."""

ADDRESS_PARTS: tuple[str, ...] = ("line1", "line2", "city", "postcode", "country")


def normalise_country(value: object, field: str = "country") -> str:
    if not isinstance(value, str) or value.strip().upper() not in COUNTRY_CODES:
        raise InvalidField(field, "must be an ISO 3166-1 alpha-2 country code")
    return value.strip().upper()


def normalise_address(value: object) -> dict[str, Any]:
    """{line1, line2, city, postcode, country}: line1, city and country required.

    Missing optional parts become None, so equal addresses are equal dicts.
    """
    if not isinstance(value, Mapping):
        raise InvalidField("address", "must be an object with line1, line2, city, postcode, country")
    unknown = [key for key in value if key not in ADDRESS_PARTS]
    if unknown:
        raise InvalidField("address", "unknown part; allowed: " + ", ".join(ADDRESS_PARTS))
    postcode = normalise_text(value.get("postcode"), "address.postcode", max_length=16, required=False)
    return {
        "line1": normalise_text(value.get("line1"), "address.line1", max_length=200),
        "line2": normalise_text(value.get("line2"), "address.line2", max_length=200, required=False),
        "city": normalise_text(value.get("city"), "address.city", max_length=100),
        "postcode": postcode.upper() if postcode is not None else None,
        "country": normalise_country(value.get("country"), "address.country"),
    }


def check_address(address: object) -> None:
    if not isinstance(address, Mapping) or normalise_address(address) != dict(address):
        raise InvalidField("address", "must be a normalised address")
