"""Run the chosen suites in throwaway stores and present the figures.

Progress goes to the `progress` callback (stderr, in the command), results to
stdout: a table per store, or one JSON document. Goals are printed, not asserted:
the machine may be shared and noisy, so a figure is a median of repeats and only its
ratio to a baseline taken in the same run means anything.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from benchmarks import SUITES
from benchmarks.audit import run_audit
from benchmarks.figures import Figure
from benchmarks.measures import BenchmarkError, Sizes, StoreResult, run_store
from benchmarks.recovery import measure_recovery
from benchmarks.scratch import Scratch, ScratchError

# measure_recovery returns its figures in this order.
RECOVERY_FIGURE_NAMES = ("restore", "incremental_backup", "incremental_backup_per_event",
                         "incremental_backup_fixed", "drill_rto", "restore_jobs")

Progress = Callable[[str], None]


class StoreFailed(Exception):
    """A suite stopped on one store; `error` is the ScratchError (the environment) or
    BenchmarkError (a measurement that would be meaningless) that stopped it."""

    def __init__(self, store: str, error: Exception) -> None:
        super().__init__(f"{store}: {error}")
        self.store, self.error = store, error


@dataclass
class BenchRun:
    """Everything one `strongroom bench` run measured, with the sizes it used."""

    sizes: Sizes
    api_sizes: dict[str, int]
    recovery_sizes: dict[str, int]
    chosen: set[str]
    results: dict[str, StoreResult] = field(default_factory=dict)  # core, per store
    suites: dict[str, dict[str, dict[str, Figure]]] = field(default_factory=dict)  # suite -> store -> figures
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    fault_sizes: dict[str, int] = field(default_factory=dict)
    privacy_sizes: dict[str, int] = field(default_factory=dict)  # issue 13
    scaling_sizes: dict[str, int] = field(default_factory=dict)  # issue 15, items 7 and 8
    scaling_setup: dict[str, Any] = field(default_factory=dict)


def run(bench: BenchRun, stores: list[str], pg_url: str, progress: Progress,
        warn: Callable[[str], None]) -> None:
    """Measure the chosen suites on each store, filling `bench`; raises StoreFailed."""
    load_at_start = os.getloadavg()[0]
    scratches = [Scratch(kind, pg_url) for kind in stores]
    # The api suite makes its own PostgreSQL database; it must answer before any work too.
    checks = list(scratches)
    if {"api", "faults", "scaling"} & bench.chosen and "postgres" not in stores:
        checks.append(Scratch("postgres", pg_url))
    kind = stores[0]
    try:
        # Every store answers before any work starts, so an unreachable PostgreSQL
        # fails at once rather than after the SQLite figures.
        for scratch in checks:
            kind = scratch.store
            bench.versions[kind] = scratch.version()
        for scratch in scratches:
            kind = scratch.store
            progress(f"{kind}: {bench.versions[kind]}, in {scratch.folder}")
            if "core" in bench.chosen:
                bench.results[kind] = run_store(scratch, bench.sizes, progress)
            if "audit" in bench.chosen:
                bench.suites.setdefault("audit", {})[kind] = run_audit(scratch, bench.sizes, progress)
            if "recovery" in bench.chosen:
                figures = measure_recovery(scratch, progress, **bench.recovery_sizes)
                bench.suites.setdefault("recovery", {})[kind] = dict(
                    zip(RECOVERY_FIGURE_NAMES, figures, strict=True))
            if "monitor" in bench.chosen:
                # Only here: it runs the monitor (issue 12) in a thread of this process.
                from benchmarks.monitor_bench import run_monitor

                bench.suites.setdefault("monitor", {})[kind] = run_monitor(scratch, bench.sizes, progress)
            if "rebuild" in bench.chosen:
                # Issue 15: rebuild vs the same projection unprotected, and --jobs 2 vs 1.
                from benchmarks.rebuild_bench import measure_rebuilds
                bench.suites.setdefault("rebuild", {})[kind] = measure_rebuilds(scratch, bench.sizes, progress)
            if "privacy" in bench.chosen:
                # Issue 13: every figure of benchmarks/privacy.py FIGURES (the access
                # export and the retention run), in one dictionary per store.
                from benchmarks.privacy import run_privacy

                bench.suites.setdefault("privacy", {})[kind] = run_privacy(
                    scratch, bench.sizes, progress, customers=bench.privacy_sizes.get("customers", 100_000))
        if "api" in bench.chosen:
            # Only here: it starts the real server through the `strongroom` command.
            from benchmarks.api_bench import ApiBenchError, measure_api

            kind = "postgres"
            try:
                bench.suites["api"] = {"postgres": measure_api(pg_url, progress=progress, **bench.api_sizes)}
            except ApiBenchError as exc:  # the server or instance could not be set up
                raise ScratchError(str(exc)) from exc
        if "scaling" in bench.chosen:
            # Issue 15, items 7 and 8: the chain's ceiling and lookup at N, PostgreSQL only.
            from benchmarks.scaling import run_scaling

            kind = "postgres"
            pg = next(scratch for scratch in checks if scratch.store == "postgres")
            figures, bench.scaling_setup = run_scaling(pg, bench.sizes, progress, **bench.scaling_sizes)
            bench.suites["scaling"] = {"postgres": figures}
        if "faults" in bench.chosen:
            # Only here: it makes a PostgreSQL cluster of its own, and crashes it.
            from benchmarks.api_bench import ApiBenchError
            from benchmarks.faults import measure_faults

            kind = "postgres"
            try:
                bench.suites["faults"] = {"postgres": measure_faults(progress=progress, **bench.fault_sizes)}
            except ApiBenchError as exc:
                raise ScratchError(str(exc)) from exc
    except (ScratchError, BenchmarkError) as exc:
        raise StoreFailed(kind, exc) from exc
    finally:
        for scratch in checks:
            for problem in scratch.close():
                warn(f"{scratch.store}: {problem}")
    bench.machine = _machine(bench.versions, load_at_start)


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


# -- presenting -----------------------------------------------------------------------------


def as_document(bench: BenchRun) -> dict[str, Any]:
    """The whole run as one JSON document (`strongroom bench --json`)."""
    document: dict[str, Any] = {
        kind: {name: figure.as_json() for name, figure in result.figures.items()}
        for kind, result in bench.results.items()
    }
    for name in SUITES[1:]:
        if name in bench.suites:
            per_store = bench.suites[name]
            if name in ("api", "faults", "scaling"):  # one store only: its figures directly
                document[name] = {k: f.as_json() for k, f in per_store["postgres"].items()}
            else:
                document[name] = {kind: {k: f.as_json() for k, f in figures.items()}
                                  for kind, figures in per_store.items()}
    if bench.results or bench.chosen == {"core"}:
        document["setup"] = {kind: result.setup for kind, result in bench.results.items()}
    document["sizes"] = vars(bench.sizes)
    if "api" in bench.chosen:
        document["sizes"] = {**document["sizes"], "api": bench.api_sizes}
    if "recovery" in bench.chosen:
        document["sizes"] = {**document["sizes"], "recovery": bench.recovery_sizes}
    if "faults" in bench.chosen:
        document["sizes"] = {**document["sizes"], "faults": bench.fault_sizes}
    if "scaling" in bench.chosen:
        document["sizes"] = {**document["sizes"], "scaling": bench.scaling_sizes}
        document["setup"] = {**document.get("setup", {}), "scaling": bench.scaling_setup}
    document["machine"] = bench.machine
    return document


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


def print_tables(bench: BenchRun) -> None:
    """A table per store and suite, each figure beside its baseline and their ratio."""
    from rich.console import Console

    console = Console(width=150)
    machine, sizes = bench.machine, bench.sizes
    for store, result in bench.results.items():
        console.print(_figure_table(f"{store} ({machine['stores'][store]})", result.figures))
        setup = result.setup
        console.print(
            f"  {setup['customers_written']} customers per write repeat, {setup['events_rebuilt']} events"
            f" rebuilt; lookup table filled with {setup['lookup_rows']:,} rows"
            f" ({setup['blind_index_bits']}-bit blind index) in {setup['fill_seconds']:.1f} s"
            f" ({setup['fill_rows_per_second']:,.0f} rows/s)",
            highlight=False,
        )
        if setup.get("write_breakdown"):  # issue 15: benchmarks/write_breakdown.py
            from benchmarks.write_breakdown import breakdown_table

            console.print(breakdown_table(f"{store}: where a secured write's time goes", setup["write_breakdown"]))
    if bench.results:
        _print_baselines(console, next(iter(bench.results.values())).figures.values())
    for suite, per_store in bench.suites.items():
        for store, figures in per_store.items():
            console.print(_figure_table(f"{suite} ({machine['stores'][store]})", figures))
        _print_baselines(console, [f for figures in per_store.values() for f in figures.values()])
    if bench.scaling_setup:  # issue 15, item 8
        setup = bench.scaling_setup
        console.print(f"  lookup at N: {setup['customers']:,} customers COPY-filled ({setup['blind_index_bits']}-bit"
                      f" blind index) in {setup['fill_seconds']:.1f} s"
                      f" ({setup['fill_customers_per_second']:,.0f} customers/s)", highlight=False)
    repeated = bool(bench.results) or bool({"audit", "privacy", "scaling", "rebuild"} & set(bench.suites))  # recovery and api time single runs
    console.print(
        "ratio: above 1 is better than the baseline."
        + (f" Medians of {sizes.repeats} repeats." if repeated else "")
        + f" {machine['cpu_count']} CPUs, load {machine['load_average_1m']['start']}"
        f" -> {machine['load_average_1m']['end']} (1 min),"
        f" Python {machine['python']}, eventsourcing {machine['eventsourcing']},"
        f" cryptography {machine['cryptography']}.",
        highlight=False, soft_wrap=True,
    )
