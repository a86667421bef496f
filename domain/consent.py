"""The consent vocabulary (R5.2): which processing needs the customer's consent, on
which channels, as data.

A consent is an entry in the customer's own stream (`Customer.record_consent`): the
purpose and channel it is about, granted or withdrawn, the version of the privacy
notice the customer was shown, where the answer came from, when, and who recorded it.
The whole entry travels under the field name `consent` (PROFILE key in the field
catalogue), so an erasure destroys the customer's choices with the rest of their
profile; the purposes and channels themselves are codes, never free text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import uuid4

from domain.errors import InvalidField


@dataclass(frozen=True)
class ConsentPurpose:
    """A processing that needs consent, and the channels it may use."""

    name: str
    description: str
    channels: tuple[str, ...]


CHANNELS = ("email", "phone", "sms", "post", "online")
"""How we may reach or use the customer; `online` covers processing that contacts
nobody (sharing a file with a partner, computing a profile)."""

PURPOSES: tuple[ConsentPurpose, ...] = (
    ConsentPurpose("marketing_contact", "contact the customer about products and offers",
                   ("email", "phone", "sms", "post")),
    ConsentPurpose("data_sharing", "share the customer's contact data with partners",
                   ("online",)),
    ConsentPurpose("profiling", "build a marketing profile from the customer's record",
                   ("online",)),
)
CONSENT_PURPOSES: dict[str, ConsentPurpose] = {p.name: p for p in PURPOSES}

SOURCES = ("web_form", "phone_call", "email", "letter", "branch", "import", "privacy_request")
"""Where an answer came from: a code, so that no personal data hides in it."""

NOTICE_VERSION_MAX = 32


def _code(value: object, field: str, allowed: tuple[str, ...]) -> str:
    code = value.strip().lower() if isinstance(value, str) else value
    if code not in allowed:
        raise InvalidField(field, "must be one of " + ", ".join(allowed))
    return str(code)


def check_purpose_channel(purpose: object, channel: object) -> tuple[str, str]:
    """(purpose, channel) as codes, the channel one the purpose may use."""
    name = _code(purpose, "purpose", tuple(CONSENT_PURPOSES))
    chosen = _code(channel, "channel", CHANNELS)
    if chosen not in CONSENT_PURPOSES[name].channels:
        raise InvalidField("channel", f"{name} uses " + ", ".join(CONSENT_PURPOSES[name].channels))
    return name, chosen


def normalise_notice_version(value: object) -> str:
    """A notice version such as `2026-11` or `v3.2`: short, letters, digits, `.-_`."""
    if not isinstance(value, str):
        raise InvalidField("notice_version", "must be a short version code")
    code = value.strip()
    if not (1 <= len(code) <= NOTICE_VERSION_MAX and all(c.isascii() and (c.isalnum() or c in "._-") for c in code)):
        raise InvalidField("notice_version", f"must be 1 to {NOTICE_VERSION_MAX} letters, digits, . _ -")
    return code


def new_consent(*, purpose: object, channel: object, granted: object, notice_version: object,
                source: object, actor_id: str, at: datetime | None = None) -> dict[str, Any]:
    """One ledger entry from raw input, normalised (what the event carries)."""
    name, chosen = check_purpose_channel(purpose, channel)
    if not isinstance(granted, bool):
        raise InvalidField("granted", "must be true or false")
    when = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {
        "consent_id": str(uuid4()),
        "purpose": name,
        "channel": chosen,
        "granted": granted,
        "notice_version": normalise_notice_version(notice_version),
        "source": _code(source, "source", SOURCES),
        "recorded_at": when.isoformat(),
        "actor_id": str(actor_id),
    }


def current_consents(ledger: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest entry per (purpose, channel): what is in force now."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in ledger:
        latest[(str(entry["purpose"]), str(entry["channel"]))] = entry
    return latest
