"""Audit figures for `strongroom bench` (issue 4), each beside its baseline.

1. `audit_verify`: rows per second of `audit verify` (recompute every row's hash from
   its clear columns and the SHA-256 of its ciphertext, check every link and every
   checkpoint signature) against paging the same rows raw with
   `select_notifications` (no hashing, no decryption). Goal: ratio >= 0.5.
2. `access_records`: masked customer reads per second through the real read use
   case (`CustomerService.read`: policy, read model, masking, and a durable access
   record committed before it returns) by 16 concurrent clients, against the same
   reads with access recording switched off. Goal: ratio >= 0.5. The clients are
   in-process threads calling the use case (no HTTP), so the figure is what the
   access records cost, not what TLS and JSON cost.
3. `access_records_one_per_transaction` (informative, no goal): the same reads with
   group commit disabled (one transaction per record), to show what it buys.
4. `access_records_not_committed` (informative, no goal): the same reads with each
   record made and sealed as `AccessLog.record` does, then dropped uncommitted: what
   the ratio would be if committing took no time, so the rest is the record's own
   making and sealing (issue 15, item 4).

Runs alternate (ABAB, swapping who goes first each repeat); each figure is the
median of its repeats. The caller sets an acting context (bench does).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from application.audit import AccessLog
from application.context import RequestContext, acting_as
from application.customer_service import CustomerService
from application.security import Actor
from benchmarks.figures import Figure, median, ratio_at_least
from benchmarks.measures import BenchmarkError, Sizes
from benchmarks.scratch import Scratch
from benchmarks.synthetic import Population
from infrastructure.composition import Components

Progress = Callable[[str], None]
CLIENTS = 16
PAGE = 500


class _NoAccessRecords:
    """The baseline's access log: records nothing (never used outside the benchmark)."""

    max_group = 0

    def record(self, **_: Any) -> None:
        return None


class _SealedNotCommitted(AccessLog):
    """A diagnostic access log (never used outside the benchmark): every record is
    made and sealed in its caller's thread exactly as `AccessLog.record` does, then
    dropped instead of queued for the group commit."""

    def _commit(self, pending: Any) -> None:
        return None


def _read_raw(app: Any, page: int = PAGE) -> int:
    """Page through the whole log as stored: no hashing, no decryption."""
    start, count = 1, 0
    while True:
        notifications = app.recorder.select_notifications(start, limit=page)
        if not notifications:
            return count
        count += len(notifications)
        start = notifications[-1].id + 1


def _concurrently(clients: int, work: Callable[[int], None]) -> float:
    """Run `work(n)` in `clients` threads started together; returns the wall time."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def client(n: int) -> None:
        try:
            barrier.wait()
            work(n)
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


def _agent(n: int) -> tuple[Actor, RequestContext]:
    staff_id = str(uuid.UUID(int=n + 1))
    session = f"bench-session-{n}"
    actor = Actor(staff_id=staff_id, username=f"bench-agent-{n}", roles=frozenset({"agent"}),
                  portfolios=frozenset({"retail"}), session_id=session)
    return actor, RequestContext(actor_id=staff_id, via="api", session_id=session, client_addr="127.0.0.1")


def _fill(built: Components, customers: int, access_records: int, progress: Progress) -> list[str]:
    population = Population()
    ids = []
    for n in range(customers):
        fields = population.fields(n)
        fields["portfolio"] = "retail"
        ids.append(built.app.register_customer(fields)["id"])
    per_client = access_records // CLIENTS

    def record(n: int) -> None:
        _, context = _agent(n)
        with acting_as(context):
            for k in range(per_client):
                built.app.access_log.record(kind="view", customer_ids=[ids[(n + k) % len(ids)]], fields=["email"])

    _concurrently(CLIENTS, record)
    progress(f"audit: {customers} customers and {per_client * CLIENTS} access records written")
    return ids


def measure_verify(built: Components, sizes: Sizes, progress: Progress) -> Figure:
    """Rows/second of a full `audit verify` against raw paging of the same rows."""
    built.tamper_evidence.checkpoint()
    verify_rates: list[float] = []
    raw_rates: list[float] = []
    for repeat in range(sizes.repeats):
        runs: list[tuple[str, Callable[[], int]]] = [
            ("verify", lambda: _verified_rows(built)),
            ("raw", lambda: _read_raw(built.app)),
        ]
        for name, run in runs if repeat % 2 == 0 else list(reversed(runs)):
            start = time.perf_counter()
            rows = run()
            (verify_rates if name == "verify" else raw_rates).append(rows / (time.perf_counter() - start))
        progress(f"audit verify {repeat + 1}/{sizes.repeats}: {verify_rates[-1]:,.0f} rows/s, "
                 f"raw {raw_rates[-1]:,.0f} rows/s ({rows} rows)")
    return Figure(
        label="audit verify (hash chain and checkpoints)",
        value=median(verify_rates), baseline=median(raw_rates), unit="rows/s",
        baseline_is="select_notifications paged by 500 over the same rows, no hashing",
        higher_is_better=True, goal=ratio_at_least(0.5),
    )


def _verified_rows(built: Components) -> int:
    report = built.tamper_evidence.verify()
    if not report.intact:
        raise BenchmarkError(f"the benchmark's own chain does not verify: {report.summary()}")
    return report.rows


def _read_loop(built: Components, ids: list[str], reads_each: int) -> Callable[[int], None]:
    service = CustomerService(built.app)

    def client(n: int) -> None:
        actor, context = _agent(n)
        # The same picks every run, so runs compare; not security-relevant.
        rng = random.Random(n)  # nosec B311
        with acting_as(context):
            for _ in range(reads_each):
                view = service.read(actor, ids[rng.randrange(len(ids))])
                if "email" not in view:
                    raise BenchmarkError("a masked read returned no view")

    return client


def measure_access_records(built: Components, ids: list[str], sizes: Sizes,
                           progress: Progress) -> tuple[Figure, Figure, Figure]:
    """Masked reads/second with durable access records against the same without."""
    reads_each = max(20, sizes.customers // 4)
    log = built.app.access_log
    group = log.max_group
    sides: dict[str, Any] = {"recorded": log, "off": _NoAccessRecords(), "single": log,
                             "not_committed": _SealedNotCommitted(built.app)}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for repeat in range(sizes.repeats):
        for name in names if repeat % 2 == 0 else list(reversed(names)):
            before = built.app.recorder.max_notification_id() or 0
            built.app.access_log = sides[name]
            log.max_group = 1 if name == "single" else group
            try:
                elapsed = _concurrently(CLIENTS, _read_loop(built, ids, reads_each))
            finally:
                built.app.access_log = log
                log.max_group = group
            written = (built.app.recorder.max_notification_id() or 0) - before
            expected = 0 if name in ("off", "not_committed") else CLIENTS * reads_each
            if written != expected:
                raise BenchmarkError(f"{written} access records were written for {expected} recorded reads")
            rates[name].append(CLIENTS * reads_each / elapsed)
        progress(f"masked reads {repeat + 1}/{sizes.repeats}: {rates['recorded'][-1]:,.0f}/s with records, "
                 f"{rates['off'][-1]:,.0f}/s without, {rates['single'][-1]:,.0f}/s one transaction each, "
                 f"{rates['not_committed'][-1]:,.0f}/s sealed but not committed")
    baseline = median(rates["off"])
    recorded = Figure(
        label=f"masked reads with durable access records ({CLIENTS} clients, group commit)",
        value=median(rates["recorded"]), baseline=baseline, unit="reads/s",
        baseline_is="the same CustomerService.read calls with access recording switched off",
        higher_is_better=True, goal=ratio_at_least(0.5),
    )
    single = Figure(
        label=f"masked reads, one transaction per access record ({CLIENTS} clients)",
        value=median(rates["single"]), baseline=baseline, unit="reads/s",
        baseline_is="the same CustomerService.read calls with access recording switched off",
        higher_is_better=True, goal=None,
    )
    not_committed = Figure(
        label=f"masked reads, records sealed but not committed ({CLIENTS} clients)",
        value=median(rates["not_committed"]), baseline=baseline, unit="reads/s",
        baseline_is="the same CustomerService.read calls with access recording switched off",
        higher_is_better=True, goal=None,
    )
    return recorded, single, not_committed


AUDIT_FIGURE_NAMES = ("audit_verify", "access_records", "access_records_one_per_transaction",
                      "access_records_not_committed")


def run_audit(scratch: Scratch, sizes: Sizes, progress: Progress) -> dict[str, Figure]:
    """The audit figures for one kind of store (the caller sets the acting context).

    Wire into `strongroom bench` beside `run_store`: `figures.update(run_audit(scratch,
    sizes, progress))`. The access-record figure is the one issue 4 asks for on
    PostgreSQL; on SQLite it is measured the same way.
    """
    built = scratch.components(blind_index_bits=10)
    try:
        ids = _fill(built, customers=min(200, sizes.customers), access_records=sizes.customers * 10,
                    progress=progress)
        verify = measure_verify(built, sizes, progress)
        recorded, single, not_committed = measure_access_records(built, ids, sizes, progress)
    finally:
        scratch.release(built)
    return dict(zip(AUDIT_FIGURE_NAMES, (verify, recorded, single, not_committed), strict=True))
