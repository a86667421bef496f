"""`strongroom bench`: each figure beside its baseline, measured in the same run.

Everything runs in throwaway stores (a temporary folder; on PostgreSQL, databases
created for the run and dropped after), never in the operator's instance. `--suite`
picks what is measured: `core` (writes, rebuild, lookups per store, the default),
`api` (the customer API over TLS beside the in-process use cases, always on
PostgreSQL), `audit` (audit verify and access records, per store), `recovery`
(restore, incremental backup, drill RTO, per store), `faults` (the API while a
PostgreSQL cluster of its own is crashed and restarted), `monitor` (event-to-alert latency,
throughput with the monitor, catch-up; per store), `privacy` (the data-subject
access export, per store), `scaling` (writes/s through the single chain at 1 to 16
clients, and email lookup at `--customers` rows, COPY-filled; PostgreSQL), or `all`. The suites live in
the top-level `benchmarks` package, imported only when the command runs, so
`strongroom --help` stays fast. See docs/benchmarks.md for what each figure is.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import click

from application.context import acting_as
from benchmarks import (  # two names only: the suites themselves load when the command runs
    STORES,
    SUITES,
)
from cli.context import EXIT_CHECK_FAILED, EXIT_USAGE, fail, operator_context

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@click.command("bench")
@click.option("--quick", is_flag=True, help="Smaller sizes: 300 customers, 3 repeats, 20,000 lookup rows;"
              " api: 20 requests per client, 3 logins; recovery: 20,000 events.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--store", type=click.Choice([*STORES, "both"]), default="both", show_default=True,
              help="Which store to measure (the api suite always runs on PostgreSQL).")
@click.option("--suite", type=click.Choice([*SUITES, "all"]), default="core", show_default=True,
              help="What to measure: core (writes, rebuild, lookups), api, audit, recovery, faults, monitor, "
                   "privacy, scaling, rebuild (issue 15: vs unprotected, --jobs 2 vs 1), or all.")
@click.option("--pg-url", envvar="STRONGROOM_BENCH_PG_URL", default=DEFAULT_PG_ADMIN_URL,
              show_default=True,
              help="PostgreSQL admin database; throwaway sr_bench_* databases are made beside it.")
# Sizes, for tests and experiments; the defaults are what docs/benchmarks.md reports.
@click.option("--customers", type=click.IntRange(min=1), hidden=True)
@click.option("--repeats", type=click.IntRange(min=1), hidden=True)
@click.option("--lookup-rows", type=click.IntRange(min=1), hidden=True)
@click.option("--lookups", type=click.IntRange(min=1), hidden=True)
@click.option("--absent", type=click.IntRange(min=1), hidden=True)
@click.option("--api-clients", type=click.IntRange(min=1), hidden=True)
@click.option("--api-requests", type=click.IntRange(min=1), hidden=True)
@click.option("--api-logins", type=click.IntRange(min=1), hidden=True)
@click.option("--recovery-events", type=click.IntRange(min=1), hidden=True)
@click.option("--recovery-increment", type=click.IntRange(min=1), hidden=True)
@click.option("--fault-clients", type=click.IntRange(min=1), hidden=True)
@click.option("--outage-seconds", type=click.IntRange(min=1), hidden=True)
@click.option("--retention-customers", type=click.IntRange(min=10), hidden=True)
@click.option("--chain-writes", type=click.IntRange(min=16), hidden=True)  # scaling: writes per round
def bench_command(quick: bool, as_json: bool, store: str, suite: str, pg_url: str,
                  api_clients: int | None, api_requests: int | None, api_logins: int | None,
                  recovery_events: int | None, recovery_increment: int | None,
                  fault_clients: int | None, outage_seconds: int | None, retention_customers: int | None,
                  chain_writes: int | None,
                  **overrides: int | None) -> None:
    """Measure each figure beside its baseline (writes, rebuild, blind-index lookup;
    with --suite also the customer API, audit and recovery).

    Runs in throwaway stores, never the instance. Takes about a minute with --quick
    and several minutes without; progress is printed to stderr.
    """
    from benchmarks.measures import BenchmarkError, Sizes
    from benchmarks.runner import BenchRun, StoreFailed, as_document, print_tables, run

    sizes = Sizes.quick() if quick else Sizes.full()
    sizes = replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    api_sizes = {"clients": 8, "requests": 20, "logins": 3} if quick else {"clients": 8, "requests": 100, "logins": 8}
    api_sizes.update({k: v for k, v in (("clients", api_clients), ("requests", api_requests),
                                        ("logins", api_logins)) if v is not None})
    recovery_sizes = {"events": 20_000 if quick else 200_000, "increment": 1_000}
    recovery_sizes.update({k: v for k, v in (("events", recovery_events), ("increment", recovery_increment))
                           if v is not None})
    fault_sizes = {"clients": fault_clients or 8, "outage_seconds": outage_seconds or (3 if quick else 10)}
    bench = BenchRun(sizes, api_sizes, recovery_sizes, chosen=set(SUITES) if suite == "all" else {suite},
                     fault_sizes=fault_sizes, privacy_sizes={"customers": retention_customers or (2_000 if quick else 100_000)})
    # Issue 15: with --suite scaling, --customers is the lookup table's size
    # (`strongroom bench --suite scaling --customers 1000000`: lookup at a million).
    bench.scaling_sizes = {"customers": overrides["customers"] or (20_000 if quick else 1_000_000),
                           "writes": chain_writes or (160 if quick else 480)}
    began = time.perf_counter()

    def progress(message: str) -> None:
        click.echo(f"[{time.perf_counter() - began:6.1f} s] {message}", err=True)

    def warn(message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    try:
        with acting_as(operator_context("benchmark")):
            run(bench, list(STORES) if store == "both" else [store], pg_url, progress, warn)
    except StoreFailed as failed:
        # A measurement that would be meaningless fails the check (1); the environment
        # (an unreachable PostgreSQL, a server that would not start) is configuration (2).
        fail(str(failed), EXIT_CHECK_FAILED if isinstance(failed.error, BenchmarkError) else EXIT_USAGE)
    progress("done")
    if as_json:
        click.echo(json.dumps(as_document(bench), indent=2))
    else:
        print_tables(bench)
