"""Backup and restore figures (issue 5), each beside its baseline from the same run.

* restore: events/s of `restore_backup` into a fresh store (keys, rows as stored,
  read models rebuilt, chain checked) beside a raw bulk load (`COPY` on PostgreSQL,
  one `executemany` transaction on SQLite) of the very same rows into a bare table
  of the same shape in another fresh database. The read models are rebuilt with
  `--jobs` = the number of cores (issue 15), alongside the insert. Medians of
  RESTORE_ROUNDS rounds, restore and raw load interleaved. Goal: ratio >= 0.3.
* restore --jobs N vs --jobs 1: the same restore, read models rebuilt in one process.
* incremental backup: seconds to back up 1,000 new events beside the full backup of
  the whole store. It must follow the increment, not the store (events and, since
  issue 15 item 5, keys: only those made or destroyed since). Median of
  INCREMENT_ROUNDS rounds, each increment followed by an increment with no new
  events (what every backup pays whatever changed) and a full backup of the same
  store to a fresh target.
* incremental backup per new event (issue 15 item 5, "cost proportional to what
  changed"): the slope between increments of 1,000 and 3,000 new events (what one
  more new event costs), beside the full backup's cost per event less the
  increments' shared part (`_costs_per_event`). Equal costs per event (ratio 1) is
  proportional; an increment that copied anything for the store's size would show
  as a higher cost per new event. Goal: ratio >= 0.8.
* drill RTO: seconds from the start of `run_drill` to a verified, usable restored
  store, beside the raw bulk load of the same rows (200,000 events; 20,000 with --quick).

The store is filled through the application (encrypted, projected inline), many
customers per `save()` so that filling 200,000 events does not dominate the run.
Everything lives in the scratch stores and folder; nothing touches an instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from application.context import RequestContext, acting_as
from domain.customer import Customer
from infrastructure.backup.create import create_backup
from infrastructure.backup.drill import run_drill
from infrastructure.backup.eventrows import EventTable, TableRef, decode_value, pg_conninfo
from infrastructure.backup.restore import restore_backup
from infrastructure.backup.targets import LocalTarget
from infrastructure.backup.verify import VerifyReport, manifest_chain, restorable_segments
from benchmarks.figures import Figure, median, ratio_at_least
from benchmarks.measures import BenchmarkError
from benchmarks.scratch import Scratch
from benchmarks.synthetic import Population
from infrastructure.composition import Components
from infrastructure.partitioned_rebuild import default_jobs

Progress = Callable[[str], None]
EVENTS_PER_CUSTOMER = 20
INCREMENT_ROUNDS = 3  # incremental backups measured, each beside a full one
SLOPE_FACTOR = 3  # the larger increment of each cost-per-event round, in increments
RESTORE_ROUNDS = 3  # restores measured, each beside a raw bulk load
CUSTOMERS_PER_SAVE = 50
BENCH_ACTOR = RequestContext(actor_id="benchmark", via="cli", purpose="benchmark")


def _fill(built: Components, population: Population, first: int, events: int, progress: Progress) -> None:
    """`events` new events: customers of EVENTS_PER_CUSTOMER events each, saved in groups."""
    customers = max(1, events // EVENTS_PER_CUSTOMER)
    done = 0
    for start in range(first, first + customers, CUSTOMERS_PER_SAVE):
        group = []
        for n in range(start, min(start + CUSTOMERS_PER_SAVE, first + customers)):
            customer = Customer.register(**population.fields(n))
            for k in range(EVENTS_PER_CUSTOMER - 1):
                customer.change_segment(f"segment-{k}")
            group.append(customer)
        built.app._save(*group)  # noqa: SLF001 - the unit of work with its inline projection
        done += len(group) * EVENTS_PER_CUSTOMER
        if done % 20_000 < CUSTOMERS_PER_SAVE * EVENTS_PER_CUSTOMER:
            progress(f"recovery: filled {done:,} of {events:,} events")
    built.tamper_evidence.flush()  # the new rows verified and signed now, before anything is timed


def _checkpoint_only_when_asked(live: Components) -> None:
    """Sign checkpoints at the end of each fill (`_fill`), not in the background.

    Why: the checkpointer verifies the rows written since the last checkpoint before
    it signs. Left to its thread it did so right after each 1,000-event fill, while
    the incremental backup that follows was being timed (and not the full backup
    later in the round): the first reads of the new rows took 12 ms instead of 1.7.
    The thread still signs once, early in the first fill (nothing signed yet);
    after that each fill's own checkpoint keeps it an hour from due.
    """
    checkpointer = live.tamper_evidence.checkpointer
    checkpointer.every_rows = 10**12
    checkpointer.every_seconds = 3600.0


def _raw_load_seconds(scratch: Scratch, target: LocalTarget, live: Components) -> float:
    """Bulk-load the backed-up rows into a bare table of the events table's shape."""
    report = VerifyReport(target=target.name)
    from infrastructure.backup.manifest import ManifestSigner

    chain = manifest_chain(target, ManifestSigner(live.keyring), report)
    segments = list(restorable_segments(target, chain))
    url = scratch.database_url("rawload")
    started = time.perf_counter()
    if scratch.store == "postgres":
        import psycopg
        from psycopg.sql import SQL, Identifier

        conninfo, _ = pg_conninfo(url)
        with psycopg.connect(conninfo) as conn:
            conn.execute(
                "CREATE TABLE raw_events (notification_id bigint PRIMARY KEY, originator_id uuid NOT NULL,"
                " originator_version bigint NOT NULL, topic text, state bytea, recorded_at timestamptz NOT NULL,"
                " prev_hash bytea, row_hash bytea)"
            )
            for columns, rows in segments:
                names = ["notification_id" if c == "position" else c for c in columns]
                copy = SQL("COPY raw_events ({}) FROM STDIN").format(SQL(", ").join(Identifier(c) for c in names))
                with conn.cursor() as cur, cur.copy(copy) as writer:
                    for row in rows:
                        writer.write_row([decode_value(v, dialect="postgres") for v in row])
            conn.commit()
    else:
        import sqlite3

        from infrastructure.sql import sqlite_path

        conn = sqlite3.connect(sqlite_path(url))
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            columns = segments[0][0] if segments else ["position"]
            conn.execute(f"CREATE TABLE raw_events ({', '.join(c + ' ' + ('INTEGER PRIMARY KEY' if c == 'position' else '') for c in columns)})")
            with conn:
                for cols, rows in segments:
                    marks = ", ".join("?" for _ in cols)
                    conn.executemany(f"INSERT INTO raw_events VALUES ({marks})",  # nosec B608 - our own table
                                     [[decode_value(v, dialect="sqlite") for v in row] for row in rows])
        finally:
            conn.close()
    return time.perf_counter() - started


def measure_recovery(
    scratch: Scratch, progress: Progress, *, events: int = 200_000, increment: int = 1_000,
) -> list[Figure]:
    """Restore throughput vs raw bulk load, incremental vs full backup, and the drill's RTO."""
    with acting_as(BENCH_ACTOR):
        live = scratch.components(blind_index_bits=14, bulk_load=True)
        _checkpoint_only_when_asked(live)
        population = Population()
        _fill(live, population, 0, events, progress)
        stored = _count(live)
        target = LocalTarget("bench", scratch.folder / f"backups-{scratch.store}")

        started = time.perf_counter()
        full = create_backup(live, target)
        full_seconds = time.perf_counter() - started
        progress(f"recovery: full backup of {full.rows:,} rows in {full_seconds:.2f}s")

        # Issue 15 item 5: rounds of `increment` new events each backed up, then an
        # increment of none, then a full backup of the same store to a fresh target;
        # medians of each. The costs per event are measured after the drill (below).
        increments, empties, fulls, incremental_rows = [], [], [(full_seconds, full.rows)], 0
        for round_ in range(INCREMENT_ROUNDS):
            _fill(live, population, 10**7 + round_ * increment, increment, progress)
            started = time.perf_counter()
            incremental = create_backup(live, target)
            increments.append(time.perf_counter() - started)
            incremental_rows += incremental.rows
            started = time.perf_counter()
            empty = create_backup(live, target)
            empties.append(time.perf_counter() - started)
            if empty.rows or not incremental.rows:
                raise BenchmarkError(f"increments backed up {incremental.rows} and {empty.rows} rows, "
                                     f"not {increment} and none")
            progress(f"recovery: incremental backup of {incremental.rows:,} rows in {increments[-1]:.3f}s, "
                     f"of none in {empties[-1]:.3f}s")
            if round_ < INCREMENT_ROUNDS - 1:
                started = time.perf_counter()
                whole = create_backup(live, LocalTarget("full", scratch.folder / f"full-{scratch.store}-{round_}"))
                fulls.append((time.perf_counter() - started, whole.rows))
        incremental_seconds, full_seconds = median(increments), median([seconds for seconds, _ in fulls])
        fixed_seconds = median(empties)

        # Restore and raw load in RESTORE_ROUNDS interleaved rounds, each into a new
        # database; the medians of both (one of each moved the ratio by a third).
        total_rows = full.rows + incremental_rows
        jobs = default_jobs()
        raws, restores = [], []
        for _ in range(RESTORE_ROUNDS):
            raws.append(_raw_load_seconds(scratch, target, live))
            progress(f"recovery: raw bulk load of {total_rows:,} rows in {raws[-1]:.2f}s")
            restored = restore_backup(live=live, target=target, into_url=scratch.database_url("restore"), jobs=jobs)
            if restored.rows != total_rows:
                raise BenchmarkError(f"restore brought back {restored.rows} of {total_rows} rows")
            restores.append(restored.seconds)
            progress(f"recovery: restore with read models (--jobs {jobs}) in {restored.seconds:.2f}s")
        raw_seconds, restore_seconds = median(raws), median(restores)
        # Issue 15: the same restore with the read models rebuilt in one process.
        single = restore_backup(live=live, target=target, into_url=scratch.database_url("restore1"), jobs=1)
        progress(f"recovery: restore with read models (--jobs 1) in {single.seconds:.2f}s")

        drill = run_drill(live, target, jobs=jobs)
        if drill.failures:
            raise BenchmarkError(f"the drill failed: {drill.failures[0]}")
        progress(f"recovery: drill RTO {drill.rto_seconds:.2f}s (--jobs {jobs})")
        per_new_event, full_per_event = _costs_per_event(live, population, target, increment, fulls, progress)
    return [
        Figure(
            label=f"restore {total_rows:,} events with read models (--jobs {jobs})",
            value=total_rows / restore_seconds,
            baseline=total_rows / raw_seconds, unit="events/s",
            baseline_is=f"raw bulk load (COPY / executemany) of the same rows into a bare table "
                        f"(medians of {RESTORE_ROUNDS}, interleaved)",
            higher_is_better=True, goal=ratio_at_least(0.3),
        ),
        Figure(
            label=f"incremental backup after {increment:,} new events", value=incremental_seconds,
            baseline=full_seconds, unit="s",
            baseline_is=f"full backup of the {stored:,}-event store (median of {INCREMENT_ROUNDS}, interleaved)",
            higher_is_better=False,
        ),
        Figure(
            label=f"incremental backup, cost per new event ({increment:,} vs {SLOPE_FACTOR * increment:,} new)",
            value=per_new_event * 1e6, baseline=full_per_event * 1e6, unit="µs/event",
            baseline_is="the full backup's cost per event of the whole store, less the increments' shared part",
            higher_is_better=False, goal=ratio_at_least(0.8),
        ),
        Figure(
            label="incremental backup with no new events (paid whatever changed)",
            value=fixed_seconds, baseline=full_seconds, unit="s",
            baseline_is=f"full backup of the {stored:,}-event store", higher_is_better=False,
        ),
        Figure(
            label=f"drill RTO at {total_rows:,} events (verify, restore, read models, --jobs {jobs})",
            value=drill.rto_seconds, baseline=raw_seconds,
            unit="s", baseline_is="raw bulk load of the same rows", higher_is_better=False,
        ),
        Figure(
            label=f"restore {total_rows:,} events, --jobs {jobs} vs --jobs 1", value=total_rows / restore_seconds,
            baseline=total_rows / single.seconds, unit="events/s",
            baseline_is="restore --jobs: the same restore with the read models rebuilt in one process",
            higher_is_better=True,
        ),
    ]


def _costs_per_event(live: Components, population: Population, target: LocalTarget, increment: int,
                     fulls: list[tuple[float, int]], progress: Progress) -> tuple[float, float]:
    """Seconds per new event of an incremental backup, and per event of a full one.

    Each round backs up `increment` new events, then SLOPE_FACTOR times as many: both
    increments write every file an increment writes (events segment, checkpoints,
    keys, manifests), so the difference of their times over the difference of their
    rows is what one more event costs, and what they share cancels. (An increment of
    no events writes no events segment and copies no new checkpoint, so it is not
    quite that shared part.) A full backup's cost per event is its time less that
    shared part (the rounds' median intercept), over its rows.

    One round can be upset by the shared machine (a larger increment timed faster
    than the smaller one, a negative slope); the medians ride over it, and only a
    median slope with no cost per event is refused.
    """
    slopes, intercepts = [], []
    for round_ in range(INCREMENT_ROUNDS):
        timed = []
        for size in (increment, SLOPE_FACTOR * increment):
            _fill(live, population, 2 * 10**7 + (round_ * (1 + SLOPE_FACTOR) + len(timed)) * increment, size,
                  progress)
            started = time.perf_counter()
            done = create_backup(live, target)
            timed.append((done.rows, time.perf_counter() - started))
        (small_rows, small_seconds), (big_rows, big_seconds) = timed
        if big_rows <= small_rows:
            raise BenchmarkError(f"an increment of {SLOPE_FACTOR}x the events backed up {big_rows:,} rows, "
                                 f"not more than {small_rows:,}: the fill did not reach the store")
        slope = (big_seconds - small_seconds) / (big_rows - small_rows)
        slopes.append(slope)
        intercepts.append(small_seconds - slope * small_rows)
        progress(f"recovery: increments of {small_rows:,} and {big_rows:,} rows in {small_seconds:.3f}s and "
                 f"{big_seconds:.3f}s: {slope * 1e6:.1f} µs a row")
    per_new_event = median(slopes)
    if per_new_event <= 0:
        raise BenchmarkError(f"increments of {SLOPE_FACTOR}x the events took no longer than the smaller ones "
                             f"(median {per_new_event * 1e6:.1f} µs a row): too few events to measure a cost per event")
    shared = median(intercepts)
    full_per_event = median([(seconds - shared) / rows for seconds, rows in fulls])
    if full_per_event <= 0:
        raise BenchmarkError("full backups cost no more than the increments' shared part: too few events")
    return per_new_event, full_per_event


def _count(built: Components) -> int:
    table = EventTable(TableRef(built.settings.database_url, built.app.recorder.events_table_name))
    try:
        return table.max_position()
    finally:
        table.close()


__all__ = ["measure_recovery"]
