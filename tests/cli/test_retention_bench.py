"""The retention figure of `strongroom bench --suite privacy` comes out beside its
baseline (issue 13). Tiny sizes: this checks that the run erases exactly the due
customers and is timed against destroying the same keys directly, not how fast."""

from __future__ import annotations

import pytest

from application.context import RequestContext, acting_as
from benchmarks.retention_bench import measure_retention
from benchmarks.scratch import Scratch
from tests.conftest import PG_ADMIN_URL


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_retention_figure_comes_out_beside_its_baseline(store: str) -> None:
    scratch = Scratch(store, PG_ADMIN_URL)
    messages: list[str] = []
    try:
        with acting_as(RequestContext(actor_id="operator:bench", via="cli", purpose="benchmark")):
            figures = measure_retention(scratch, messages.append, customers=60, blind_index_bits=8)
    finally:
        assert scratch.close() == []
    figure = figures["retention_run"]
    assert figure.label == "retention run: due customers erased (6 of 60)"
    assert figure.value > 0 and figure.baseline > 0 and figure.unit == "customers/s"
    assert figure.goal is not None
    assert messages[0].startswith(f"{store}: retention run over 60 customers, 1 in 10 due")
