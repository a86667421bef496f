"""The retention run's figure for `strongroom bench --suite privacy` (issue 13, R5.5).

`retention_run`: customers whose retention has ended, erased per second by
`strongroom retention run` (application/retention_run.py: pick the candidates from
the read model, decide the AML hold, record the erasure and purge the read model in
one transaction, destroy the key), over a population of which `due_share` (10 %)
is due. Baseline: the same number of customers' profile keys destroyed directly with
`KeyRing.destroy` in an identical instance (no candidates, no records, no purge).
The ratio is what being auditable and restartable costs per customer. Goal: >= 0.1.

Each side runs in its own instance with the same population (a destroyed key cannot
be destroyed again), built in batches through the application (`_save` of many new
customers at once, setup only, untimed). One repeat: the run is not repeatable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from benchmarks.figures import Figure, ratio_at_least
from benchmarks.scratch import Scratch
from benchmarks.synthetic import Population
from domain.customer import Customer
from infrastructure.composition import Components

Progress = Callable[[str], None]
BATCH = 500
LATER = timedelta(days=2.1 * 365.25)  # past the 2-year profile retention, within the 5-year AML hold


def _populate(built: Components, customers: int, due_every: int, progress: Progress) -> list[str]:
    """`customers` customers, every `due_every`-th with its relationship closed; the due ids."""
    population = Population()
    due: list[str] = []
    for start in range(0, customers, BATCH):
        batch = []
        for n in range(start, min(start + BATCH, customers)):
            customer = Customer.register(**population.fields(n))
            if n % due_every == 0:
                customer.close_relationship("closed (benchmark)")
                due.append(str(customer.id))
            batch.append(customer)
        built.app._save(*batch)  # noqa: SLF001 - setup only: many new customers in one transaction
        if (start // BATCH) % 20 == 19 or start + BATCH >= customers:
            progress(f"  {min(start + BATCH, customers)}/{customers} customers")
    return due


def measure_retention(scratch: Scratch, progress: Progress, *, customers: int, due_share: float = 0.1,
                      blind_index_bits: int = 14) -> dict[str, Figure]:
    due_every = max(1, round(1 / due_share))
    progress(f"{scratch.store}: retention run over {customers} customers, 1 in {due_every} due")
    run_side = scratch.components(blind_index_bits=blind_index_bits)
    due = _populate(run_side, customers, due_every, progress)
    started = time.perf_counter()
    done = run_side.retention.run(now=datetime.now(UTC) + LATER)
    run_seconds = time.perf_counter() - started
    if len(done) != len(due):
        raise RuntimeError(f"the run erased {len(done)} customers, {len(due)} were due")
    scratch.release(run_side)

    direct_side = scratch.components(blind_index_bits=blind_index_bits)
    direct_due = _populate(direct_side, customers, due_every, progress)
    started = time.perf_counter()
    for customer_id in direct_due:
        direct_side.keyring.destroy(customer_id, ["profile"])
    direct_seconds = time.perf_counter() - started
    scratch.release(direct_side)
    return {"retention_run": Figure(
        label=f"retention run: due customers erased ({len(due)} of {customers})",
        value=len(due) / run_seconds, baseline=len(direct_due) / direct_seconds, unit="customers/s",
        baseline_is="the same customers' profile keys destroyed directly with KeyRing.destroy",
        higher_is_better=True, goal=ratio_at_least(0.1),
    )}
