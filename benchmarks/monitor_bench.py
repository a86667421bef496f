"""Monitor figures for `strongroom bench --suite monitor` (issue 12), each beside its baseline.

1. `event_to_alert_median`, `event_to_alert_p99`: from the commit of a break-glass
   access record to the commit of its alert, while 8 clients read customers and write
   access records through the real use cases (`CustomerService.read`), the monitor
   running as it does in production for the store (PostgreSQL: woken by LISTEN/NOTIFY;
   SQLite: a 0.1 s poll). The baseline is the goal itself (R3.6: median 200 ms, p99
   2 s), so a ratio of 1 or more meets it.
2. `throughput_with_monitor`: the same 8 clients' reads per second with the monitor
   running, against the same reads with no monitor, alternating (ABAB). Goal >= 0.9.
3. `catch_up`: rows per second of a monitor reading a backlog from position 0 (decoding
   every access record and staff event, evaluating every rule, storing what it finds)
   against paging the same rows raw with `select_notifications`. Goal >= 0.5.

The clients are in-process threads (no HTTP): the figures are what the monitor costs
and how fast it answers, not what TLS and JSON cost.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Self
from uuid import UUID

from application.context import RequestContext, acting_as
from application.customer_service import CustomerService
from application.monitoring import MONITOR_ACTOR
from benchmarks.audit import _agent, _concurrently, _fill, _read_raw
from benchmarks.figures import Figure, Goal, median, percentile, ratio_at_least
from benchmarks.measures import BenchmarkError, Sizes
from benchmarks.scratch import Scratch
from infrastructure.composition import Components
from infrastructure.monitor import Listener, LogMonitor, build_monitor

Progress = Callable[[str], None]
CLIENTS = 8
MEDIAN_GOAL = 0.2
P99_GOAL = 2.0
MONITOR_FIGURE_NAMES = ("event_to_alert_median", "event_to_alert_p99", "throughput_with_monitor", "catch_up")


class _Running:
    """The monitor in a thread, woken the way the store allows; `alerts` fires per commit."""

    def __init__(self, built: Components, on_alert: Callable[[list[str]], None] | None = None) -> None:
        self.built = built
        self.stop = threading.Event()
        self.monitor: LogMonitor = build_monitor(built, on_alert=on_alert)
        self.listener = (Listener(built.settings.database_url, built.app.recorder.channel_name)
                         if built.events_db.dialect == "postgres" else None)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        wait = self.listener.wait if self.listener is not None else self.stop.wait
        try:
            with acting_as(RequestContext(actor_id=MONITOR_ACTOR, via="worker")):
                self.monitor.run_forever(stop=self.stop.is_set, wait=wait,
                                         idle_wait=5.0 if self.listener is not None else 0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def __enter__(self) -> Self:
        self.monitor.catch_up()  # start from the head: the figures are about new events
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        if self.listener is not None:
            # A NOTIFY wakes the listener at once; it then sees the stop flag.
            self.built.app.access_log.record(kind="audit_read", details={"operation": "bench:stop"})
        self.thread.join(timeout=10)
        if self.listener is not None:
            self.listener.close()
        if self.error is not None:
            raise BenchmarkError(f"the monitor failed: {type(self.error).__name__}")


def _load(built: Components, ids: list[str], stop: threading.Event, done: list[int]) -> Callable[[int], None]:
    service = CustomerService(built.app)

    def client(n: int) -> None:
        actor, context = _agent(n)
        rng = random.Random(n)  # nosec B311 - the same picks every run, so runs compare
        count = 0
        with acting_as(context):
            while not stop.is_set():
                service.read(actor, ids[rng.randrange(len(ids))])
                count += 1
        done[n] = count

    return client


def measure_latency(built: Components, ids: list[str], probes: int, progress: Progress) -> tuple[Figure, Figure]:
    """Break-glass record committed -> its alert committed, under 8 clients' load."""
    raised = threading.Event()
    stored: list[tuple[float, str]] = []  # (when the monitor's commit returned, alert id)
    lock = threading.Lock()

    def on_alert(alert_ids: list[str]) -> None:
        now = time.perf_counter()
        with lock:
            stored.extend((now, alert_id) for alert_id in alert_ids)
        raised.set()

    latencies: list[float] = []
    stop_load = threading.Event()
    done = [0] * CLIENTS
    load = threading.Thread(target=lambda: _concurrently(CLIENTS, _load(built, ids, stop_load, done)), daemon=True)
    with _Running(built, on_alert=on_alert):
        load.start()
        time.sleep(0.5)
        _, context = _agent(CLIENTS + 1)
        with acting_as(context):
            for probe in range(probes):
                with lock:
                    stored.clear()
                built.app.access_log.record(kind="break_glass", outcome="allowed",
                                            details={"grant_id": f"bench-{probe}", "portfolio": "private",
                                                     "minutes": "1"})
                committed = time.perf_counter()
                latencies.append(_wait_for_break_glass(built, stored, lock, raised, committed) - committed)
                time.sleep(0.05)
        stop_load.set()
        load.join(timeout=30)
    progress(f"monitor: {probes} probes, median {median(latencies) * 1000:.0f} ms, "
             f"p99 {percentile(latencies, 99) * 1000:.0f} ms, under {sum(done):,} reads")
    middle = Figure(
        label=f"event to alert, median ({CLIENTS} clients reading)", value=median(latencies), baseline=MEDIAN_GOAL,
        unit="s", baseline_is="the goal of issue 12 (R3.6): 0.2 s median, 2 s p99", higher_is_better=False,
        goal=Goal("<= 0.2 s", lambda f: f.value <= MEDIAN_GOAL),
    )
    tail = Figure(
        label=f"event to alert, p99 ({CLIENTS} clients reading)", value=percentile(latencies, 99),
        baseline=P99_GOAL, unit="s", baseline_is="the goal of issue 12 (R3.6): 0.2 s median, 2 s p99",
        higher_is_better=False, goal=Goal("<= 2 s", lambda f: f.value <= P99_GOAL),
    )
    return middle, tail


def _wait_for_break_glass(built: Components, stored: list[tuple[float, str]], lock: threading.Lock,
                          raised: threading.Event, committed: float) -> float:
    """When the probe's alert was committed (other rules' alerts are passed over)."""
    seen = 0
    while time.perf_counter() < committed + 10:
        raised.wait(0.01)
        raised.clear()
        with lock:
            fresh, seen = stored[seen:], len(stored)
        for when, alert_id in fresh:
            if built.app.repository.get(UUID(alert_id)).rule_id == "break_glass_opened":
                return when
    raise BenchmarkError("a break-glass record raised no alert within 10 s")


def measure_throughput(built: Components, ids: list[str], repeats: int, seconds: float,
                       progress: Progress) -> Figure:
    """Reads/second by 8 clients with the monitor running against the same without."""
    rates: dict[str, list[float]] = {"with": [], "without": []}
    for repeat in range(repeats):
        for name in ("with", "without") if repeat % 2 == 0 else ("without", "with"):
            stop, done = threading.Event(), [0] * CLIENTS
            timer = threading.Timer(seconds, stop.set)
            if name == "with":
                with _Running(built):
                    timer.start()
                    elapsed = _concurrently(CLIENTS, _load(built, ids, stop, done))
            else:
                timer.start()
                elapsed = _concurrently(CLIENTS, _load(built, ids, stop, done))
            rates[name].append(sum(done) / elapsed)
        progress(f"monitor throughput {repeat + 1}/{repeats}: {rates['with'][-1]:,.0f} reads/s with, "
                 f"{rates['without'][-1]:,.0f} without")
    return Figure(
        label=f"masked reads with the monitor running ({CLIENTS} clients)", value=median(rates["with"]),
        baseline=median(rates["without"]), unit="reads/s",
        baseline_is="the same CustomerService.read calls with no monitor running", higher_is_better=True,
        goal=ratio_at_least(0.9),
    )


def measure_catch_up(built: Components, repeats: int, progress: Progress) -> Figure:
    """Rows/second of a monitor reading the log from 0 against raw paging of it."""
    monitor_rates: list[float] = []
    raw_rates: list[float] = []
    for repeat in range(repeats):
        with built.events_db.transaction() as cur:
            cur.execute("DELETE FROM monitor_position")
        monitor = build_monitor(built)
        with acting_as(RequestContext(actor_id=MONITOR_ACTOR, via="worker")):
            start = time.perf_counter()
            rows = monitor.catch_up()
            monitor_rates.append(rows / (time.perf_counter() - start))
        start = time.perf_counter()
        raw = _read_raw(built.app)
        raw_rates.append(raw / (time.perf_counter() - start))
        progress(f"monitor catch-up {repeat + 1}/{repeats}: {monitor_rates[-1]:,.0f} rows/s, "
                 f"raw {raw_rates[-1]:,.0f} rows/s ({rows} rows)")
    return Figure(
        label="monitor catch-up over a backlog (every rule, alerts stored)", value=median(monitor_rates),
        baseline=median(raw_rates), unit="rows/s",
        baseline_is="select_notifications paged by 500 over the same rows, no decryption",
        higher_is_better=True, goal=ratio_at_least(0.5),
    )


def run_monitor(scratch: Scratch, sizes: Sizes, progress: Progress) -> dict[str, Figure]:
    """The monitor figures for one kind of store (the caller sets an acting context)."""
    built = scratch.components(blind_index_bits=10)
    try:
        ids = _fill(built, customers=min(200, sizes.customers), access_records=sizes.customers * 10,
                    progress=progress)
        middle, tail = measure_latency(built, ids, probes=max(20, sizes.repeats * 10), progress=progress)
        throughput = measure_throughput(built, ids, sizes.repeats, seconds=2.0, progress=progress)
        catch_up = measure_catch_up(built, sizes.repeats, progress)
    finally:
        scratch.release(built)
    return dict(zip(MONITOR_FIGURE_NAMES, (middle, tail, throughput, catch_up), strict=True))
