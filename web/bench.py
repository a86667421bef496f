"""`strongroom bench`: each figure beside its baseline, measured in the same run.

Everything runs in throwaway stores (a temporary folder; on PostgreSQL, databases
created for the run and dropped after), never in the operator's instance. Progress
goes to stderr, results to stdout: a table per store, or one JSON object with
`--json`. Goals are printed, not asserted: the machine may be shared and noisy, so
a figure is a median of repeats and only its ratio to a baseline taken in the same
run means anything. See docs/benchmarks.md for what each figure is.

`--suite` picks what is measured: `core` (writes, rebuild, lookups per store, the
default), `api` (the customer API over TLS beside the in-process use cases, always on
PostgreSQL), `audit` (audit verify and access records, per store), `recovery` (restore,
incremental backup, drill RTO, per store), or `all`. The suites beyond `core` are
imported only when asked for, so `strongroom bench --help` stays fast.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import replace
from importlib import metadata
from typing import Any

import click

from application.context import acting_as
from infrastructure.benchmarks.figures import Figure
from infrastructure.benchmarks.measures import BenchmarkError, Sizes, StoreResult, run_store
from infrastructure.benchmarks.scratch import STORES, Scratch, ScratchError

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SUITES = ("core", "api", "audit", "recovery")
# measure_recovery returns its figures in this order.
RECOVERY_FIGURE_NAMES = ("restore", "incremental_backup", "drill_rto")


def _machine(versions: dict[str, str], load_at_start: float) -> dict[str, Any]:
    from cryptography.hazmat.backends.openssl.backend import backend

    return {
        "cpu_count": os.cpu_count(),
        # Other work on the machine shows here: a load above the CPU count means the
        # run shared its cores, and tail latencies (p99) suffer first.
        "load_average_1m": {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)},
        "platform": platform.platform(),
        "python": platform.python_version(),
        "eventsourcing": metadata.version("eventsourcing"),
        "cryptography": f"{metadata.version('cryptography')} ({backend.openssl_version_text()})",
        "stores": versions,
    }


def _number(value: float) -> str:
    """Three significant figures at most, thousands separated: noise is in the third."""
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _goal(figure: Figure) -> str:
    if figure.goal is None:
        return ""
    return f"{figure.goal.text} ({'met' if figure.met else 'NOT met'})"


def _figure_table(title: str, figures: dict[str, Figure]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column, justify in (("figure", "left"), ("value", "right"), ("baseline", "right"),
                            ("ratio", "right"), ("goal", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for figure in figures.values():
        table.add_row(
            figure.label, f"{_number(figure.value)} {figure.unit}",
            f"{_number(figure.baseline)} {figure.unit}", f"{figure.ratio:.2g}", _goal(figure),
        )
    return table


def _print_baselines(console: Any, figures: Any) -> None:
    console.print("baselines (same run, same store):", highlight=False)
    for baseline_is in dict.fromkeys(figure.baseline_is for figure in figures):
        console.print(f"  {baseline_is}", highlight=False)


def _print_tables(results: dict[str, StoreResult], machine: dict[str, Any], sizes: Sizes,
                  suites: dict[str, dict[str, dict[str, Figure]]] | None = None) -> None:
    from rich.console import Console

    console = Console(width=150)
    for store, result in results.items():
        console.print(_figure_table(f"{store} ({machine['stores'][store]})", result.figures))
        setup = result.setup
        console.print(
            f"  {setup['customers_written']} customers per write repeat, {setup['events_rebuilt']} events"
            f" rebuilt; lookup table filled with {setup['lookup_rows']:,} rows"
            f" ({setup['blind_index_bits']}-bit blind index) in {setup['fill_seconds']:.1f} s"
            f" ({setup['fill_rows_per_second']:,.0f} rows/s)",
            highlight=False,
        )
    if results:
        _print_baselines(console, next(iter(results.values())).figures.values())
    for suite, per_store in (suites or {}).items():
        for store, figures in per_store.items():
            console.print(_figure_table(f"{suite} ({machine['stores'][store]})", figures))
        _print_baselines(console, [f for figures in per_store.values() for f in figures.values()])
    repeated = bool(results) or "audit" in (suites or {})  # recovery and api time single runs
    console.print(
        "ratio: above 1 is better than the baseline."
        + (f" Medians of {sizes.repeats} repeats." if repeated else "")
        + f" {machine['cpu_count']} CPUs, load {machine['load_average_1m']['start']}"
        f" -> {machine['load_average_1m']['end']} (1 min),"
        f" Python {machine['python']}, eventsourcing {machine['eventsourcing']},"
        f" cryptography {machine['cryptography']}.",
        highlight=False, soft_wrap=True,
    )


def _run_audit(scratch: Scratch, sizes: Sizes, progress: Any) -> dict[str, Figure] | None:
    """The audit figures, or None when this tree has no audit benchmark module."""
    try:
        from infrastructure.benchmarks.audit import run_audit
    except ImportError:
        return None
    return run_audit(scratch, sizes, progress)


@click.command()
@click.option("--quick", is_flag=True, help="Smaller sizes: 300 customers, 3 repeats, 20,000 lookup rows;"
              " api: 20 requests per client, 3 logins; recovery: 20,000 events.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--store", type=click.Choice([*STORES, "both"]), default="both", show_default=True,
              help="Which store to measure (the api suite always runs on PostgreSQL).")
@click.option("--suite", type=click.Choice([*SUITES, "all"]), default="core", show_default=True,
              help="What to measure: core (writes, rebuild, lookups), api, audit, recovery, or all.")
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
def bench_command(quick: bool, as_json: bool, store: str, suite: str, pg_url: str,
                  api_clients: int | None, api_requests: int | None, api_logins: int | None,
                  recovery_events: int | None, recovery_increment: int | None,
                  **overrides: int | None) -> None:
    """Measure each figure beside its baseline (writes, rebuild, blind-index lookup;
    with --suite also the customer API, audit and recovery).

    Runs in throwaway stores, never the instance. Takes about a minute with --quick
    and several minutes without; progress is printed to stderr.
    """
    from web.cli import operator_context

    sizes = Sizes.quick() if quick else Sizes.full()
    sizes = replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    api_sizes = {"clients": 8, "requests": 20, "logins": 3} if quick else {"clients": 8, "requests": 100, "logins": 8}
    api_sizes.update({k: v for k, v in (("clients", api_clients), ("requests", api_requests),
                                        ("logins", api_logins)) if v is not None})
    recovery_sizes = {"events": 20_000 if quick else 200_000, "increment": 1_000}
    recovery_sizes.update({k: v for k, v in (("events", recovery_events), ("increment", recovery_increment))
                           if v is not None})
    chosen = set(SUITES) if suite == "all" else {suite}
    stores = list(STORES) if store == "both" else [store]
    began = time.perf_counter()
    load_at_start = os.getloadavg()[0]

    def progress(message: str) -> None:
        click.echo(f"[{time.perf_counter() - began:6.1f} s] {message}", err=True)

    results: dict[str, StoreResult] = {}
    suites: dict[str, dict[str, dict[str, Figure]]] = {}
    unavailable: dict[str, str] = {}
    versions: dict[str, str] = {}
    scratches = [Scratch(kind, pg_url) for kind in stores]
    # The api suite makes its own PostgreSQL database; it must answer before any work too.
    checks = list(scratches)
    if "api" in chosen and "postgres" not in stores:
        checks.append(Scratch("postgres", pg_url))
    kind = stores[0]
    try:
        with acting_as(operator_context("benchmark")):
            # Every store answers before any work starts, so an unreachable PostgreSQL
            # fails at once rather than after the SQLite figures.
            for scratch in checks:
                kind = scratch.store
                versions[kind] = scratch.version()
            for scratch in scratches:
                kind = scratch.store
                progress(f"{kind}: {versions[kind]}, in {scratch.folder}")
                if "core" in chosen:
                    results[kind] = run_store(scratch, sizes, progress)
                if "audit" in chosen and "audit" not in unavailable:
                    figures = _run_audit(scratch, sizes, progress)
                    if figures is None:
                        unavailable["audit"] = "infrastructure.benchmarks.audit is not in this tree"
                        click.echo("warning: audit: suite unavailable (no infrastructure.benchmarks.audit)",
                                   err=True)
                    else:
                        suites.setdefault("audit", {})[kind] = figures
                if "recovery" in chosen:
                    from infrastructure.benchmarks.recovery import measure_recovery

                    figures_list = measure_recovery(scratch, progress, **recovery_sizes)
                    suites.setdefault("recovery", {})[kind] = dict(
                        zip(RECOVERY_FIGURE_NAMES, figures_list, strict=True))
            if "api" in chosen:
                from infrastructure.benchmarks.api_bench import ApiBenchError, measure_api

                kind = "postgres"
                try:
                    suites["api"] = {"postgres": measure_api(pg_url, progress=progress, **api_sizes)}
                except ApiBenchError as exc:  # the server or instance could not be set up
                    raise ScratchError(str(exc)) from exc
    except ScratchError as exc:  # the environment, not the code: exit 2 as for configuration
        click.echo(f"error: {kind}: {exc}", err=True)
        sys.exit(2)
    except BenchmarkError as exc:  # a measurement would be meaningless: exit 1
        click.echo(f"error: {kind}: {exc}", err=True)
        sys.exit(1)
    finally:
        for scratch in checks:
            for problem in scratch.close():
                click.echo(f"warning: {scratch.store}: {problem}", err=True)
    progress("done")
    machine = _machine(versions, load_at_start)
    if as_json:
        document: dict[str, Any] = {
            kind: {name: figure.as_json() for name, figure in result.figures.items()}
            for kind, result in results.items()
        }
        for name in ("api", "audit", "recovery"):
            if name in suites:
                per_store = suites[name]
                if name == "api":  # one store only: its figures directly
                    document[name] = {k: f.as_json() for k, f in per_store["postgres"].items()}
                else:
                    document[name] = {kind: {k: f.as_json() for k, f in figures.items()}
                                      for kind, figures in per_store.items()}
            elif name in unavailable:
                document[name] = {"unavailable": unavailable[name]}
        if results or suite == "core":
            document["setup"] = {kind: result.setup for kind, result in results.items()}
        document["sizes"] = vars(sizes)
        if "api" in chosen:
            document["sizes"] = {**document["sizes"], "api": api_sizes}
        if "recovery" in chosen:
            document["sizes"] = {**document["sizes"], "recovery": recovery_sizes}
        document["machine"] = machine
        click.echo(json.dumps(document, indent=2))
    else:
        _print_tables(results, machine, sizes, suites)
