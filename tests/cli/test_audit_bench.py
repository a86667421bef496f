"""The audit figures of `strongroom bench` come out, each beside its baseline.

Tiny sizes: this checks that every figure is measured against a real baseline in
throwaway stores, not how fast anything is (goals are printed, never asserted).
"""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.utils import get_topic

from application.context import RequestContext, acting_as
from benchmarks.audit import AUDIT_FIGURE_NAMES, _SealedNotCommitted, run_audit
from domain.audit import AccessRecord
from benchmarks.measures import Sizes
from benchmarks.scratch import Scratch
from tests.conftest import PG_ADMIN_URL


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_audit_figures_come_out_beside_their_baselines(store: str) -> None:
    scratch = Scratch(store, PG_ADMIN_URL)
    messages: list[str] = []
    try:
        with acting_as(RequestContext(actor_id="operator:bench", via="cli", purpose="benchmark")):
            figures = run_audit(scratch, Sizes(customers=20, repeats=1, lookup_rows=0, lookups=0, absent=0),
                                messages.append)
    finally:
        assert scratch.close() == []
    assert tuple(figures) == AUDIT_FIGURE_NAMES
    for figure in figures.values():
        assert figure.value > 0 and figure.baseline > 0 and figure.ratio > 0
    assert figures["audit_verify"].goal is not None and figures["access_records"].goal is not None
    assert figures["access_records"].unit == "reads/s"
    assert any(m.startswith("audit verify 1/1") for m in messages)
    assert any(m.startswith("masked reads 1/1") for m in messages)
    # The diagnostic side seals every record but commits none (issue 15, item 4): the
    # bench itself refuses a run where it wrote any; here, that it is informative only.
    assert figures["access_records_not_committed"].goal is None
    assert "not committed" in figures["access_records_not_committed"].label


def test_the_not_committed_side_seals_each_record_as_the_access_log_does() -> None:
    """Issue 15, item 4: the diagnostic side must do every part of a record but the
    commit, or its figure would flatter the record's own cost."""
    scratch = Scratch("sqlite", PG_ADMIN_URL)
    try:
        built = scratch.components(blind_index_bits=10)
        sealed: list[Any] = []
        real = built.app.mapper.to_stored_event

        def counting(event: Any) -> Any:
            stored = real(event)
            sealed.append(stored)
            return stored

        built.app.mapper.to_stored_event = counting  # type: ignore[method-assign]
        before = built.app.recorder.max_notification_id() or 0
        with acting_as(RequestContext(actor_id="operator:bench", via="cli", purpose="benchmark")):
            _SealedNotCommitted(built.app).record(kind="view", customer_ids=["c-1"], fields=["email"])
        assert [s.topic for s in sealed] == [get_topic(AccessRecord.Recorded)]
        assert (built.app.recorder.max_notification_id() or 0) == before
    finally:
        assert scratch.close() == []
