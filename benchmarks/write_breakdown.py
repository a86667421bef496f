"""Where a secured write's time goes: a cost breakdown from a profiled run (issue 15).

Registers customers through the API's use case (`CustomerService.create`: policy,
`register_customer`, and the access record of the view it returns) under cProfile,
then charges each stage the cumulative time of the functions that do it:

* key creation and wrapping: making a new subject's data keys and wrapping them
  with the KEK (`KeyRing._make_ahead`, `KeyRing.create_subject`), without the key
  store's commit, which has a row of its own;
* key store commit(s): `KeyStore.insert_new` / `insert_all_if_absent` (keys.sqlite
  on SQLite, the keys schema on PostgreSQL);
* sealing: `SubjectMapper.to_stored_event` (the events' AES-GCM parts and chain metadata);
* chain hashing: the row hash in Python on SQLite (`_chain_hash`); on PostgreSQL the
  insert function hashes in the server, inside "events insert and commit";
* read-model sealing: `ColumnSealer.seal`; blind indexes: keyed digests;
* read-model rows: the projection's SQL, without sealing and blind indexes;
* access record: `AccessLog.record` (sealing and its group commit);
* events insert and commit: the recorder's transaction, without the read model.

cProfile slows Python code more than it slows waiting on the disk or the server,
so the shares are a guide to where the time goes, not a measurement of speed (the
figures beside their baselines are that).
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable
from typing import Any

from application.context import RequestContext, acting_as
from application.customer_service import CustomerService
from application.security import Actor
from benchmarks.scratch import Scratch
from benchmarks.synthetic import Population

Progress = Callable[[str], None]
_ACTOR = Actor(staff_id="00000000-0000-0000-0000-00000000b0b0", username="bench-writer",
               roles=frozenset({"agent"}), portfolios=frozenset({"retail"}), session_id="bench-breakdown")

_ACCESS_LOG = "application/audit.py"


def _cum(stats: pstats.Stats, suffix: str, name: str, *, not_from: str | None = None) -> float:
    """Cumulative seconds in `name` (defined in a file ending `suffix`), leaving out
    the calls made from a file ending `not_from` (they belong to another stage)."""
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = 0.0
    for (filename, _, function), (_, _, _, cumulative, callers) in raw.items():
        if filename.endswith(suffix) and function == name:
            total += cumulative
            if not_from is not None:
                total -= sum(c[3] for (caller, _, _), c in callers.items() if caller.endswith(not_from))
    return total


def _stages(stats: pstats.Stats) -> tuple[dict[str, float], float]:
    """Seconds per stage, nested stages taken out of the ones containing them."""
    make_ahead = _cum(stats, "crypto/keyring.py", "_make_ahead")
    create_subject = _cum(stats, "crypto/keyring.py", "create_subject")
    key_commit = (_cum(stats, "crypto/keystore.py", "insert_new")
                  + _cum(stats, "crypto/keystore.py", "insert_all_if_absent"))
    seal_events = _cum(stats, "crypto/envelope.py", "to_stored_event", not_from=_ACCESS_LOG)
    chain = _cum(stats, "eventstore/sqlite.py", "_chain_hash")
    column_seal = (_cum(stats, "infrastructure/readmodel.py", "seal")
                   + _cum(stats, "infrastructure/readmodel.py", "seal_row"))
    blind = (_cum(stats, "infrastructure/readmodel.py", "search_digests")
             + _cum(stats, "crypto/blind_index.py", "full_digest"))
    projection = _cum(stats, "infrastructure/projection.py", "write_with_events")
    access = _cum(stats, _ACCESS_LOG, "record")
    inserts = (_cum(stats, "eventstore/sqlite.py", "insert_events", not_from=_ACCESS_LOG)
               + _cum(stats, "eventstore/postgres.py", "insert_events", not_from=_ACCESS_LOG))
    stages = {
        "key creation and wrapping": max(0.0, make_ahead + create_subject - key_commit),
        "key store commit(s)": key_commit,
        "sealing (events)": max(0.0, seal_events - create_subject),
        "chain hashing (SQLite: Python; PostgreSQL: in the server)": chain,
        "read-model sealing": column_seal,
        "blind indexes": blind,
        "read-model rows (SQL)": max(0.0, projection - column_seal - blind),
        "access record (sealed, group commit)": access,
        "events insert and commit": max(0.0, inserts - projection - chain),
    }
    return stages, _cum(stats, "application/customer_service.py", "create")


def measure_breakdown(scratch: Scratch, customers: int, progress: Progress) -> list[dict[str, Any]]:
    """Milliseconds per write and share of the whole for each stage (rows in table order)."""
    built = scratch.components(blind_index_bits=14)
    try:
        service = CustomerService(built.app, policy=built.policy)
        population = Population()
        with acting_as(RequestContext(actor_id=_ACTOR.staff_id, via="api", session_id=_ACTOR.session_id)):
            for n in range(10):  # connections, statements and the system key first
                service.create(_ACTOR, {**population.fields(n), "portfolio": "retail"})
            profile = cProfile.Profile()
            profile.enable()
            for n in range(10, 10 + customers):
                service.create(_ACTOR, {**population.fields(n), "portfolio": "retail"})
            profile.disable()
    finally:
        scratch.release(built)
    stages, total = _stages(pstats.Stats(profile))
    stages["other (policy, domain, masking, profiler)"] = max(0.0, total - sum(stages.values()))
    progress(f"write breakdown: {customers} profiled writes, {total / customers * 1000:.2f} ms each")
    return [{"stage": stage, "ms_per_write": seconds / customers * 1000,
             "share": seconds / total if total else 0.0} for stage, seconds in stages.items()]


def breakdown_table(title: str, rows: list[dict[str, Any]]) -> Any:
    """The breakdown as a rich table (ms per write and share), for `print_tables`."""
    from rich.table import Table

    table = Table(title=f"{title} (CustomerService.create under cProfile)", title_justify="left")
    table.add_column("stage")
    table.add_column("ms per write", justify="right")
    table.add_column("share", justify="right")
    for row in rows:
        table.add_row(row["stage"], f"{row['ms_per_write']:.2f}", f"{row['share']:.0%}")
    return table
