"""The API while PostgreSQL is down (R7.6): a crash, an outage, a restart.

`measure_faults()` makes a PostgreSQL cluster of its own (initdb on a free port,
never the shared server: it is about to be killed), a throwaway instance on it
(`strongroom init`), starts the real `strongroom serve`, and has `clients` agents
create customers in a loop while one more client polls `/healthz`. Then it stops
the cluster as a crash does (`pg_ctl -m immediate`), keeps it down for
`outage_seconds`, starts it again, and waits for every client's next write to go
through. Figures, each beside its goal:

* recovery: from `pg_ctl start` returning to the first write that succeeds; the
  baseline is the median write before the outage (what a write costs at all);
* of the writes sent during the outage and not served, the share answered 503
  (goal: all) and 500 (goal: none; no answer at all counts as neither); the
  baseline is the goal itself;
* `/healthz` p99 during the outage (it must never wait on the database); the
  baseline is its p99 before the outage.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess  # nosec B404
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from benchmarks.api_bench import (
    ApiBenchError,
    Client,
    _cli,
    _customer,
    _enrol,
    _env,
    _first_login,
    _free_port,
    _server,
)
from benchmarks.figures import Figure, Goal, median, percentile
from infrastructure.composition import CONFIG_FILE, Settings

Progress = Callable[[str], None]


class ThrowawayCluster:
    """A PostgreSQL cluster of this run's own, which it may crash."""

    def __init__(self, root: Path) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        pg_ctl = str(found[-1]) if found else shutil.which("pg_ctl")
        if pg_ctl is None:
            raise ApiBenchError("the faults suite needs PostgreSQL's server binaries (initdb, pg_ctl)")
        self.bindir = Path(pg_ctl).parent
        self.root, self.port = root, _free_port()
        self.run_as: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(root, "postgres")
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(root / "data"), "-U", "postgres", "-A", "trust")

    def _run(self, tool: str, *args: str) -> None:
        # Fixed programs and arguments from this module, no shell.
        subprocess.run([*self.run_as, str(self.bindir / tool), *args], check=True,  # nosec B603
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w",
                  "-o", f"-p {self.port} -k {self.root} -h 127.0.0.1", "start")

    def crash(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")

    def _processes(self) -> list[int]:
        """The postmaster and every server process it started."""
        postmaster = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True,  # nosec B603 B607
                                  text=True, check=False, timeout=10).stdout.split()
        return [postmaster, *map(int, children)]

    def freeze(self) -> None:
        """Hang the server without closing a connection (SIGSTOP): it answers nothing."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def remove(self) -> None:
        subprocess.run([*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"),  # nosec B603
                        "-m", "immediate", "stop"], check=False, capture_output=True, timeout=60)


@dataclass
class Answers:
    """(started, finished, status) of every request one kind of client made."""

    seen: list[tuple[float, float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, started: float, finished: float, status: int) -> None:
        with self.lock:
            self.seen.append((started, finished, status))


def _timed(client: Client, answers: Answers, method: str, path: str, body: object = None) -> int:
    started = time.monotonic()
    try:
        status, _, _ = client.call(method, path, body)
    except OSError:
        status = 0  # no answer at all: counted, neither 503 nor 500
    answers.add(started, time.monotonic(), status)
    return status


def _at_most(limit: float, unit: str) -> Goal:
    return Goal(f"<= {limit:g} {unit}", lambda f: f.value <= limit)


def measure_faults(
    *,
    clients: int = 8,
    outage_seconds: int = 5,
    workers: int = 2,
    progress: Progress = lambda _message: None,
) -> dict[str, Figure]:
    """Crash PostgreSQL under `clients` writers and measure the API (see the module)."""
    folder = Path(tempfile.mkdtemp(prefix="strongroom-bench-faults-"))
    cluster_root = Path(tempfile.mkdtemp(prefix="strongroom-pg-"))
    instance = folder / "instance"
    cluster = None
    try:
        progress("faults: initdb a throwaway PostgreSQL cluster")
        cluster = ThrowawayCluster(cluster_root)
        cluster.start()
        with psycopg.connect(cluster.url(), autocommit=True, connect_timeout=5) as admin:
            admin.execute("CREATE DATABASE strongroom")
        database_url = cluster.url("strongroom")
        env = _env(instance, database_url)
        progress("faults: strongroom init")
        done = subprocess.run(_cli("init", "--json"), env=env, capture_output=True,  # nosec B603
                              text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise ApiBenchError("strongroom init failed")
        config = json.loads((instance / CONFIG_FILE).read_text())
        settings = Settings(instance=instance, database_url=database_url, keys_database_url=database_url,
                            blind_index_bits=int(config.get("blind_index_bits", 14)))
        made = _enrol(settings, clients)
        port = _free_port()
        progress(f"faults: strongroom serve --workers {workers}, {clients} writers")
        with _server(instance, env, port, workers) as context:
            sessions = [Client(port, context, token=_first_login(Client(port, context), *m).token) for m in made]
            writes, health = Answers(), Answers()
            counter = iter(range(10**9))
            counter_lock = threading.Lock()
            stop = threading.Event()
            up_at: list[float] = []

            def writer(client: Client) -> None:
                recovered = False
                while not stop.is_set() and not recovered:
                    with counter_lock:
                        n = next(counter)
                    status = _timed(client, writes, "POST", "/api/v1/customers", _customer(n))
                    recovered = bool(up_at) and status == 201
                    if status != 201:
                        time.sleep(0.05)

            def prober() -> None:
                client = Client(port, context)
                while not stop.is_set():
                    _timed(client, health, "GET", "/healthz")
                    time.sleep(0.02)
                client.close()

            # Before: the baselines.
            warm = Answers()
            for i, client in enumerate(sessions):
                for j in range(3):
                    _timed(client, warm, "POST", "/api/v1/customers", _customer(10**8 + i * 10 + j))
            before_health = Answers()
            probe = Client(port, context)
            for _ in range(50):
                _timed(probe, before_health, "GET", "/healthz")
            probe.close()

            threads = [threading.Thread(target=writer, args=(c,)) for c in sessions]
            threads.append(threading.Thread(target=prober))
            for thread in threads:
                thread.start()
            time.sleep(0.5)
            progress(f"faults: pg_ctl stop -m immediate, {outage_seconds} s down")
            down_at = time.monotonic()
            cluster.crash()
            time.sleep(outage_seconds)
            cluster.start()
            up_at.append(time.monotonic())
            progress("faults: PostgreSQL started; waiting for every writer's next write")
            deadline = up_at[0] + 60
            for thread in threads[:-1]:
                thread.join(max(0.0, deadline - time.monotonic()))
            stop.set()
            for thread in threads:
                thread.join(30)
            for client in sessions:
                client.close()
    finally:
        if cluster is not None:
            cluster.remove()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(cluster_root, ignore_errors=True)

    up = up_at[0]
    successes = [finished for _, finished, status in writes.seen if status == 201 and finished >= up]
    if not successes:
        raise ApiBenchError("no write succeeded within 60 s of PostgreSQL starting again")
    # Writes sent while the cluster was down and not served: a request may outlive a
    # short outage and succeed after the restart, which is neither answer in question.
    sent = [status for started, _, status in writes.seen if down_at <= started <= up]
    during = [status for status in sent if status != 201]
    # No refused write at all (every one outlived a short outage) leaves both shares
    # at 0 %: the 503 goal is then not met, which is what the run showed.
    share = {code: 100 * sum(1 for s in during if s == code) / max(1, len(during)) for code in (503, 500)}
    # Every probe sent during the outage, however late it was answered: one that waited
    # for PostgreSQL to come back is the failure this figure exists to show.
    health_during = [finished - started for started, finished, _ in health.seen if down_at <= started <= up]
    warm_writes = [finished - started for started, finished, status in warm.seen if status == 201]
    before = [finished - started for started, finished, _ in before_health.seen]
    return {
        "faults_recovery": Figure(
            f"PostgreSQL back -> first successful write ({outage_seconds} s outage)",
            (min(successes) - up) * 1000, median(warm_writes) * 1000 if warm_writes else 1.0, "ms",
            "a write's median latency before the outage", False, _at_most(2000, "ms")),
        "faults_503_share": Figure(
            f"refused writes answered 503 during the outage ({len(during)} of {len(sent)} sent)", share[503], 100.0, "%",
            "every answer during the outage (R7.6)", True, Goal("100 %", lambda f: f.value >= 100)),
        "faults_500_share": Figure(
            "refused writes answered 500 during the outage", share[500], 0.0, "%",
            "no answer during the outage (R7.6)", False, Goal("0 %", lambda f: f.value == 0)),
        "faults_healthz_p99": Figure(
            f"/healthz p99 during the outage ({len(health_during)} probes)",
            percentile(health_during, 99) * 1000 if health_during else 0.0,
            percentile(before, 99) * 1000, "ms", "/healthz p99 before the outage", False,
            _at_most(100, "ms")),
    }
