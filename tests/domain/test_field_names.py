"""Attack: a personal value under a name the catalogue does not know, or knows as internal.

The infrastructure encrypts each event attribute under the key the catalogue gives
its name, and keeps SYSTEM-key fields readable after erasure. A new event attribute
named, say, `iban` or `notes_text` would fall to the profile key at best; named after
an internal field it would outlive erasure. So every name is checked here, for every
event class each aggregate defines and for every attribute it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import pytest

from domain.catalogue import BOOKKEEPING, CATALOGUE
from tests.domain.lives import WHOLE_LIVES

# Stored as columns of the event row, outside the encrypted payload.
ROW_COLUMNS = {"originator_id", "originator_version"}
KNOWN = set(CATALOGUE) | BOOKKEEPING | ROW_COLUMNS


def _event_classes(aggregate_class: type[Any]) -> dict[str, type[Any]]:
    return {
        name: value
        for name, value in vars(aggregate_class).items()
        if isinstance(value, type)
        and issubclass(value, aggregate_class.Event)
        and name not in {"Event", "Created"}  # the library's bases, never triggered here
    }


@pytest.mark.parametrize("live", WHOLE_LIVES, ids=lambda live: live.__name__)
def test_every_event_class_is_exercised_by_the_whole_life(live: Callable[[], Any]) -> None:
    aggregate = live()
    # Events no single life can hold together (a request completes or is rejected) are
    # spread over the lives of the same class.
    produced = {type(event).__name__ for other in WHOLE_LIVES for made in [other()]
                if type(made) is type(aggregate) for event in made.pending_events}
    assert produced == set(_event_classes(type(aggregate)))


@pytest.mark.parametrize("live", WHOLE_LIVES, ids=lambda live: live.__name__)
@pytest.mark.controls("GDPR-30")
def test_every_event_attribute_is_a_catalogue_name(live: Callable[[], Any]) -> None:
    aggregate = live()
    declared = {f.name for cls in _event_classes(type(aggregate)).values() for f in fields(cls)}
    recorded = {name for event in aggregate.pending_events for name in vars(event)}
    assert declared - KNOWN == set()
    assert recorded - KNOWN == set()


@pytest.mark.parametrize("live", WHOLE_LIVES, ids=lambda live: live.__name__)
def test_every_aggregate_attribute_is_a_catalogue_name(live: Callable[[], Any]) -> None:
    aggregate = live()
    names = {name.lstrip("_") for name in vars(aggregate)} - {"pending_events"}  # never snapshotted
    assert names - set(CATALOGUE) == set()


@pytest.mark.controls("PCI-DSS-3.5.1")
def test_card_and_bank_account_events_keep_numbers_under_kyc_key_names() -> None:
    from domain.catalogue import KeyKind, key_for
    from tests.domain.lives import a_customers_whole_life

    ada = a_customers_whole_life()
    for event in ada.pending_events:
        for name, value in vars(event).items():
            if "4111111111111111" in repr(value) or "DE89370400440532013000" in repr(value):
                assert key_for(name) is KeyKind.KYC, (type(event).__name__, name)
