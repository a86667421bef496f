"""Privacy figures for `strongroom bench --suite privacy` (issue 13), each beside its baseline.

`FIGURES` maps a figure's name to the function that measures it, one function per
figure, so each privacy workflow adds its own line here (`run_privacy` measures them
all, in order, on each store, into one dictionary):

1. `access_export`: the median time of one data-subject access export (R5.3) for a
   customer with 1,000 events and 10,000 access records: load the customer, decode
   every event of their stream, find every access record naming them in the log,
   build the JSON and CSV files, sign the manifest with the audit key and encrypt it
   to a passphrase (scrypt). Baseline: reading the same rows raw: the customer's
   stream with `select_events` and the whole log with `select_notifications`, no
   decryption, no files. Lower is better; the ratio says how many raw reads one
   export costs.
2. `retention_run` (benchmarks/retention_bench.py): customers erased per second by
   `retention run` over `customers` customers of which 10 % are due, beside destroying
   the same keys directly.

The caller sets an acting context (bench does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from application.customers import Strongroom
from application.ports import ExportRecipient
from application.security import Actor
from benchmarks.figures import Figure, median
from benchmarks.measures import BenchmarkError, Sizes
from benchmarks.retention_bench import measure_retention
from benchmarks.scratch import Scratch
from benchmarks.synthetic import Population
from domain.audit import AccessRecord
from infrastructure.composition import Components

Progress = Callable[[str], None]
EVENTS = 1_000
ACCESS_RECORDS = 10_000
BATCH = 500
PASSPHRASE = "benchmark passphrase, not a secret"  # nosec B105 - encrypts throwaway data


def _subject(built: Components, progress: Progress) -> str:
    """One customer with EVENTS events and ACCESS_RECORDS access records naming them,
    and a second customer, so the export has someone to leave out."""
    app: Strongroom = built.app
    population = Population()
    subject = str(app.register_customer(population.fields(0))["id"])
    app.register_customer(population.fields(1))
    customer = app._customer(subject)
    for n in range(EVENTS - 1):
        customer.record_interaction("note", "bench", f"benchmark note {n}")
        if len(customer.pending_events) >= BATCH:
            app._save(customer)
    app._save(customer)
    progress(f"privacy: subject has {customer.version} events; writing {ACCESS_RECORDS:,} access records")
    for start in range(0, ACCESS_RECORDS, BATCH):
        records = [AccessRecord(kind="view", outcome="allowed", customer_ids=[subject], fields=["email"],
                                details={"operation": "view"}) for _ in range(min(BATCH, ACCESS_RECORDS - start))]
        app.save(*records)
    return subject


def _raw(app: Strongroom, subject: str) -> int:
    rows = len(app.recorder.select_events(UUID(subject)))
    start = 1
    while True:
        page = app.recorder.select_notifications(start, limit=BATCH)
        if not page:
            return rows
        rows += len(page)
        start = page[-1].id + 1


def measure_access_export(scratch: Scratch, sizes: Sizes, progress: Progress, customers: int) -> Figure:
    del customers  # one subject and one other customer, whatever the population asked
    built = scratch.components(blind_index_bits=10)
    try:
        subject = _subject(built, progress)
        dpo = Actor(staff_id="bench-dpo", username="bench-dpo", roles=frozenset({"dpo"}), portfolios=frozenset())
        request = built.privacy.receive(dpo, customer_id=subject, kind="access", jurisdiction="gdpr")
        built.privacy.verify(dpo, request["id"], method="id_document")
        exports, raws = [], []
        for repeat in range(sizes.repeats):
            began = time.perf_counter()
            sealed, _ = built.privacy.export(dpo, request["id"], ExportRecipient(passphrase=PASSPHRASE))
            exports.append(time.perf_counter() - began)
            began = time.perf_counter()
            rows = _raw(built.app, subject)
            raws.append(time.perf_counter() - began)
            if not sealed or rows < EVENTS + ACCESS_RECORDS:
                raise BenchmarkError("the export or the raw read missed rows")
            progress(f"privacy: export {repeat + 1}/{sizes.repeats}: {exports[-1]:.2f} s, raw {raws[-1]:.3f} s")
    finally:
        scratch.release(built)
    return Figure(
        label=f"access export ({EVENTS:,} events, {ACCESS_RECORDS:,} access records)",
        value=median(exports), baseline=median(raws), unit="s",
        baseline_is="access export: the same rows read raw (select_events + select_notifications)",
        higher_is_better=False,
    )


def measure_retention_run(scratch: Scratch, sizes: Sizes, progress: Progress, customers: int) -> Figure:
    del sizes  # one run: a destroyed key cannot be destroyed again
    return measure_retention(scratch, progress, customers=customers)["retention_run"]


FIGURES: dict[str, Callable[[Scratch, Sizes, Progress, int], Figure]] = {
    "access_export": measure_access_export,
    "retention_run": measure_retention_run,
}
"""Each privacy figure and the function that measures it (add yours here)."""


def run_privacy(scratch: Scratch, sizes: Sizes, progress: Progress, *, customers: int) -> dict[str, Figure]:
    """Every privacy figure on one kind of store; `customers` sizes the retention run's population."""
    return {name: measure(scratch, sizes, progress, customers) for name, measure in FIGURES.items()}
