"""When orjson may read a JSON document in place of the standard library (issue 15).

orjson parses several times faster, and reads what `json` reads, with one silent
exception: an integer beyond 64 bits comes back as a float. Such an integer has at
least 19 digits, so a document with no run of 19 digits is safe; one with such a run
(a number, or only digits inside a string) goes to the standard library.
"""

from __future__ import annotations

# Digits as "0", everything else as " ": a run of 19 digits is then a plain substring
# search (a regular expression over the document costs more than decoding it).
_DIGITS_ONLY = bytes(ord("0") if chr(code).isdigit() and code < 128 else ord(" ") for code in range(256))
_LONG_NUMBER = b"0" * 19


def orjson_reads_exactly(data: bytes) -> bool:
    """Whether orjson reads `data` as `json` would (no run of 19 digits in it)."""
    return _LONG_NUMBER not in data.translate(_DIGITS_ONLY)
