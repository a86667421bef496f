"""The customer API under load: over TLS against `strongroom serve`, beside the very
same use cases called in-process, in the same run, on the same PostgreSQL database.

`measure_api(pg_admin_url)` makes a throwaway instance (`strongroom init`) on a new
PostgreSQL database, enrols agents, starts the real server, and measures with
`clients` concurrent clients (one keep-alive TLS connection and one agent each):

* masked customer read (`GET /customers/{id}`) and update (`PATCH` with `If-Match`):
  throughput, median and p99 latency; the baseline is `CustomerService.read` /
  `.update` called from as many threads in this process, so the ratio is what HTTP,
  authentication and TLS cost on top of the use case itself (which includes the
  access record every read commits, R3.2);
* login + TOTP (`POST /auth/login` then `/auth/mfa`), median; the baseline is one
  argon2id verification in-process (`infrastructure.passwords.ARGON2_PARAMETERS`:
  3 passes over 64 MiB, 4 lanes, chosen so a guess costs an attacker the same memory
  while a login stays well under half a second), which dominates the login.

The server and the command line run as their own processes, started as an operator
starts them: the `strongroom` console script beside this interpreter.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess  # nosec B404
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pyotp

from application.context import RequestContext, acting_as
from application.customer_service import CustomerService
from application.monitoring import alerts_only
from application.security import Actor
from benchmarks.figures import Figure, median, percentile, ratio_at_least
from benchmarks.request_profile import breakdown_lines, masked_read_profile
from infrastructure.composition import CONFIG_FILE, Settings, build
from infrastructure.passwords import Argon2PasswordHasher

Progress = Callable[[str], None]
PORTFOLIO = "bench"
# A throwaway account in a throwaway instance.
NEW_PASSWORD = "bench-Passphrase-2026-long"  # nosec B105


class ApiBenchError(Exception):
    """The server or the instance could not be set up; the message says which step."""


def _cli(*args: str) -> list[str]:
    """`strongroom ARGS` as its own process: the console script this environment installed."""
    return [str(Path(sys.executable).with_name("strongroom")), *args]


def _env(instance: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(STRONGROOM_INSTANCE=str(instance), STRONGROOM_DATABASE_URL=database_url)
    # On SQLite the monitor runs inside serve (issue 12): the load looks like misuse by
    # design (hundreds of customers read quickly); it is alerted, never cut off.
    env["STRONGROOM_MONITOR_RULES"] = alerts_only()
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Client:
    """One keep-alive HTTPS connection, reopened when the server closes it."""

    port: int
    context: ssl.SSLContext
    token: str | None = None
    connection: http.client.HTTPSConnection | None = None

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
             ) -> tuple[int, dict[str, str], Any]:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        payload = None if body is None else json.dumps(body)
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPSConnection("localhost", self.port, context=self.context, timeout=30)
            try:
                self.connection.request(method, path, body=payload, headers=sent)
                response = self.connection.getresponse()
                raw = response.read()
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, dict(response.getheaders()), json.loads(raw) if raw else None
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


@dataclass
class Account:
    username: str
    staff_id: str
    totp: pyotp.TOTP
    token: str


@contextmanager
def _database(pg_admin_url: str) -> Iterator[str]:
    name = f"sr_bench_api_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(pg_admin_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _server(instance: Path, env: dict[str, str], port: int, workers: int) -> Iterator[ssl.SSLContext]:
    log = (instance.parent / "serve.log").open("w")
    # Our own command line, no shell.
    process = subprocess.Popen(  # nosec B603
        _cli("serve", "--port", str(port), "--workers", str(workers)),
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    context = ssl.create_default_context(cafile=str(instance / "tls" / "cert.pem"))
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise ApiBenchError(f"strongroom serve exited with {process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                    with context.wrap_socket(raw, server_hostname="localhost"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise ApiBenchError("strongroom serve did not answer within 60 s") from None
                time.sleep(0.2)
        yield context
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _enrol(settings: Settings, count: int) -> list[tuple[str, str, str]]:
    """(username, staff id, one-time password) for `count` new agents, made in-process
    as `strongroom staff add` makes them (an operator action, recorded)."""
    built = build(settings, create_schema=False)
    made = []
    try:
        with acting_as(RequestContext(actor_id="operator:bench", via="cli", purpose="benchmark accounts")):
            for i in range(count):
                created = built.staff_admin.add_staff_as_operator(
                    username=f"bench-agent-{i}", display_name=f"Bench agent {i}", roles=["agent"],
                    portfolios=[PORTFOLIO],
                )
                made.append((created.username, created.staff_id, created.one_time_password))
    finally:
        built.close()
    return made


def _first_login(client: Client, username: str, staff_id: str, password: str) -> Account:
    status, _, started = client.call("POST", "/api/v1/auth/login", {"username": username, "password": password})
    if status != 200 or "totp_uri" not in started:
        raise ApiBenchError(f"login of {username} answered {status}")
    totp = pyotp.TOTP(pyotp.parse_uri(started["totp_uri"]).secret)
    status, _, opened = client.call("POST", "/api/v1/auth/mfa", {"challenge": started["challenge"], "code": totp.now()})
    if status != 200:
        raise ApiBenchError(f"TOTP enrolment of {username} answered {status}")
    client.token = opened["token"]
    status, _, _ = client.call("POST", "/api/v1/auth/password",
                               {"current_password": password, "new_password": NEW_PASSWORD})
    if status != 200:
        raise ApiBenchError(f"password change of {username} answered {status}")
    return Account(username, staff_id, totp, opened["token"])


def _login_seconds(client: Client, account: Account) -> float:
    """One complete login with a TOTP code not used before (the next step's, which
    the ±1 step window accepts), timed end to end over TLS."""
    code = account.totp.at(datetime.now(UTC).timestamp() + account.totp.interval)
    client.token = None
    started_at = time.perf_counter()
    status, _, started = client.call("POST", "/api/v1/auth/login", {"username": account.username,
                                                                      "password": NEW_PASSWORD})
    status2, _, _ = client.call("POST", "/api/v1/auth/mfa", {"challenge": started.get("challenge", ""), "code": code})
    elapsed = time.perf_counter() - started_at
    if (status, status2) != (200, 200):
        raise ApiBenchError(f"login of {account.username} answered {status}/{status2}")
    return elapsed


def _customer(i: int) -> dict[str, Any]:
    return {
        "type": "individual", "full_name": f"Bench Customer {i}", "date_of_birth": "1980-02-03",
        "email": f"bench{i}@example.org", "phone": "+44 7700 900123",
        "address": {"line1": "1 Bench Street", "city": "London", "country": "GB"},
        "portfolio": PORTFOLIO, "risk_rating": "low",
    }


def _concurrently(workers: list[Callable[[], list[float]]]) -> tuple[list[float], float]:
    """Run each worker in its own thread; all latencies, and the wall time."""
    results: list[list[float]] = [[] for _ in workers]
    failures: list[BaseException] = []
    barrier = threading.Barrier(len(workers) + 1)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = workers[index]()
        except BaseException as exc:  # reported below, in the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise ApiBenchError(f"a client failed: {type(failures[0]).__name__}: {failures[0]}")
    return [s for r in results for s in r], wall


Rounds = list[tuple[list[float], float]]  # per round: every latency, and the wall time


def _interleaved(api: Callable[[], tuple[list[float], float]], local: Callable[[], tuple[list[float], float]],
                 rounds: int) -> tuple[Rounds, Rounds]:
    """`rounds` runs of each side, alternating which goes first: a burst of load from
    elsewhere on the shared machine falls on both sides, not on one."""
    api_rounds: Rounds = []
    local_rounds: Rounds = []
    for n in range(rounds):
        sides = [(api, api_rounds), (local, local_rounds)]
        for run, into in sides if n % 2 == 0 else reversed(sides):
            into.append(run())
    return api_rounds, local_rounds


def _rate(rounds: Rounds) -> float:
    """Requests a second: the median over the rounds."""
    return median([len(latencies) / wall for latencies, wall in rounds])


def _figures(name: str, api: Rounds, local: Rounds) -> dict[str, Figure]:
    api_lat = [s for latencies, _ in api for s in latencies]
    local_lat = [s for latencies, _ in local for s in latencies]
    baseline = f"the same use case in-process, same threads (throughput: median of {len(api)} rounds, interleaved)"
    return {
        f"api_{name}_throughput": Figure(f"API masked {name}, 8 clients over TLS", _rate(api),
                                         _rate(local), "req/s", baseline, True,
                                         ratio_at_least(0.5) if name == "read" else None),
        f"api_{name}_median": Figure(f"API masked {name} median latency", median(api_lat) * 1000,
                                     median(local_lat) * 1000, "ms", baseline, False),
        f"api_{name}_p99": Figure(f"API masked {name} p99 latency", percentile(api_lat, 99) * 1000,
                                  percentile(local_lat, 99) * 1000, "ms", baseline, False),
    }


def measure_api(
    pg_admin_url: str,
    *,
    clients: int = 8,
    requests: int = 100,
    logins: int = 8,
    workers: int = 2,
    rounds: int = 3,
    progress: Progress = lambda _message: None,
) -> dict[str, Figure]:
    """Measure the customer API over TLS beside the in-process use cases (see the module).

    `requests` is per client and per operation. Raises ApiBenchError when the server
    or the instance cannot be set up. Everything made is removed afterwards.
    """
    folder = Path(tempfile.mkdtemp(prefix="strongroom-bench-api-"))
    instance = folder / "instance"
    try:
        with _database(pg_admin_url) as database_url:
            env = _env(instance, database_url)
            progress("api: strongroom init on a fresh PostgreSQL database")
            done = subprocess.run(_cli("init", "--json"), env=env, capture_output=True,  # nosec B603
                                  text=True, timeout=300, check=False)
            if done.returncode != 0:
                raise ApiBenchError("strongroom init failed")
            config = json.loads((instance / CONFIG_FILE).read_text())
            settings = Settings(instance=instance, database_url=database_url, keys_database_url=database_url,
                                blind_index_bits=int(config.get("blind_index_bits", 14)))
            made = _enrol(settings, clients + logins)
            port = _free_port()
            progress(f"api: strongroom serve --workers {workers}")
            with _server(instance, env, port, workers) as context:
                accounts = [_first_login(Client(port, context), *m) for m in made]
                users = accounts[:clients]
                sessions = [Client(port, context, token=a.token) for a in users]
                customers = []
                for i, client in enumerate(sessions):
                    status, headers, view = client.call("POST", "/api/v1/customers", _customer(i))
                    if status != 201:
                        raise ApiBenchError(f"creating a customer answered {status}")
                    customers.append(view["id"])

                def api_reads(client: Client, cid: str) -> Callable[[], list[float]]:
                    def work() -> list[float]:
                        samples = []
                        for _ in range(requests):
                            t0 = time.perf_counter()
                            status, _, _ = client.call("GET", f"/api/v1/customers/{cid}")
                            samples.append(time.perf_counter() - t0)
                            if status != 200:
                                raise ApiBenchError(f"a masked read answered {status}")
                        return samples
                    return work

                def api_updates(client: Client, cid: str) -> Callable[[], list[float]]:
                    def work() -> list[float]:
                        status, headers, _ = client.call("GET", f"/api/v1/customers/{cid}")
                        etag = headers.get("ETag") or headers.get("Etag") or '"1"'
                        samples = []
                        for n in range(requests):
                            t0 = time.perf_counter()
                            status, headers, _ = client.call(
                                "PATCH", f"/api/v1/customers/{cid}",
                                {"risk_rating": ("medium", "low")[n % 2]}, {"If-Match": etag})
                            samples.append(time.perf_counter() - t0)
                            if status != 200:
                                raise ApiBenchError(f"an update answered {status}")
                            etag = headers.get("ETag") or headers.get("Etag") or etag
                        return samples
                    return work

                # The in-process side runs beside the idle server, round by round with the API.
                with _in_process(settings, users, customers, requests) as (local_read, local_update):
                    progress(f"api: {clients} clients x {requests} masked reads over TLS and in-process, "
                             f"{rounds} rounds")
                    api_read, in_read = _interleaved(
                        lambda: _concurrently([api_reads(c, cid) for c, cid in zip(sessions, customers, strict=True)]),
                        local_read, rounds)
                    progress(f"api: {clients} clients x {requests} updates over TLS and in-process, {rounds} rounds")
                    api_update, in_update = _interleaved(
                        lambda: _concurrently([api_updates(c, cid)
                                               for c, cid in zip(sessions, customers, strict=True)]),
                        local_update, rounds)
                progress(f"api: {logins} logins with TOTP over TLS")
                login_times = [_login_seconds(Client(port, context), a) for a in accounts[clients:]]
                progress(f"api: 1 client x {requests} masked reads over TLS, one at a time")
                single_read, _ = _concurrently([api_reads(sessions[0], customers[0])])
                for client in sessions:
                    client.close()

            progress("api: the same masked read through the app in-process, profiled (issue 15 item 6)")
            parts = masked_read_profile({"instance": str(instance), "database_url": database_url,
                                         "keys_database_url": database_url}, users[0].token, customers[0], requests)
            for line in breakdown_lines(parts):
                progress(f"api:   {line}")
        hasher = Argon2PasswordHasher()
        hashed = hasher.hash(NEW_PASSWORD)
        verify_times = []
        for _ in range(max(3, logins)):
            t0 = time.perf_counter()
            hasher.verify(hashed, NEW_PASSWORD)
            verify_times.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    figures = {**_figures("read", api_read, in_read), **_figures("update", api_update, in_update)}
    # Issue 15 item 6: where a masked read's time goes (benchmarks/request_profile.py).
    in_app = "the same masked read through the app in-process (no socket, no TLS), 1 client"
    figures["api_read_single"] = Figure("API masked read over TLS, 1 client, median", median(single_read) * 1000,
                                        parts["in-app median (unprofiled)"], "ms", in_app, False)
    figures["api_read_auth"] = Figure("authentication per masked read (profiled)", parts["authentication"],
                                      parts["whole request in Flask"], "ms",
                                      "the whole masked read inside Flask (profiled)", False)
    figures["api_login_totp"] = Figure(
        "login + TOTP over TLS (argon2id t=3, m=64 MiB, p=4)", median(login_times) * 1000,
        median(verify_times) * 1000, "ms", "one argon2id verification in-process", False)
    return figures


@contextmanager
def _in_process(settings: Settings, users: list[Account], customers: list[str], requests: int
                ) -> Iterator[tuple[Callable[[], tuple[list[float], float]], Callable[[], tuple[list[float], float]]]]:
    """The same reads and updates called in-process from as many threads: one round of
    each per call of what this yields, on components built once."""
    built = build(settings, create_schema=False)
    try:
        service = CustomerService(built.app)
        actors = [Actor(staff_id=a.staff_id, username=a.username, roles=frozenset({"agent"}),
                        portfolios=frozenset({PORTFOLIO})) for a in users]

        def reads(actor: Actor, cid: str) -> Callable[[], list[float]]:
            def work() -> list[float]:
                samples = []
                with acting_as(RequestContext(actor_id=actor.staff_id, via="api")):
                    for _ in range(requests):
                        t0 = time.perf_counter()
                        service.read(actor, cid)
                        samples.append(time.perf_counter() - t0)
                return samples
            return work

        def updates(actor: Actor, cid: str) -> Callable[[], list[float]]:
            def work() -> list[float]:
                samples = []
                with acting_as(RequestContext(actor_id=actor.staff_id, via="api")):
                    version = int(service.read(actor, cid)["version"])
                    for n in range(requests):
                        t0 = time.perf_counter()
                        version = int(service.update(actor, cid, {"risk_rating": ("high", "low")[n % 2]},
                                                     version)["version"])
                        samples.append(time.perf_counter() - t0)
                return samples
            return work

        yield (lambda: _concurrently([reads(a, c) for a, c in zip(actors, customers, strict=True)]),
               lambda: _concurrently([updates(a, c) for a, c in zip(actors, customers, strict=True)]))
    finally:
        built.close()
