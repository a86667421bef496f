"""`strongroom bench`: each figure beside its baseline, measured in the same run.

Everything runs in throwaway stores (a temporary folder; on PostgreSQL, databases
created for the run and dropped after), never in the operator's instance. Progress
goes to stderr, results to stdout: a table per store, or one JSON object with
`--json`. Goals are printed, not asserted: the machine may be shared and noisy, so
a figure is a median of repeats and only its ratio to a baseline taken in the same
run means anything. See docs/benchmarks.md for what each figure is.
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


def _print_tables(results: dict[str, StoreResult], machine: dict[str, Any], sizes: Sizes) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    for store, result in results.items():
        table = Table(title=f"{store} ({machine['stores'][store]})", title_justify="left")
        for column, justify in (("figure", "left"), ("value", "right"), ("baseline", "right"),
                                ("ratio", "right"), ("goal", "left")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for figure in result.figures.values():
            table.add_row(
                figure.label, f"{_number(figure.value)} {figure.unit}",
                f"{_number(figure.baseline)} {figure.unit}", f"{figure.ratio:.2g}", _goal(figure),
            )
        console.print(table)
        setup = result.setup
        console.print(
            f"  {setup['customers_written']} customers per write repeat, {setup['events_rebuilt']} events"
            f" rebuilt; lookup table filled with {setup['lookup_rows']:,} rows"
            f" ({setup['blind_index_bits']}-bit blind index) in {setup['fill_seconds']:.1f} s"
            f" ({setup['fill_rows_per_second']:,.0f} rows/s)",
            highlight=False,
        )
    figures = next(iter(results.values())).figures.values()
    console.print("baselines (same run, same store):", highlight=False)
    for baseline_is in dict.fromkeys(figure.baseline_is for figure in figures):
        console.print(f"  {baseline_is}", highlight=False)
    console.print(
        f"ratio: above 1 is better than the baseline. Medians of {sizes.repeats} repeats."
        f" {machine['cpu_count']} CPUs, load {machine['load_average_1m']['start']}"
        f" -> {machine['load_average_1m']['end']} (1 min),"
        f" Python {machine['python']}, eventsourcing {machine['eventsourcing']},"
        f" cryptography {machine['cryptography']}.",
        highlight=False, soft_wrap=True,
    )


@click.command()
@click.option("--quick", is_flag=True, help="Smaller sizes: 300 customers, 3 repeats, 20,000 lookup rows.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--store", type=click.Choice([*STORES, "both"]), default="both", show_default=True,
              help="Which store to measure.")
@click.option("--pg-url", envvar="STRONGROOM_BENCH_PG_URL", default=DEFAULT_PG_ADMIN_URL,
              show_default=True,
              help="PostgreSQL admin database; throwaway sr_bench_* databases are made beside it.")
# Sizes, for tests and experiments; the defaults are what docs/benchmarks.md reports.
@click.option("--customers", type=click.IntRange(min=1), hidden=True)
@click.option("--repeats", type=click.IntRange(min=1), hidden=True)
@click.option("--lookup-rows", type=click.IntRange(min=1), hidden=True)
@click.option("--lookups", type=click.IntRange(min=1), hidden=True)
@click.option("--absent", type=click.IntRange(min=1), hidden=True)
def bench_command(quick: bool, as_json: bool, store: str, pg_url: str, **overrides: int | None) -> None:
    """Measure each figure beside its baseline (writes, rebuild, blind-index lookup).

    Runs in throwaway stores, never the instance. Takes about a minute with --quick
    and several minutes without; progress is printed to stderr.
    """
    from web.cli import operator_context

    sizes = Sizes.quick() if quick else Sizes.full()
    sizes = replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    stores = list(STORES) if store == "both" else [store]
    began = time.perf_counter()
    load_at_start = os.getloadavg()[0]

    def progress(message: str) -> None:
        click.echo(f"[{time.perf_counter() - began:6.1f} s] {message}", err=True)

    results: dict[str, StoreResult] = {}
    versions: dict[str, str] = {}
    scratches = [Scratch(kind, pg_url) for kind in stores]
    kind = stores[0]
    try:
        with acting_as(operator_context("benchmark")):
            # Every store answers before any work starts, so an unreachable PostgreSQL
            # fails at once rather than after the SQLite figures.
            for scratch in scratches:
                kind = scratch.store
                versions[kind] = scratch.version()
            for scratch in scratches:
                kind = scratch.store
                progress(f"{kind}: {versions[kind]}, in {scratch.folder}")
                results[kind] = run_store(scratch, sizes, progress)
    except ScratchError as exc:  # the environment, not the code: exit 2 as for configuration
        click.echo(f"error: {kind}: {exc}", err=True)
        sys.exit(2)
    except BenchmarkError as exc:  # a measurement would be meaningless: exit 1
        click.echo(f"error: {kind}: {exc}", err=True)
        sys.exit(1)
    finally:
        for scratch in scratches:
            for problem in scratch.close():
                click.echo(f"warning: {scratch.store}: {problem}", err=True)
    progress("done")
    machine = _machine(versions, load_at_start)
    if as_json:
        document: dict[str, Any] = {
            kind: {name: figure.as_json() for name, figure in result.figures.items()}
            for kind, result in results.items()
        }
        document["setup"] = {kind: result.setup for kind, result in results.items()}
        document["sizes"] = vars(sizes)
        document["machine"] = machine
        click.echo(json.dumps(document, indent=2))
    else:
        _print_tables(results, machine, sizes)
