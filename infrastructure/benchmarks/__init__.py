"""`strongroom bench`: each figure measured beside its baseline in the same run.

`scratch` makes throwaway stores (never the operator's instance), `synthetic` makes
distinct fictitious customers, `measures` times the three figures, and `figures`
holds what a figure is. The command itself (`web/bench.py`) only parses options and
prints; `docs/benchmarks.md` explains each figure and why its baseline is the fair one.
"""
