"""Rebuilding the read models with every core: the log partitioned by customer (issue 15).

A rebuild is decryption-bound: every customer's state is replayed from events sealed
under that customer's keys, and every row is sealed again. Customers are independent
of one another, so the log is split by a stable hash of the customer's id into P
partitions, one per process, each with its own connections, key ring and key cache
(R1.3: a worker unwraps only keys it needs, in its own memory). The calling process
projects partition 0 with the components it already has; P-1 forked workers build
their own meanwhile (building one cost 80 ms on PostgreSQL, a sixth of a 6,000-event
partition, and left a core idle while it connected).

What a worker takes from the log, in log order:

* a customer's events, by the partition of the customer's id (`partition_of`: its
  last hex digits, modulo P);
* an erasure record's first event, by the partition of the *erased* customer's id, so
  the purge lands after that customer's rows in the same worker, as it does in one
  process;
* an alert's events, by the partition of the alert's id (the alerts read model, R3.6).

Nothing else writes a read model: other events are not even decrypted. Every worker
reads the same pages of the log (PAGE notifications from the same start) and stamps a
page's rows with the page's last position, exactly as the sequential rebuild does, so
the tables come out row for row the same whatever P is. The database computes the
partition from the stored id, so a worker receives only its own streams' rows and the
erasure records (whose customer is sealed inside), not P times the log.

Exactly once per partition: a page's rows and the partition's position in
`rm_rebuild_progress` commit in one transaction. A worker that is killed loses at
most its open page; running the rebuild again with the same P resumes every
partition from its own position (the read model's own position stays 0 until every
partition has finished, so nothing reads a half-built model as current). A different
P, a different end, or a read model written since, starts over from empty.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventsourcing.utils import get_topic, resolve_topic

from application.errors import SubjectErased
from domain.alerts import Alert
from domain.customer import Customer
from domain.erasure import CustomerErasure
from infrastructure.crypto.kek import KekProvider
from infrastructure.eventstore.shared import partition_of
from infrastructure.readmodel import PROJECTION
from infrastructure.sql import Cursor, Database, lock_schema_changes

TABLE = "rm_rebuild_progress"
# The same progress, kept by releases that partitioned by the whole id: a run that one
# left is not resumed (its partitions hold other customers), it starts over.
_EARLIER_TABLE = "rm_rebuild_partitions"
POLL_SECONDS = 0.2
# How long a worker following a log still being written waits before reading a short page again.
FOLLOW_SECONDS = 0.01


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(parent_pid: int) -> None:
    """A worker ends when the process that forked it does, however it ends (a SIGKILL
    included): else an orphan would go on writing read models into a store whose
    restore or rebuild is being run again, and started over. On Linux the kernel
    sends the signal; elsewhere a worker following a log still being written stops
    when its parent is gone (project_partition), and any other runs on to its end."""
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    if prctl is not None:  # Linux; elsewhere a worker following a log checks its parent itself
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent ended before the signal was asked for
        os._exit(1)


class RebuildInterrupted(Exception):
    """A partition's worker stopped before its end; running the rebuild again resumes it."""


def default_jobs() -> int:
    """The number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# Erasure records are read by every partition: the erased customer's id is sealed inside.
EVERY_PARTITION_TOPICS = tuple(sorted(
    get_topic(cls) for cls in vars(CustomerErasure).values()
    if isinstance(cls, type) and issubclass(cls, CustomerErasure.Event)
))


def create_partition_table(cur: Cursor, dialect: str) -> None:
    lock_schema_changes(cur, dialect)
    bigint = "BIGINT" if dialect == "postgres" else "INTEGER"
    cur.execute(f"DROP TABLE IF EXISTS {_EARLIER_TABLE}")
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (partition_no INTEGER PRIMARY KEY,"
        f" partitions INTEGER NOT NULL, target {bigint} NOT NULL, position {bigint} NOT NULL)"
    )


class PartitionFilter:
    """Which notifications of the log belong to one partition (topics resolved once)."""

    def __init__(self, app: Any, partition: int, partitions: int) -> None:
        self.app, self.partition, self.partitions = app, partition, partitions
        self._kinds: dict[str, str] = {}

    def _kind(self, topic: str) -> str:
        kind = self._kinds.get(topic)
        if kind is None:
            cls = resolve_topic(topic)
            kind = ("customer" if issubclass(cls, (Customer.Event, Alert.Event))
                    else "erasure" if issubclass(cls, CustomerErasure.Event) else "other")
            self._kinds[topic] = kind
        return kind

    def takes(self, notification: Any) -> bool:
        kind = self._kind(notification.topic)
        if kind == "customer":
            return partition_of(notification.originator_id, self.partitions) == self.partition
        if kind == "erasure" and notification.originator_version == 1:
            try:
                event = self.app.mapper.to_domain_event(notification)
            except SubjectErased:
                return False
            return partition_of(event.customer_id, self.partitions) == self.partition
        return False


def project_partition(projection: Any, app: Any, *, partition: int, partitions: int, target: int,
                      page: int, fresh_start: bool, report: Callable[[int], None] | None = None,
                      written_to_target: Any = None) -> int:
    """Project one partition's share of the log up to `target`; returns notifications read.

    `written_to_target` (a shared flag, `run_alongside`): the log is still being
    written below `target`, in position order, one committed batch after another (a
    restore), and the flag is set once it is all there. Until then only a full page is
    final: a short one may yet grow, so it is read again after FOLLOW_SECONDS. A full
    page cannot change, since every row committed later has a higher position than
    it holds (the restore refuses rows whose positions do not rise).

    The flag is a plain shared byte, polled: a `multiprocessing.Event` would hang
    its `set()` for good if a waiting worker were killed inside `wait()`.
    """
    from infrastructure.projection import _Batch

    parent_pid = os.getppid()
    db: Database = projection.db
    with db.transaction(write=False) as cur:
        cur.execute(f"SELECT position FROM {TABLE} WHERE partition_no = ?", (partition,))  # nosec B608
        row = cur.fetchone()
    start = (0 if row is None else int(row[0])) + 1
    empty = fresh_start and start == 1
    taken = PartitionFilter(app, partition, partitions)
    cache: dict[str, Customer] = {}
    written: set[str] = set()
    read = 0
    while start <= target:
        limit = min(page, target - start + 1)
        # Looked at before the page is read: once set, the page read after it is whole.
        all_written = written_to_target is None or bool(written_to_target.value)
        if partitions == 1:
            notifications = app.recorder.select_notifications(start=start, limit=limit)
            last, size = (notifications[-1].id if notifications else None), len(notifications)
        else:  # the same page, but only this partition's rows leave the database
            found = app.recorder.select_partition(start, limit, partition, partitions, EVERY_PARTITION_TOPICS)
            last, size, notifications = found.last, found.size, found.notifications
        if size < limit and not all_written:
            if os.getppid() != parent_pid:  # the writer is gone (where _die_with could not see to it)
                raise RebuildInterrupted("the process writing the log ended before it was all written")
            time.sleep(FOLLOW_SECONDS)
            continue
        if last is None:
            break
        batch = _Batch()
        mine = [n for n in notifications if taken.takes(n)]
        with projection.directory.keys_for_page(str(n.originator_id) for n in mine):
            for notification in mine:
                projection._apply(app, notification, batch, cache)  # noqa: SLF001 - the same row builder
            if batch.records or batch.purges or batch.alerts or batch.interactions:
                batch.seal(projection.directory, last)
        if batch.records or batch.purges or batch.alerts or batch.interactions:
            fresh = frozenset(batch.records) - written if empty else frozenset()
            with db.transaction() as cur:
                batch.write(projection.directory, cur, last, fresh, projection.alerts, announce=False, track=False)
                cur.execute(f"UPDATE {TABLE} SET position = ? WHERE partition_no = ?",  # nosec B608
                            (last, partition))
            written.update(batch.records)
        read += size
        if report is not None:
            report(last)
        start = last + 1
    if read:  # where this partition ended, even on a page with nothing of its own
        with db.transaction() as cur:
            cur.execute(f"UPDATE {TABLE} SET position = ? WHERE partition_no = ? AND position < ?",  # nosec B608
                        (start - 1, partition, start - 1))
    return read


@dataclass(frozen=True)
class _Plan:
    partitions: int
    target: int
    resumed: bool


class PartitionedRebuild:
    """Runs a rebuild over P processes: this one and P-1 workers, each of which builds
    its own components.

    The workers are forked, so they start with the KEK the parent holds (a PKCS#11
    session does not survive a fork: such a worker opens the token itself).
    """

    def __init__(self, settings: Any, kek: KekProvider, *, allow_incomplete_restore: bool = False) -> None:
        self.settings = settings
        self.kek = kek
        self.allow_incomplete_restore = allow_incomplete_restore
        self.prefetch_keys = False  # the restore: read the whole key store once per worker
        self._parent_pid = os.getpid()  # taken again before each fork

    # -- the plan, in the parent -------------------------------------------------------------

    def _plan(self, projection: Any, app: Any, upto: int | None, jobs: int, *, coming: bool = False) -> _Plan:
        """`coming`: the log is still being written up to `upto` (run_alongside)."""
        head = app.recorder.max_notification_id() or 0
        wanted = head if upto is None else upto if coming else min(upto, head)
        db: Database = projection.db
        with db.transaction() as cur:
            create_partition_table(cur, db.dialect)
            cur.execute(f"SELECT partition_no, partitions, target FROM {TABLE}")  # nosec B608
            rows = [tuple(r) for r in cur.fetchall()]
            cur.execute("SELECT position FROM rm_tracking WHERE name = ?", (PROJECTION,))
            tracked = [int(r[0]) for r in cur.fetchall()]
            same = (len(rows) == jobs and {int(r[1]) for r in rows} == {jobs}
                    and {int(r[0]) for r in rows} == set(range(jobs)))
            stored_target = int(rows[0][2]) if same else 0
            if (not coming and same and not any(tracked)
                    and (upto is None and stored_target <= head or stored_target == wanted)):
                return _Plan(jobs, stored_target, resumed=True)
            projection.directory.clear(cur)
            if projection.alerts is not None:
                projection.alerts.clear(cur)
            cur.execute(f"DELETE FROM {TABLE}")  # nosec B608
            for partition in range(jobs):
                cur.execute(f"INSERT INTO {TABLE} (partition_no, partitions, target, position)"  # nosec B608
                            " VALUES (?, ?, ?, 0)", (partition, jobs, wanted))
        return _Plan(jobs, wanted, resumed=False)

    def _finish(self, projection: Any) -> None:
        """Every partition is done: the read model takes the last position read (the
        same on every partition: they page the same log) and the partitions go."""
        db: Database = projection.db
        with db.transaction() as cur:
            cur.execute(f"SELECT MAX(position) FROM {TABLE}")  # nosec B608
            row = cur.fetchone()
            reached = int(row[0] or 0) if row is not None else 0
            if reached:
                projection.directory.track(cur, reached)
            cur.execute(f"DELETE FROM {TABLE}")  # nosec B608

    def run(self, projection: Any, app: Any, *, jobs: int, upto: int | None = None,
            progress: Callable[[int], None] | None = None, page: int | None = None) -> int:
        """Empty the read models (or resume a killed run) and project the log with `jobs`
        processes; returns the notifications read by a partition in this run."""
        from infrastructure.projection import PAGE

        page = page or PAGE
        plan = self._plan(projection, app, upto, jobs)
        fresh_start = not plan.resumed
        if jobs == 1:
            done = {"at": 0}

            def advance(last: int) -> None:
                if progress is not None:
                    progress(max(0, last - done["at"]))
                done["at"] = last

            read = project_partition(projection, app, partition=0, partitions=1, target=plan.target,
                                     page=page, fresh_start=fresh_start, report=advance)
        else:
            read = self._in_processes(projection, app, plan, page, fresh_start, progress)
        self._finish(projection)
        if upto is None:  # what was appended while the partitions ran
            read += projection.catch_up(app)
        return read

    def run_alongside(self, projection: Any, app: Any, *, jobs: int, target: int, write: Callable[[], Any],
                      progress: Callable[[int], None] | None = None, page: int | None = None) -> tuple[int, Any]:
        """Rebuild the read models while `write()` (in this process) writes the log up to
        `target`, in position order, in committed batches: a restore inserting its rows.
        Returns (notifications read by a partition, what `write` returned).

        Why: a restore inserted every row and only then rebuilt, so one core waited
        while the other inserted (issue 15 item 3). Here `jobs` forked workers
        project their partitions as the rows arrive (`project_partition`'s
        `written_to_target`), and catch up once `write` returns.

        If `write` raises, the workers are stopped and the exception goes on: the read
        models of a store whose restore failed are never used (it stays marked
        in progress, and a new restore clears it).
        """
        from infrastructure.projection import PAGE

        page = page or PAGE
        plan = self._plan(projection, app, target, jobs, coming=True)
        context = multiprocessing.get_context("fork")
        self._parent_pid = os.getpid()
        written = context.Value("b", 0, lock=False)
        positions = context.Array("q", plan.partitions, lock=False)
        counts = context.Array("q", plan.partitions, lock=False)
        workers = [
            context.Process(target=self._work, name=f"strongroom-rebuild-{p}",
                            args=(p, plan, page, True, positions, counts, written), daemon=True)
            for p in range(plan.partitions)
        ]
        for worker in workers:
            worker.start()
        finished = False
        try:
            result = write()
            written.value = 1
            self._wait(workers, positions, 0, progress)
            finished = True
        finally:
            for worker in workers:
                if not finished:
                    worker.kill()  # its store is abandoned: nothing to finish
                worker.join()
        self._check_exits(workers, plan, first=0, again="run the restore again: it starts over")
        self._finish(projection)
        return max(counts), result

    def _wait(self, workers: list[Any], positions: Any, reported: int,
              progress: Callable[[int], None] | None) -> None:
        """Until every worker has ended, woken by an end as well as by the clock: a
        finished rebuild is not left waiting for the next poll (issue 15)."""
        running: dict[Any, Any] = {w.sentinel: w for w in workers}
        while running:
            for sentinel in multiprocessing.connection.wait(list(running), timeout=POLL_SECONDS):
                running.pop(sentinel)
            reported = self._report(positions, reported, progress)
        self._report(positions, reported, progress)

    @staticmethod
    def _check_exits(workers: list[Any], plan: _Plan, *, first: int,
                     again: str = "run the rebuild again with the same --jobs: each partition resumes "
                                  "from its own committed position") -> None:
        stopped = [(p, w.exitcode) for p, w in enumerate(workers, start=first) if w.exitcode != 0]
        if stopped:
            partition, code = stopped[0]
            raise RebuildInterrupted(
                f"partition {partition} of {plan.partitions} stopped (exit {code}) before position "
                f"{plan.target}; {again}")

    def _in_processes(self, projection: Any, app: Any, plan: _Plan, page: int, fresh_start: bool,
                      progress: Callable[[int], None] | None) -> int:
        """Partition 0 here, with this process's components (built, connected: no start-up
        cost), partitions 1 to P-1 in forked workers that build their own meanwhile."""
        context = multiprocessing.get_context("fork")
        self._parent_pid = os.getpid()
        positions = context.Array("q", plan.partitions, lock=False)
        counts = context.Array("q", plan.partitions, lock=False)
        workers = [
            context.Process(target=self._work, name=f"strongroom-rebuild-{p}",
                            args=(p, plan, page, fresh_start, positions, counts), daemon=True)
            for p in range(1, plan.partitions)
        ]
        for worker in workers:
            worker.start()
        reported = 0

        def report(last: int) -> None:
            nonlocal reported
            positions[0] = last
            reported = self._report(positions, reported, progress)

        finished = False
        try:
            counts[0] = project_partition(projection, app, partition=0, partitions=plan.partitions,
                                          target=plan.target, page=page, fresh_start=fresh_start, report=report)
            positions[0] = plan.target
            self._wait(workers, positions, reported, progress)
            finished = True
        finally:
            for worker in workers:
                if not finished:  # this partition failed: stop the others; each resumes from its own page
                    worker.terminate()
                worker.join()
        self._check_exits(workers, plan, first=1)
        return max(counts)

    @staticmethod
    def _report(positions: Any, reported: int, progress: Callable[[int], None] | None) -> int:
        overall = min(positions)
        if progress is not None and overall > reported:
            progress(overall - reported)
        return max(reported, overall)

    def _work(self, partition: int, plan: _Plan, page: int, fresh_start: bool, positions: Any, counts: Any,
              written_to_target: Any = None) -> None:
        """One worker process: its own components, connections and key cache."""
        from dataclasses import replace

        _die_with(self._parent_pid)
        # The parent's own signal handlers are not a worker's: one that only notes a
        # SIGTERM (the projection worker's) would leave `terminate()` unheard.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

        from infrastructure.composition import build
        from infrastructure.crypto.pkcs11_token import Pkcs11Kek

        kek = None if isinstance(self.kek, Pkcs11Kek) else self.kek
        settings = replace(self.settings, projection="inline")
        built = build(settings, kek=kek, create_schema=False, allow_incomplete_restore=self.allow_incomplete_restore)
        try:
            if self.prefetch_keys:
                from infrastructure.backup.restore import PrefetchedKeyStore

                built.keyring.store = PrefetchedKeyStore(built.keyring.store)

            def report(last: int) -> None:
                positions[partition] = last

            counts[partition] = project_partition(
                built.projection, built.app, partition=partition, partitions=plan.partitions,
                target=plan.target, page=page, fresh_start=fresh_start, report=report,
                written_to_target=written_to_target)
            positions[partition] = plan.target
        finally:
            built.close()
