"""The password checks beyond length and the common-password list (R2.1, issue 10 item 10b).

NIST SP 800-63B asks a verifier to refuse, besides common passwords, repetitive
strings and context-specific words: the service's name, the username and their
derivatives. A derivative an attacker tries first is a look-alike spelling, so
password and username are compared by their *skeletons*: NFKC (full-width and
compatibility forms), accents dropped, case folded, then a small table of common
confusables folded onto one Latin letter (Cyrillic "а", Greek "ο", the digit "0"
all become "o"; "1", "l", "I", "|" become "l"). Over-folding only ever refuses
more, never accepts a password the plain rules refuse.

The table covers the look-alikes a person types on purpose (Cyrillic and Greek
letters, digits and symbols standing for letters), not all of Unicode TR39: the
username alphabet is a-z 0-9 . _ -, so these are the spellings that can hide it.
No library was taken for it: `confusable_homoglyphs` reports whether a string mixes
scripts but gives no skeleton to compare by.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

# One Latin letter per group of look-alikes (after NFKC, accent removal and casefold).
_CONFUSABLE_GROUPS = {
    "a": "аα@4ɑ",  # Cyrillic a, Greek alpha, at sign, four, Latin alpha
    "b": "ьв6ß",  # Cyrillic soft sign and ve, six, sharp s (casefold makes it "ss" first)
    "c": "сϲ(",  # Cyrillic es, Greek lunate sigma, parenthesis
    "d": "ԁ",
    "e": "еεё3€",  # Cyrillic ie, Greek epsilon, three, euro
    "g": "9ɡ",
    "h": "һн",
    "j": "ј",
    "k": "кκ",
    "l": "1iіιӏ|!ɩ",  # one, i, Cyrillic i, Greek iota, palochka, bar, exclamation mark
    "m": "м",
    "n": "пη",
    "o": "0оοσ°ο",  # zero, Cyrillic o, Greek omicron and sigma, degree sign
    "p": "рρ",
    "q": "ԛ",
    "s": "ѕ5$",
    "t": "т7τ+",
    "u": "υμ",
    "v": "ν",
    "w": "ԝω",
    "x": "хχ×",
    "y": "уγ",
    "z": "2",
}
_FOLD = str.maketrans({char: letter for letter, chars in _CONFUSABLE_GROUPS.items() for char in chars})
# Two-letter look-alikes (TR39 has them too): "rn" reads as "m", "vv" as "w".
_PAIRS = (("rn", "m"), ("vv", "w"), ("cl", "d"))

_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"})


def skeleton(text: str) -> str:
    """What `text` looks like, for comparison only (never stored, never hashed)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFKD", folded)
    letters = "".join(char for char in decomposed if unicodedata.category(char) not in _INVISIBLE)
    letters = letters.translate(_FOLD)
    for pair, letter in _PAIRS:
        letters = letters.replace(pair, letter)
    return letters.translate(_FOLD)


def weakness(password: str, *, username: str | None, context_words: Iterable[str], minimum: int) -> str | None:
    """Why `password` is refused, or None. `context_words` are the service's name, the
    TOTP issuer, the year: they and the username do not count towards `minimum`."""
    shown = skeleton(password)
    if not shown:
        return "must not be only spaces or invisible characters"
    if len(set(shown)) == 1:
        return "must not repeat a single character"
    name = skeleton(username) if username else ""
    if len(name) >= 3 and name in shown:
        return "must not contain the username, in any spelling"
    rest = shown
    for word in sorted({skeleton(word) for word in context_words} | ({name} if name else set()), key=len,
                       reverse=True):
        if word:
            rest = rest.replace(word, "")
    if rest != shown and len(password) - (len(shown) - len(rest)) < minimum:
        return (f"must have at least {minimum} characters besides the service's name, "
                "the username and the year")
    if rest and len(set(rest)) == 1:
        return "must not repeat a single character"
    return None
