"""Rebuild figures (issue 15 item 2), each beside its baseline from the same run.

* rebuild vs the same projection unprotected: events/s of the secured rebuild in one
  process (`rebuild(jobs=1)`: decrypt every event under its customer's keys, seal every
  read-model value, blind-index every searchable field) beside the *same code*
  (`CustomerProjection.catch_up`, `_apply`, `_Batch`, `CustomerDirectory.upsert`) run
  over the same aggregates and events stored unprotected: the library's own mapper
  (JSON, no cipher) in a database of its own, read-model values stored as their plain
  JSON bytes and searched by the normalised value itself instead of a keyed digest.
  Same pages, same transactions, same tables. Goal: ratio >= 0.5.
* parallel speed-up: events/s of `rebuild(jobs=2)` (two worker processes, the log
  partitioned by customer) beside `rebuild(jobs=1)` on the same log. Goal: >= 1.7 on
  two cores; on a machine whose cores are shared the ratio shows what was left over.
* parallel CPU cost: events per CPU-second (the parent and its workers) at --jobs 2
  beside --jobs 1: what partitioning costs in work, independent of how busy the
  machine is. With P free cores the speed-up is about P times this ratio.
* this machine's own scaling: the same CPU-bound work (AES-GCM opening and JSON
  decoding, as a rebuild does, no database) in two processes at once beside one: the
  ceiling any parallel figure here can reach. PostgreSQL's server shares the cores.

The log holds CUSTOMERS_FACTOR times `--customers` customers of ten events each
(24,000 events with --quick): a rebuild worth spreading over processes. At 6,000, a
second process's start (fork, connections, a cold key cache) was a sixth of its share.

Runs alternate (secured P=1, unprotected, secured P=2, rotating who goes first) and
each figure is the median of its repeats; every secured run starts with cold keys.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from benchmarks.figures import Figure, median, ratio_at_least
from benchmarks.measures import Sizes
from benchmarks.scratch import PlainCustomers, Scratch
from benchmarks.unprotected import ClearColumns
from benchmarks.synthetic import Population
from domain import values
from domain.customer import Customer
from infrastructure.composition import Components
from infrastructure.eventstore import recorder_environment
from infrastructure.projection import CustomerProjection
from infrastructure.readmodel import SEARCH_NORMALISERS, CustomerDirectory, create_tables
from infrastructure.sql import Database

Progress = Callable[[str], None]
EVENTS_PER_CUSTOMER = 10
CUSTOMERS_PER_SAVE = 50
CUSTOMERS_FACTOR = 8
MACHINE_ROUNDS = 40_000  # opens per process in the machine-scaling figure (about 0.2 s here)


class _PlainIndex:
    """The blind index switched off: the normalised value itself is the search key."""

    def digest(self, field: str, value: str) -> str:
        return value

    def full_digest(self, field: str, value: str) -> str:
        return value


class PlainDirectory(CustomerDirectory):
    """`CustomerDirectory`'s own writing code with no cipher and no blind index."""

    def __init__(self, database: Database) -> None:
        self.db = database
        self.sealer = ClearColumns()  # type: ignore[assignment]
        self.blind_index = _PlainIndex()  # type: ignore[assignment]

    def search_digests(self, record: dict[str, Any], pans: dict[str, str]) -> list[tuple[str, Any]]:
        found = [(f, SEARCH_NORMALISERS[f](record[f])) for f in ("email", "phone", "national_id") if record.get(f)]
        found += [("pan", values.normalise_pan(pan)) for pan in pans.values()]
        return sorted(set(found))


def unprotected_store(scratch: Scratch, like: Components) -> tuple[PlainCustomers, CustomerProjection]:
    """The library's own application (no cipher) and the unprotected read model, in a
    database of their own; connection settings copied from the secured instance."""
    url = scratch.database_url("plain")
    env = recorder_environment(url)
    for key, value in like.app.env.items():
        if key.startswith("POSTGRES_") and key not in env:
            env[key] = value
    app = PlainCustomers(env)
    db = Database.connect(url)
    with db.transaction() as cur:
        create_tables(cur, db.dialect)
        if db.dialect == "postgres":  # plain values, not 64-bit digests
            cur.execute("ALTER TABLE rm_customer_search ALTER COLUMN digest TYPE TEXT")
    return app, CustomerProjection(PlainDirectory(db), db)


def _aggregates(population: Population, first: int, count: int) -> list[Customer]:
    group = []
    for n in range(first, first + count):
        customer = Customer.register(**population.fields(n))
        for k in range(EVENTS_PER_CUSTOMER - 2):
            customer.change_segment(f"segment-{k}")
        customer.record_interaction(kind="call", channel="phone", notes=f"Benchmark call {n}")
        group.append(customer)
    return group


def _fill(built: Components, plain: Any, customers: int, progress: Progress) -> None:
    """The same aggregates and events into both logs (the secured one projected inline)."""
    population = Population()
    for start in range(0, customers, CUSTOMERS_PER_SAVE):
        count = min(CUSTOMERS_PER_SAVE, customers - start)
        # Twice over: a save takes an aggregate's pending events (same fields, other ids).
        built.app._save(*_aggregates(population, start, count))  # noqa: SLF001 - the unit of work, inline projection
        plain.save(*_aggregates(population, start, count))
    progress(f"rebuild: {customers:,} customers, {customers * EVENTS_PER_CUSTOMER:,} events in each log")


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the rebuild's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(action: Callable[[], int]) -> tuple[float, float]:
    """Events per wall-clock second and per CPU-second."""
    started, cpu = time.perf_counter(), _cpu_seconds()
    events = action()
    return events / (time.perf_counter() - started), events / max(1e-9, _cpu_seconds() - cpu)


def _cpu_bound_work(rounds: int) -> float:
    """Open and decode one sealed document `rounds` times; the wall-clock seconds."""
    cipher, nonce = AESGCM(os.urandom(32)), os.urandom(12)
    document = json.dumps({"fields": list(range(20)), "name": "x" * 200}).encode()
    sealed = cipher.encrypt(nonce, document, b"associated")
    kept: dict[int, int] = {}
    started = time.perf_counter()
    for n in range(rounds):
        kept[n % 5000] = len(json.loads(cipher.decrypt(nonce, sealed, b"associated"))["name"])
    return time.perf_counter() - started


def _machine_scaling(rounds: int) -> tuple[float, float]:
    """Work per second in one process, and in two forked processes at once."""
    one = _cpu_bound_work(rounds)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_cpu_bound_work, args=(rounds,)) for _ in range(2)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    both = time.perf_counter() - started
    return rounds / one, 2 * rounds / both


def measure_rebuilds(scratch: Scratch, sizes: Sizes, progress: Progress) -> dict[str, Figure]:
    """Secured rebuild vs unprotected, P=2 vs P=1, and the machine's own scaling."""
    built = scratch.components(blind_index_bits=14)
    plain, unprotected = unprotected_store(scratch, built)
    customers = sizes.customers * CUSTOMERS_FACTOR
    _fill(built, plain, customers, progress)
    events = built.operations.log_head()
    if (plain.recorder.max_notification_id() or 0) != customers * EVENTS_PER_CUSTOMER:
        raise RuntimeError("the unprotected log does not hold the same events")
    rates: dict[str, list[float]] = {"secured_p1": [], "unprotected": [], "secured_p2": []}
    per_cpu: dict[str, list[float]] = {"secured_p1": [], "unprotected": [], "secured_p2": []}

    def secured(jobs: int) -> int:
        built.keyring.forget_cached()  # cold keys: a rebuild after a restore starts with none
        return built.projection.rebuild(built.app, jobs=jobs)

    runs: list[tuple[str, Callable[[], int]]] = [
        ("secured_p1", lambda: secured(1)),
        ("unprotected", lambda: unprotected.rebuild(plain)),
        ("secured_p2", lambda: secured(2)),
    ]
    try:
        for repeat in range(sizes.repeats):
            order = runs[repeat % 3:] + runs[:repeat % 3]
            for name, run in order:
                rate, cpu_rate = _timed(run)
                rates[name].append(rate)
                per_cpu[name].append(cpu_rate)
            if built.directory.counts()["rm_customers"] != customers:
                raise RuntimeError("the rebuilt read model does not hold every customer")
            one, two = _machine_scaling(MACHINE_ROUNDS)
            rates.setdefault("machine_1", []).append(one)
            rates.setdefault("machine_2", []).append(two)
            progress(f"rebuild {repeat + 1}/{sizes.repeats}: "
                     + ", ".join(f"{name} {values_[-1]:,.0f} events/s" for name, values_ in rates.items()
                                 if not name.startswith("machine")))
    finally:
        unprotected.db.close()
        plain.close()
        scratch.release(built)
    return {
        "rebuild_vs_unprotected": Figure(
            label=f"read-model rebuild, 1 process ({events:,} events)", value=median(rates["secured_p1"]),
            baseline=median(rates["unprotected"]), unit="events/s",
            baseline_is="rebuild vs unprotected: the same projection code over the same events stored without "
                        "cipher, read-model values as plain JSON, searched by value instead of blind index",
            higher_is_better=True, goal=ratio_at_least(0.5),
        ),
        "rebuild_parallel": Figure(
            label=f"read-model rebuild, --jobs 2 ({events:,} events)", value=median(rates["secured_p2"]),
            baseline=median(rates["secured_p1"]), unit="events/s",
            baseline_is="parallel rebuild: the same rebuild with --jobs 1 (one process) on the same log",
            higher_is_better=True, goal=ratio_at_least(1.7),
        ),
        # What the partitioning itself costs, whatever the machine's other load: with P
        # free cores the speed-up is about P times this ratio.
        "machine_parallel": Figure(
            label="this machine: CPU-bound work, 2 processes at once", value=median(rates["machine_2"]),
            baseline=median(rates["machine_1"]), unit="opens/s",
            baseline_is="the same work (AES-GCM open and JSON decode, no database) in one process: "
                        "the ceiling of any speed-up at --jobs 2 here",
            higher_is_better=True,
        ),
        "rebuild_parallel_cpu": Figure(
            label=f"rebuild CPU cost, --jobs 2 ({events:,} events)", value=median(per_cpu["secured_p2"]),
            baseline=median(per_cpu["secured_p1"]), unit="events/CPU-s",
            baseline_is="parallel rebuild CPU: events per CPU-second (all processes) of --jobs 1 on the same log",
            higher_is_better=True,
        ),
    }


__all__ = ["measure_rebuilds", "PlainDirectory"]
