"""Does an error show the value it refused? (R1.3, R7.3)"""

from __future__ import annotations

from pathlib import Path

import domain
from domain.errors import DomainError

# Every fixed word an error message can hold is written somewhere in the domain's
# source. A generated value that is itself such text ("address", "digits") cannot
# be told apart from the message, so it proves nothing either way and is skipped.
_DOMAIN_SOURCE = "".join(
    path.read_text() for path in Path(domain.__file__).parent.glob("*.py")
).lower()


def shown_spellings(value: str, refused: DomainError) -> list[str]:
    """The spellings of `value` (as typed, trimmed, case-folded, squeezed) that the
    error shows anywhere: message, repr, args or attributes."""
    shown = f"{refused} {refused!r} {refused.args!r} {vars(refused)!r}"
    squeezed = "".join(value.split())
    spellings = {value, value.strip(), value.lower(), value.upper(), squeezed, squeezed.lower(), squeezed.upper()}
    return [
        spelling
        for spelling in spellings
        if len(spelling) >= 6 and spelling.lower() not in _DOMAIN_SOURCE and spelling in shown
    ]
