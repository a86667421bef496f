"""The `scaling` suite (issue 15, items 7 and 8), on PostgreSQL only.

1. The ceiling of the single chain. Every write goes through one stored function
   that takes `LOCK TABLE ... IN EXCLUSIVE MODE` on the events table and holds it
   until the transaction (events and read-model rows) commits
   (infrastructure/eventstore/postgres_schema.py), so the log is one queue. Writes/s
   of `register_customer` at 1, 2, 4, 8 and 16 concurrent clients, each beside the
   same clients doing the library's plain `Application.save` of the same Customer
   through the library's own recorder (no cipher, no read model, no chain, no table
   lock), measured in the same round. A third series, informative, is that plain
   save through Strongroom's chained recorder: the chain lock alone, without the
   cipher and read model, so the two ratios split what the lock costs from what the
   rest of a secured write costs at each concurrency. After the rounds the secured
   instance's chain must verify: the concurrent writers chained correctly.

2. Lookup at a million. `find_customers("email", ...)` latency (median, p99) on a
   read model of N customers, beside a primary-key lookup of the same ids. The rows
   are made in-process exactly as the projection makes them (the directory's own
   row sealing and blind-index digests, under data keys made and wrapped by the
   instance's own key ring and KEK) and COPYed in, a batch per transaction: a
   million registrations through the API would take hours and measure the write
   path, not the lookup. Every timed lookup decrypts what it found and must return
   exactly the customer asked for, so rows sealed under the wrong key would fail.

The clients are threads of this process (like the audit suite's): the figure is
what the store and the chain lock allow, with the GIL as a shared ceiling for both
sides of each ratio. See docs/scaling.md for what the figures mean.
"""

from __future__ import annotations

import contextvars
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from eventsourcing.postgres import PostgresApplicationRecorder, PostgresProcessRecorder
from eventsourcing.utils import get_topic

from benchmarks.figures import Figure, median, percentile, value_below
from benchmarks.measures import BenchmarkError, Sizes
from benchmarks.scratch import PlainCustomers, Scratch
from benchmarks.synthetic import Population
from infrastructure.composition import Components
from infrastructure.crypto.blind_index import bits_for
from infrastructure.crypto.keystore import KeyStore, WrappedKey
from infrastructure.eventstore import recorder_environment

Progress = Callable[[str], None]
CLIENTS = (1, 2, 4, 8, 16)
WRITE_BITS = 14
COPY_BATCH = 5_000


# -- 1. the chain's ceiling ------------------------------------------------------------------


def unchained(scratch: Scratch, like: Components) -> PlainCustomers:
    """The baseline: the library's own PostgreSQL recorder (its insert function takes
    no table lock and chains nothing), in a database of its own, with the secured
    instance's pool and timeout settings."""
    env = recorder_environment(scratch.database_url("unchained"))
    env["APPLICATION_RECORDER_TOPIC"] = get_topic(PostgresApplicationRecorder)
    env["PROCESS_RECORDER_TOPIC"] = get_topic(PostgresProcessRecorder)
    for key, value in like.app.env.items():
        if key.startswith("POSTGRES_") and key not in env:
            env[key] = value
    app = PlainCustomers(env)
    if type(app.recorder) is not PostgresApplicationRecorder:
        app.close()
        raise BenchmarkError(f"the unchained baseline got {type(app.recorder).__name__}")
    return app


def _concurrently(clients: int, work: Callable[[int], None]) -> float:
    """`work(n)` in `clients` threads started together, each in a copy of the caller's
    context (the acting context a write needs); returns the wall time."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)
    contexts = [contextvars.copy_context() for _ in range(clients)]

    def client(n: int) -> None:
        try:
            barrier.wait()
            contexts[n].run(work, n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise BenchmarkError(f"a benchmark client failed: {type(errors[0]).__name__}: {errors[0]}")
    return elapsed


class _Writer:
    """One side of the comparison: registers distinct customers from many threads."""

    def __init__(self, register: Callable[[dict[str, Any]], Any]) -> None:
        self.register = register
        self.population = Population()
        self.written = 0
        self._lock = threading.Lock()

    def round(self, clients: int, writes: int) -> float:
        """Writes/s of `writes` registrations shared among `clients` threads."""
        each = max(1, writes // clients)
        with self._lock:
            first, self.written = self.written, self.written + each * clients
        fields = [self.population.fields(first + n) for n in range(each * clients)]

        def work(n: int) -> None:
            for item in fields[n * each:(n + 1) * each]:
                self.register(item)

        return each * clients / _concurrently(clients, work)


def measure_chain_ceiling(scratch: Scratch, sizes: Sizes, progress: Progress,
                          writes: int) -> dict[str, Figure]:
    """Secured writes/s at each concurrency beside plain unchained saves in the same round."""
    built = scratch.components(blind_index_bits=WRITE_BITS)
    chained = scratch.plain(like=built)
    plain = unchained(scratch, built)
    try:
        writers = {"secured": _Writer(built.app.register_customer),
                   "chain lock only": _Writer(chained.register_customer),
                   "unchained": _Writer(plain.register_customer)}
        # Each pool opens as many connections as the widest round needs, and the
        # statements are prepared, before anything is timed.
        for writer in writers.values():
            writer.round(max(CLIENTS), 2 * max(CLIENTS))
        rates: dict[str, dict[int, list[float]]] = {name: {c: [] for c in CLIENTS} for name in writers}
        order = list(writers)
        for repeat in range(sizes.repeats):
            for clients in CLIENTS:
                order = order[1:] + order[:1]  # who goes first rotates, so noise falls on all
                for name in order:
                    rates[name][clients].append(writers[name].round(clients, writes))
                progress(f"chain ceiling {repeat + 1}/{sizes.repeats}, {clients} clients: "
                         + ", ".join(f"{name} {rates[name][clients][-1]:.0f}/s" for name in writers))
        _check_secured(built, writers["secured"].written)
    finally:
        plain.close()  # not the scratch's; its database is, and goes at close()
        scratch.release(chained)
        scratch.release(built)
    figures = {}
    baseline_is = ("chain ceiling: the same clients saving the same Customer with the library's own "
                   "PostgreSQL recorder (no cipher, no read model, no chain, no table lock)")
    for clients in CLIENTS:
        baseline = median(rates["unchained"][clients])
        figures[f"chain_{clients}"] = Figure(
            label=f"secured writes, {clients} client{'s' if clients > 1 else ''} (register_customer)",
            value=median(rates["secured"][clients]), baseline=baseline, unit="writes/s",
            baseline_is=baseline_is, higher_is_better=True)
    for clients in CLIENTS:
        figures[f"chain_lock_only_{clients}"] = Figure(
            label=f"plain save through the chain lock, {clients} client{'s' if clients > 1 else ''}",
            value=median(rates["chain lock only"][clients]), baseline=median(rates["unchained"][clients]),
            unit="writes/s", baseline_is=baseline_is, higher_is_better=True)
    return figures


def _check_secured(built: Components, written: int) -> None:
    projected = built.directory.counts()["rm_customers"]
    if projected != written:
        raise BenchmarkError(f"the read model holds {projected} of {written} concurrently written customers")
    report = built.tamper_evidence.verify()
    if not report.intact:
        raise BenchmarkError(f"the chain written by concurrent clients does not verify: {report.summary()}")


# -- 2. lookup at a million ------------------------------------------------------------------


class _FreshKeys:
    """The key store as the key ring sees it during a bulk fill.

    For the customers being filled (who have no keys yet) it keeps the wrapped keys
    the key ring makes instead of committing each subject's in a transaction of its
    own; `take()` hands them over to be COPYed with their rows. Everything else (the
    system key, the blind-index root) goes to the real store.
    """

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.fresh: set[str] = set()
        self.pending: dict[tuple[str, str], WrappedKey] = {}

    def get(self, subject_id: str, kind: str) -> WrappedKey | None:
        if subject_id in self.fresh:
            return self.pending.get((subject_id, kind))
        return self.store.get(subject_id, kind)

    def is_destroyed(self, subject_id: str, kind: str) -> bool:
        return subject_id not in self.fresh and self.store.is_destroyed(subject_id, kind)

    def insert_all_if_absent(self, keys: list[WrappedKey]) -> dict[str, WrappedKey | None]:
        if any(key.subject_id not in self.fresh for key in keys):
            return self.store.insert_all_if_absent(keys)
        result: dict[str, WrappedKey | None] = {}
        for key in keys:
            result[key.kind] = self.pending.setdefault((key.subject_id, key.kind), key)
        return result

    def take(self) -> list[WrappedKey]:
        keys = list(self.pending.values())
        self.pending.clear()
        self.fresh.clear()
        return keys

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@contextmanager
def _fresh_keys(built: Components) -> Iterator[_FreshKeys]:
    keyring = built.keyring
    real = keyring.store
    fresh = _FreshKeys(real)
    keyring.store = fresh  # type: ignore[assignment]
    try:
        yield fresh
    finally:
        keyring.store = real


def copy_fill(built: Components, population: Population, ids: list[str], progress: Progress) -> float:
    """Fill the read model and the key store with `ids`' rows, as the projection
    would write them, through COPY; returns the seconds taken."""
    directory = built.directory
    columns = directory._COLUMNS  # noqa: SLF001 - the very columns the projection writes
    start = time.perf_counter()
    with _fresh_keys(built) as keys:
        for offset in range(0, len(ids), COPY_BATCH):
            batch = range(offset, min(offset + COPY_BATCH, len(ids)))
            keys.fresh.update(ids[n] for n in batch)
            customers, search = [], []
            for n in batch:
                row = population.row(n, ids[n])
                customers.append(directory._row_values(row, 1))  # noqa: SLF001 - sealed as projected
                search.extend((field, digest, ids[n]) for field, digest in
                              directory.search_digests(row.record, row.pans))
            created = datetime.now(UTC).isoformat(timespec="microseconds")
            wrapped = [(k.subject_id, k.kind, k.wrapped, k.kek_id, created) for k in keys.take()]
            # Keys first, committed: rows whose keys were lost would be unreadable.
            _copy(built.keys_db, "data_keys", ("subject_id", "kind", "wrapped", "kek_id", "created_at"), wrapped)
            _copy(built.events_db, "rm_customers", columns, customers,
                  then=("rm_customer_search", ("field", "digest", "customer_id"), search))
            built.keyring.forget_cached()  # a million customers' keys are not kept in memory
            done = batch.stop
            if done % 100_000 == 0 or done == len(ids):
                progress(f"COPY fill: {done:,}/{len(ids):,} customers, {time.perf_counter() - start:.0f} s")
    return time.perf_counter() - start


def _copy(database: Any, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]],
          then: tuple[str, tuple[str, ...], list[tuple[Any, ...]]] | None = None) -> None:
    from psycopg.sql import SQL, Identifier

    with database.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        for name, names, values in ((table, columns, rows), *(() if then is None else (then,))):
            statement = SQL("COPY {} ({}) FROM STDIN").format(
                Identifier(name), SQL(", ").join(Identifier(c) for c in names))
            with cur.copy(statement) as copy:
                for value in values:
                    copy.write_row(value)


def _primary_key_lookup(built: Components, customer_id: str) -> Any:
    with built.events_db.transaction(write=False) as cur:
        cur.execute("SELECT customer_id FROM rm_customers WHERE customer_id = ?", (customer_id,))
        return cur.fetchone()


def measure_lookup_at(scratch: Scratch, sizes: Sizes, progress: Progress, customers: int) -> tuple[dict[str, Figure],
                                                                                                  dict[str, Any]]:
    """Email lookup latency at `customers` rows, beside a primary-key lookup of the same ids."""
    bits = bits_for(customers)
    built = scratch.components(blind_index_bits=bits, bulk_load=True)
    try:
        population = Population()
        ids = [str(uuid.uuid4()) for _ in range(customers)]
        fill_seconds = copy_fill(built, population, ids, progress)
        counts = built.directory.counts()["rm_customers"], built.keyring.counts()
        if counts[0] != customers:
            raise BenchmarkError(f"the read model holds {counts[0]} of {customers} filled customers")
        scratch.settle(built)
        # The same picks every run, so runs compare; not security-relevant.
        rng = random.Random(20_261_205)  # nosec B311
        picks = rng.sample(range(customers), min(sizes.lookups, customers))
        samples: dict[str, list[float]] = {"lookup_median": [], "lookup_p99": [], "pk_median": [], "pk_p99": []}
        for repeat in range(sizes.repeats):
            built.keyring.forget_cached()  # cold keys: a random customer among a million
            lookups, baselines = [], []
            for n in picks:
                started = time.perf_counter()
                found = built.app.find_customers("email", population.email(n))
                lookups.append((time.perf_counter() - started) * 1000)
                if [(r["id"], r["email"]) for r in found] != [(ids[n], population.email(n))]:
                    raise BenchmarkError(f"an email lookup returned {len(found)} customers, expected exactly 1")
                started = time.perf_counter()
                if _primary_key_lookup(built, ids[n]) is None:
                    raise BenchmarkError("a primary-key lookup found nothing")
                baselines.append((time.perf_counter() - started) * 1000)
            for name, values in (("lookup", lookups), ("pk", baselines)):
                samples[f"{name}_median"].append(median(values))
                samples[f"{name}_p99"].append(percentile(values, 99))
            progress(f"lookup at {customers:,} {repeat + 1}/{sizes.repeats}: median "
                     f"{samples['lookup_median'][-1]:.2f} ms, p99 {samples['lookup_p99'][-1]:.2f} ms "
                     f"(primary key p99 {samples['pk_p99'][-1]:.2f} ms)")
    finally:
        scratch.release(built)
    baseline_is = ("lookup at N: SELECT customer_id FROM rm_customers WHERE customer_id = ? for the same ids, "
                   "same table")
    figures = {
        f"lookup_at_n_{stat}": Figure(
            label=f"email lookup {stat} at {customers:,} customers (COPY-filled, {len(picks)} lookups)",
            value=median(samples[f"lookup_{stat}"]), baseline=median(samples[f"pk_{stat}"]), unit="ms",
            baseline_is=baseline_is, higher_is_better=False, goal=goal)
        for stat, goal in (("median", None), ("p99", value_below(5, "ms")))
    }
    setup = {"customers": customers, "blind_index_bits": bits, "fill_seconds": fill_seconds,
             "fill_customers_per_second": customers / fill_seconds, "data_keys": counts[1]}
    return figures, setup


def run_scaling(scratch: Scratch, sizes: Sizes, progress: Progress, *, customers: int,
                writes: int) -> tuple[dict[str, Figure], dict[str, Any]]:
    """Both figures on PostgreSQL (the caller sets the acting context)."""
    if scratch.store != "postgres":
        raise ValueError("the scaling suite measures PostgreSQL")
    figures = measure_chain_ceiling(scratch, sizes, progress, writes)
    lookups, setup = measure_lookup_at(scratch, sizes, progress, customers)
    return {**figures, **lookups}, setup
