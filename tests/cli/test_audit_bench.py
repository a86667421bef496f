"""The audit figures of `strongroom bench` come out, each beside its baseline.

Tiny sizes: this checks that every figure is measured against a real baseline in
throwaway stores, not how fast anything is (goals are printed, never asserted).
"""

from __future__ import annotations

import pytest

from application.context import RequestContext, acting_as
from benchmarks.audit import AUDIT_FIGURE_NAMES, run_audit
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
