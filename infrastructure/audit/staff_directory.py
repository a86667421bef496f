"""Who an actor id is, as of a bundle's window end (R3.5, R6.3; issue 11 item 7).

An access record or a change names its actor by id only. The evidence bundle
carries `reports/staff-directory.json` so that an auditor can tell who that was:
for every staff account that existed at the window's end (and every other actor
id seen in the window: operators, the worker, unauthenticated callers) the id,
the username, the roles and portfolios, whether the account was active and
whether a second factor was enrolled, all *as of the window's last row*. Each
account is rebuilt from its own events up to that row, so a role granted after
the window does not show in an earlier window's bundle.

Nothing secret or personal: no password hash, TOTP secret, recovery code, display
name or e-mail address; only what `StaffMember.to_record()` lists as safe, minus
the display name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from domain.staff import StaffMember

STAFF_TOPIC = f"{StaffMember.__module__}:{StaffMember.__qualname__}."
_SHOWN = ("username", "roles", "portfolios", "status", "mfa_enrolled")
_PAGE = 1000


def _staff_versions(recorder: Any, last: int) -> dict[str, int]:
    """Each staff account's id and its last version at or before position `last`."""
    versions: dict[str, int] = {}
    start = 1
    while start <= last:
        page = recorder.select_notifications(start, _PAGE, stop=last)
        if not page:
            break
        for note in page:
            if note.topic.startswith(STAFF_TOPIC):
                versions[str(note.originator_id)] = note.originator_version
        start = page[-1].id + 1
    return versions


def staff_directory(app: Any, last: int, actor_ids: Iterable[str]) -> dict[str, Any]:
    """The directory as of position `last`: {"as_of_position", "actors": [...]}, one
    entry per staff account and per other actor id in `actor_ids`, sorted by id."""
    actors: dict[str, dict[str, Any]] = {}
    for staff_id, version in _staff_versions(app.recorder, last).items():
        entry: dict[str, Any] = {"id": staff_id, "kind": "staff", "as_of_version": version}
        try:
            member = app.repository.get(UUID(staff_id), version=version)
            record = member.to_record()
            entry.update({name: record[name] for name in _SHOWN})
        except Exception as exc:  # noqa: BLE001 - an account that does not open is itself evidence
            entry["error"] = f"{type(exc).__name__}: the account's events do not open"
        actors[staff_id] = entry
    for actor_id in actor_ids:
        if actor_id not in actors:
            kind = "operator" if actor_id.startswith("operator:") else "other"
            actors[actor_id] = {"id": actor_id, "kind": kind}
    return {"as_of_position": last, "actors": [actors[key] for key in sorted(actors)]}
