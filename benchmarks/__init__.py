"""`strongroom bench`'s suites: each figure measured beside its baseline in the same run.

Not product code: the command (`cli/bench.py`) imports this package only when it
runs. `scratch` makes throwaway stores (never the operator's instance), `synthetic`
makes distinct fictitious customers, `measures` times the core figures (writes,
rebuild, lookups), `audit`, `recovery`, `api_bench`, `faults`, `monitor_bench`, `privacy`, `scaling` and `rebuild_bench` (issue 15: rebuild vs unprotected, --jobs 2 vs 1) the other suites, `figures`
holds what a figure is, and `runner` runs the chosen suites and prints them.
`docs/benchmarks.md` explains each figure and why its baseline is the fair one.
"""

STORES = ("sqlite", "postgres")
SUITES = ("core", "api", "audit", "recovery", "faults", "monitor", "privacy", "scaling", "rebuild")
