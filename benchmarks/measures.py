"""The three figures, each timed beside its baseline in the same run.

Secured and baseline runs alternate (ABAB, swapping who goes first each repeat) so a
noisy neighbour slows both rather than one; each figure is the median of its repeats.
Writes need an acting context (the caller sets it); nothing here prints, it reports
through `progress`.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from benchmarks.figures import (
    Figure,
    median,
    percentile,
    ratio_at_least,
    value_below,
)
from benchmarks.scratch import Scratch
from benchmarks.synthetic import Population
from infrastructure.composition import Components
from infrastructure.crypto.blind_index import bits_for

Progress = Callable[[str], None]
PAGE = 500  # the projection's own page size, so the raw read pages alike
FILL_BATCH = 500
WRITE_BITS = 14  # blind-index width for the write and rebuild instances (sized for 100k)


class BenchmarkError(Exception):
    """A measurement would be meaningless (e.g. the read model was not written)."""


@dataclass(frozen=True)
class Sizes:
    customers: int
    repeats: int
    lookup_rows: int
    lookups: int
    absent: int

    @classmethod
    def quick(cls) -> Sizes:
        return cls(customers=300, repeats=3, lookup_rows=20_000, lookups=1_000, absent=200)

    @classmethod
    def full(cls) -> Sizes:
        return cls(customers=2_000, repeats=5, lookup_rows=100_000, lookups=1_000, absent=200)


@dataclass
class StoreResult:
    figures: dict[str, Figure] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


# -- 1. secured write versus the library's plain write ----------------------------------------


def _register_all(app: Any, fields: list[dict[str, Any]], ids: list[str] | None) -> None:
    for item in fields:
        record = app.register_customer(item)
        if ids is not None:
            ids.append(record["id"])


def measure_writes(scratch: Scratch, sizes: Sizes,
                   progress: Progress) -> tuple[Figure, Figure, Components, list[str]]:
    """Writes/second of `register_customer` against a plain `Application.save`, and
    against the same `register_customer` with the protection off (issue 15: the
    same aggregates, events, read-model tables and transactions; no cipher, blind
    index, chain or access record: benchmarks/unprotected.py).

    Each repeat gets fresh stores for every side, so none writes into a bigger
    table than another. The last secured instance is kept for the rebuild figure.
    """
    from benchmarks.unprotected import unprotected_instance

    secured_rates: list[float] = []
    plain_rates: list[float] = []
    unprotected_rates: list[float] = []
    warmup = max(5, sizes.customers // 20)
    kept: Components | None = None
    kept_ids: list[str] = []
    for repeat in range(sizes.repeats):
        population = Population()
        fields = [population.fields(n) for n in range(sizes.customers + warmup)]
        built = scratch.components(blind_index_bits=WRITE_BITS)
        plain = scratch.plain(like=built)
        bare = unprotected_instance(scratch.database_url("unprotected"), built.app.env)
        # Connections, prepared statements and the system key are made by the first
        # writes; those are not what a steady writer pays.
        for item in fields[:warmup]:
            built.app.register_customer(item)
            plain.register_customer(item)
            bare.app.register_customer(item)
        timed = fields[warmup:]
        ids: list[str] = []

        runs: list[tuple[str, Callable[[], Any]]] = [
            ("secured", partial(_register_all, built.app, timed, ids)),
            ("plain", partial(_register_all, plain, timed, None)),
            ("unprotected", partial(_register_all, bare.app, timed, None)),
        ]
        rates = {"secured": secured_rates, "plain": plain_rates, "unprotected": unprotected_rates}
        for name, run in runs if repeat % 2 == 0 else reversed(runs):
            elapsed, _ = _timed(run)
            rates[name].append(len(timed) / elapsed)
        for directory in (built.directory, bare.directory):
            projected = directory.counts()["rm_customers"]
            if projected != len(timed) + warmup:
                raise BenchmarkError(
                    f"the read model holds {projected} of {len(timed) + warmup} customers after "
                    "register_customer: the inline projection did not run with the events"
                )
        progress(
            f"writes {repeat + 1}/{sizes.repeats}: secured {secured_rates[-1]:.0f}/s,"
            f" plain {plain_rates[-1]:.0f}/s, unprotected {unprotected_rates[-1]:.0f}/s"
        )
        bare.close()
        scratch.release(plain)
        if kept is not None:
            scratch.release(kept)
        kept, kept_ids = built, ids
    if kept is None:  # repeats >= 1; this keeps type checkers honest without an assert
        raise BenchmarkError("no write repeat ran")
    figure = Figure(
        label="secured write (register_customer)",
        value=median(secured_rates), baseline=median(plain_rates), unit="writes/s",
        baseline_is="write: eventsourcing Application.save of the same Customer, no cipher, no read model",
        higher_is_better=True, goal=ratio_at_least(0.8),
    )
    unprotected = Figure(
        label="secured write vs the same work unprotected",
        value=median(secured_rates), baseline=median(unprotected_rates), unit="writes/s",
        baseline_is="write (unprotected): the same register_customer, read model and transactions with "
                    "no cipher, blind index, chain or access record (benchmarks/unprotected.py)",
        higher_is_better=True, goal=ratio_at_least(0.7),
    )
    return figure, unprotected, kept, kept_ids


# -- 2. read-model rebuild versus reading the raw log -----------------------------------------


def _more_history(built: Components, ids: list[str], progress: Progress) -> None:
    """Give every customer a contact change and every other one an interaction, so the
    log holds more events than customers, as a real one does."""
    app = built.app
    for n, customer_id in enumerate(ids):
        app.update_customer(customer_id, {"email": f"moved.{n}.{customer_id[:8]}@example.org"})
        if n % 2 == 0:
            app.record_interaction(customer_id, kind="call", channel="phone", notes=f"Benchmark call {n}")
    progress(f"history: {len(ids)} updates, {(len(ids) + 1) // 2} interactions")


def _read_raw(app: Any) -> int:
    """Page through the whole log as stored: no decryption, no projection."""
    start, count = 1, 0
    while True:
        notifications = app.recorder.select_notifications(start, limit=PAGE)
        if not notifications:
            return count
        count += len(notifications)
        start = notifications[-1].id + 1


def measure_rebuild(built: Components, ids: list[str], sizes: Sizes, progress: Progress) -> tuple[Figure, int]:
    """Events/second of `projection.rebuild` against paging the same notifications raw."""
    _more_history(built, ids, progress)
    rebuild_rates: list[float] = []
    raw_rates: list[float] = []
    events = 0
    for repeat in range(sizes.repeats):
        # Cold keys each time: a rebuild after a restore or a crash starts with none.
        built.keyring.forget_cached()

        runs: list[tuple[str, Callable[[], int]]] = [
            ("rebuild", partial(built.projection.rebuild, built.app)),
            ("raw", partial(_read_raw, built.app)),
        ]
        for name, run in runs if repeat % 2 == 0 else reversed(runs):
            elapsed, events = _timed(run)
            (rebuild_rates if name == "rebuild" else raw_rates).append(events / elapsed)
        if built.directory.counts()["rm_customers"] < len(ids):
            raise BenchmarkError("the rebuilt read model does not hold every customer")
        progress(
            f"rebuild {repeat + 1}/{sizes.repeats}: {rebuild_rates[-1]:.0f} events/s,"
            f" raw {raw_rates[-1]:.0f} events/s ({events} events)"
        )
    figure = Figure(
        label="read-model rebuild (projection.rebuild)",
        value=median(rebuild_rates), baseline=median(raw_rates), unit="events/s",
        baseline_is="rebuild: select_notifications paged by 500 over the same log, not decrypted",
        higher_is_better=True, goal=ratio_at_least(0.25),
    )
    return figure, events


# -- 3. blind-index lookup versus a primary-key lookup -------------------------------------------


def _fill(built: Components, population: Population, ids: list[str], progress: Progress) -> float:
    """Write the read-model rows directly, a batch per transaction.

    Not through events: a lookup reads only rm_customer_search and rm_customers, so
    its cost depends on those tables (rows, bucket sizes, sealed columns), not on how
    the rows got there, and replaying 100,000 registrations would add many minutes
    measuring nothing this figure is about.
    """
    start = time.perf_counter()
    for position, batch in enumerate(population.rows(ids, FILL_BATCH), start=1):
        with built.events_db.transaction() as cur:
            built.directory.upsert(cur, batch, position)
        done = min(position * FILL_BATCH, len(ids))
        if done % 10_000 == 0 or done == len(ids):
            progress(f"fill: {done}/{len(ids)} rows, {time.perf_counter() - start:.0f} s")
    return time.perf_counter() - start


def _primary_key_lookup(built: Components, customer_id: str) -> Any:
    # A read transaction, as CustomerDirectory.find and .get take.
    with built.events_db.transaction(write=False) as cur:
        cur.execute("SELECT customer_id FROM rm_customers WHERE customer_id = ?", (customer_id,))
        return cur.fetchone()


def measure_lookups(scratch: Scratch, sizes: Sizes, progress: Progress) -> tuple[list[Figure], dict[str, Any]]:
    """Latency of `find_customers("email", ...)` at `lookup_rows` customers, beside a
    primary-key lookup of the same ids, each pair timed back to back."""
    bits = bits_for(sizes.lookup_rows)
    built = scratch.components(blind_index_bits=bits, bulk_load=True)
    population = Population()
    ids = [str(uuid.uuid4()) for _ in range(sizes.lookup_rows)]
    fill_seconds = _fill(built, population, ids, progress)
    if built.directory.counts()["rm_customers"] != len(ids):
        raise BenchmarkError("the read model does not hold every filled row")
    scratch.settle(built)
    # The same picks every run, so runs compare; not security-relevant.
    rng = random.Random(20_260_101)  # nosec B311
    present = rng.sample(range(len(ids)), min(sizes.lookups, len(ids)))
    stats: dict[str, dict[str, list[float]]] = {
        kind: {"lookup_median": [], "lookup_p99": [], "pk_median": [], "pk_p99": []}
        for kind in ("present", "absent")
    }
    app = built.app
    for repeat in range(sizes.repeats):
        # Cold keys: a random customer among many is rarely in the 60-second key cache.
        built.keyring.forget_cached()
        for kind, picks in (("present", present), ("absent", range(sizes.absent))):
            lookups, baselines = [], []
            for n in picks:
                email = population.email(n) if kind == "present" else population.absent_email(n)
                customer_id = ids[n] if kind == "present" else str(uuid.uuid4())
                elapsed, found = _timed(partial(app.find_customers, "email", email))
                expected = [customer_id] if kind == "present" else []
                if [record["id"] for record in found] != expected:
                    raise BenchmarkError(f"an email lookup returned {len(found)} customers, expected {len(expected)}")
                lookups.append(elapsed * 1000)
                elapsed, _ = _timed(partial(_primary_key_lookup, built, customer_id))
                baselines.append(elapsed * 1000)
            stats[kind]["lookup_median"].append(median(lookups))
            stats[kind]["lookup_p99"].append(percentile(lookups, 99))
            stats[kind]["pk_median"].append(median(baselines))
            stats[kind]["pk_p99"].append(percentile(baselines, 99))
        progress(
            f"lookups {repeat + 1}/{sizes.repeats}: median {stats['present']['lookup_median'][-1]:.2f} ms,"
            f" p99 {stats['present']['lookup_p99'][-1]:.2f} ms"
        )
    baseline_is = "lookup: SELECT customer_id FROM rm_customers WHERE customer_id = ? for the same ids"
    figures = []
    for kind, what, count in (("present", "existing email", len(present)), ("absent", "absent email", sizes.absent)):
        for stat, goal in (("median", None), ("p99", value_below(5, "ms"))):
            figures.append(Figure(
                label=f"lookup {stat}, {what} ({count} at {len(ids):,} rows)",
                value=median(stats[kind][f"lookup_{stat}"]), baseline=median(stats[kind][f"pk_{stat}"]),
                unit="ms", baseline_is=baseline_is, higher_is_better=False, goal=goal,
            ))
    setup = {"lookup_rows": len(ids), "blind_index_bits": bits, "fill_seconds": fill_seconds,
             "fill_rows_per_second": len(ids) / fill_seconds}
    scratch.release(built)
    return figures, setup


FIGURE_NAMES = (
    "secured_write", "unprotected_write", "rebuild",
    "lookup_median", "lookup_p99", "absent_lookup_median", "absent_lookup_p99",
)


def run_store(scratch: Scratch, sizes: Sizes, progress: Progress) -> StoreResult:
    """All figures for one kind of store (the caller sets the acting context)."""
    result = StoreResult()
    write, unprotected, built, ids = measure_writes(scratch, sizes, progress)
    rebuild, events = measure_rebuild(built, ids, sizes, progress)
    scratch.release(built)
    lookups, setup = measure_lookups(scratch, sizes, progress)
    result.figures = dict(zip(FIGURE_NAMES, [write, unprotected, rebuild, *lookups], strict=True))
    result.setup = {"customers_written": sizes.customers, "events_rebuilt": events, **setup}
    # Issue 15: where a secured write's time goes (benchmarks/write_breakdown.py).
    from benchmarks.write_breakdown import measure_breakdown

    result.setup["write_breakdown"] = measure_breakdown(scratch, max(20, sizes.customers // 5), progress)
    return result
