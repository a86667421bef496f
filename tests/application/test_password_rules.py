"""The skeleton comparison behind the password check (issue 10, item 10b; R2.1): what
it folds together, and that passphrases which merely mention a context word pass."""

from __future__ import annotations

import pytest

from application.password_rules import skeleton, weakness

CONTEXT = ("strongroom", "Strongroom", "2026")


@pytest.mark.parametrize("look_alike", [
    "\u0430dmin",  # Cyrillic a
    "adm\u0456n",  # Cyrillic i
    "\u0391DMIN",  # Greek capital alpha
    "4dm1n", "@dm!n", "ADM|N",
    "\uff41\uff44\uff4d\uff49\uff4e",  # full width
    "a\u200bdmin",  # a zero-width space inside
    "\u00e0dmin",  # an accent
])
def test_look_alike_spellings_share_the_usernames_skeleton(look_alike):
    assert skeleton(look_alike) == skeleton("admin")


@pytest.mark.parametrize("password", [
    "correct horse battery staple",
    "the strongroom door is painted teal",  # mentions the service, with plenty besides
    "born in 2026 under a purple moon",
])
def test_passphrases_that_only_mention_a_context_word_pass(password):
    assert weakness(password, username="joel.olafsson", context_words=CONTEXT, minimum=12) is None


@pytest.mark.parametrize(("password", "reason"), [
    ("\t \u3000 \u00a0   \u2029  ", "only spaces"),
    ("zzzzzzzzzzzzzzzz", "single character"),
    ("StrongRoom 2026 !!", "besides the service's name"),
    ("joel.olafsson rules", "username"),
    ("j0e1.o1afss0n rules ok", "username"),
])
def test_what_is_refused_and_why(password, reason):
    found = weakness(password, username="joel.olafsson", context_words=CONTEXT, minimum=12)
    assert found is not None and reason in found
