"""The mapper's faster decoding (orjson, then the library's transcodings) gives exactly
what the library's own `JSONTranscoder.decode` gives, for any document it writes.

Every reader of the log (the monitor, the audit trail, rebuilds, restores) goes
through `SubjectMapper._decode`, so a difference here would be a wrong value read
back, silently. Issue 12 (monitor catch-up), issue 15 (rebuild).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import TranscodingNotRegisteredError
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from infrastructure.crypto.envelope import SubjectMapper

_app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
TRANSCODER = _app.construct_transcoder()
MAPPER = SubjectMapper(TRANSCODER, keyring=None)  # type: ignore[arg-type]  # decoding needs no keys

_scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 3, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
    | st.sampled_from(["_type_", "_data_", '"_type_"', "uuid_hex"])
    | st.uuids() | st.decimals(allow_nan=False, allow_infinity=False, places=4)
    | st.datetimes(timezones=st.just(UTC))
)
_documents = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.sampled_from(["_type_", "_data_"]), inner, max_size=3),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=10), _documents, max_size=6))
def test_the_fast_decoding_equals_the_librarys_for_any_document(document):
    encoded = TRANSCODER.encode(document)
    try:
        expected = TRANSCODER.decode(encoded)
    except Exception:  # noqa: BLE001 - a dict of its own keyed "_type_"/"_data_": unreadable to the library too
        assume(False)
    assert MAPPER._decode(encoded) == expected


def test_typed_values_nested_anywhere_are_revived():
    document = {
        "at": datetime(2026, 12, 5, 6, 0, tzinfo=UTC),
        "amounts": [Decimal("1.10"), {"inner": UUID(int=7)}],
        "deep": {"deeper": {"when": datetime(2026, 1, 1, tzinfo=UTC) - timedelta(days=1)}},
    }
    decoded = MAPPER._decode(TRANSCODER.encode(document))
    assert decoded == document
    assert type(decoded["amounts"][0]) is Decimal and type(decoded["amounts"][1]["inner"]) is UUID


def test_what_orjson_refuses_is_still_read_as_the_library_reads_it():
    # NaN and integers beyond 64 bits are valid to Python's json, not to orjson.
    for raw in (b'{"x": NaN}', b'{"x": 123456789012345678901234567890}', b'{"x": -9223372036854775809}',
                b'{"x": 18446744073709551616}'):
        decoded, expected = MAPPER._decode(raw), TRANSCODER.decode(raw)
        assert repr(decoded) == repr(expected)


def test_an_unknown_transcoding_is_refused_like_the_library_refuses_it():
    raw = b'{"x": {"_type_": "no_such_type", "_data_": 1}}'
    with pytest.raises(TranscodingNotRegisteredError):
        TRANSCODER.decode(raw)
    with pytest.raises(TranscodingNotRegisteredError):
        MAPPER._decode(raw)
