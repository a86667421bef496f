"""`backup drill` (R4.3): prove that the newest backup restores to a usable store.

Verify the target, restore its newest backup into a scratch SQLite store (keys
too, under the erasure ledger), rebuild the read models there, and compare them
with the live system at the same position. Read-model columns holding personal
data are sealed with random nonces, so ciphertext never compares equal: the
checksums are over the opened, normalised content (and the clear columns, blind
index rows and interactions), never over stored bytes. The projection's own
bookkeeping (`position`) is left out: inline and rebuilt projections stamp rows at
different positions for the same content.

The live side at the backup's position is the live read model itself when no
customer event has been recorded since that position; otherwise the live log up
to that position is projected into a second scratch store with the live keys.

The result (RPO: age of the newest backed-up event; RTO: seconds from the start
of the drill to a verified, usable restored store; pass or fail and why) is
recorded in the audit log (domain/operations.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from application.clock import utc_now
from application.errors import SubjectErased
from application.restore import RecoveryRecords
from infrastructure.backup.eventrows import EventTable, TableRef
from infrastructure.backup.manifest import BackupCorrupt, ManifestSigner
from infrastructure.partitioned_rebuild import RebuildInterrupted
from infrastructure.backup.restore import RestoreRefused, check_chain, restore_backup
from infrastructure.backup.targets import Target
from infrastructure.backup.verify import verify_target
from infrastructure.composition import Components, build
from infrastructure.projection import CustomerProjection
from infrastructure.readmodel import CLEAR_COLUMNS, SEALED_COLUMNS, CustomerDirectory, create_tables
from infrastructure.sql import Database

CUSTOMER_TOPICS = ("domain.customer:", "domain.erasure:")


@dataclass
class DrillResult:
    target: str
    backup_id: str = ""
    position: int = 0
    rpo_seconds: float = 0.0
    rto_seconds: float = 0.0
    reference: str = ""
    restored: dict[str, Any] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return "failed" if self.failures else "succeeded"

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target, "backup_id": self.backup_id, "position": self.position,
            "rpo_seconds": round(self.rpo_seconds, 3), "rto_seconds": round(self.rto_seconds, 3),
            "outcome": self.outcome, "reference": self.reference, "checksums": self.restored,
            "failures": self.failures,
        }


def read_model_checksums(directory: CustomerDirectory) -> dict[str, Any]:
    """Row counts and SHA-256 of each read-model table's opened content."""
    sealer = directory.sealer

    def opened(table: str, column: str, subject: str, row_id: str, value: Any, **kw: Any) -> Any:
        try:
            return sealer.open(table, column, subject, row_id, value, **kw)
        except SubjectErased:
            return "<erased>"

    sums: dict[str, Any] = {}
    with directory.db.transaction(write=False) as cur:
        columns = ("customer_id", *CLEAR_COLUMNS, *SEALED_COLUMNS)
        cur.execute(f"SELECT {', '.join(columns)} FROM rm_customers ORDER BY customer_id")  # nosec B608
        digest, count = hashlib.sha256(), 0
        for row in cur.fetchall():
            record = dict(zip(columns, row, strict=True))
            cid = record["customer_id"]
            for column in SEALED_COLUMNS:
                record[column] = opened("rm_customers", column, cid, cid, record[column])
            digest.update(_line(record))
            count += 1
        sums["rm_customers"] = {"rows": count, "sha256": digest.hexdigest()}
        cur.execute("SELECT field, digest, customer_id FROM rm_customer_search ORDER BY field, digest, customer_id")
        rows = cur.fetchall()
        sums["rm_customer_search"] = {
            "rows": len(rows), "sha256": hashlib.sha256(b"".join(_line(list(r)) for r in rows)).hexdigest(),
        }
        cur.execute("SELECT interaction_id, customer_id, kind, channel, occurred_at, notes FROM rm_interactions"
                    " ORDER BY interaction_id")
        digest, count = hashlib.sha256(), 0
        for iid, cid, kind, channel, occurred_at, notes in cur.fetchall():
            digest.update(_line([iid, cid, kind, channel, occurred_at,
                                 opened("rm_interactions", "notes", cid, iid, notes, field="notes")]))
            count += 1
        sums["rm_interactions"] = {"rows": count, "sha256": digest.hexdigest()}
    return sums


def _line(value: Any) -> bytes:
    # str() on every scalar: SQLite and PostgreSQL hand back the same content as
    # different Python types (int vs Decimal, text vs datetime).
    def normal(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: normal(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [normal(x) for x in v]
        return None if v is None else str(v)

    return json.dumps(normal(value), sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _live_reference(live: Components, position: int, scratch: Path) -> tuple[str, dict[str, Any]]:
    table = EventTable(TableRef(live.settings.database_url, live.app.recorder.events_table_name))
    try:
        since = table.topics_after(position)
    finally:
        table.close()
    quiet = not any(topic.startswith(CUSTOMER_TOPICS) for topic in since)
    if quiet and (live.projection.is_inline or live.directory.position() >= position):
        return "live read model", read_model_checksums(live.directory)
    # Customers changed since the backup: project the live log up to its position.
    db = Database.connect(f"sqlite:///{scratch / 'reference.sqlite'}")
    try:
        with db.transaction() as cur:
            create_tables(cur, db.dialect)
        directory = CustomerDirectory(db, live.keyring, live.directory.blind_index)
        CustomerProjection(directory, db).rebuild(live.app, upto=position)
        return f"live log projected to position {position}", read_model_checksums(directory)
    finally:
        db.close()


def run_drill(live: Components, target: Target, *, signer: ManifestSigner | None = None,
              record: bool = True, jobs: int | None = None) -> DrillResult:
    """Run one drill against `target` and record its result (needs an acting context);
    the restore rebuilds the read models with `jobs` processes (default: every core)."""
    started = time.perf_counter()
    signer = signer or ManifestSigner(live.keyring)
    result = DrillResult(target=target.name)
    scratch = Path(tempfile.mkdtemp(prefix="strongroom-drill-"))
    try:
        report = verify_target(target, signer)
        result.failures.extend(str(p) for p in report.problems)
        if report.ok:
            _restore_and_compare(live, target, signer, scratch, result, started, jobs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if record:
        RecoveryRecords(live.app).record_drill(
            target=target.name, backup_id=result.backup_id or "none", position=result.position,
            rpo_seconds=result.rpo_seconds, rto_seconds=result.rto_seconds, outcome=result.outcome,
            failures=result.failures,
        )
    return result


def _restore_and_compare(live: Components, target: Target, signer: ManifestSigner, scratch: Path,
                         result: DrillResult, started: float, jobs: int | None = None) -> None:
    into = f"sqlite:///{scratch / 'drill.sqlite'}"
    try:
        restored = restore_backup(live=live, target=target, into_url=into, signer=signer, jobs=jobs)
    except (BackupCorrupt, RestoreRefused, RebuildInterrupted, LookupError, ValueError) as exc:
        result.failures.append(f"restore failed: {exc}")
        return
    result.rto_seconds = time.perf_counter() - started
    result.backup_id, result.position = restored.backup_id, restored.position
    if restored.last_recorded_at is not None:
        newest = datetime.fromisoformat(restored.last_recorded_at)
        result.rpo_seconds = max(0.0, (utc_now() - newest).total_seconds())
    result.failures.extend(restored.problems)
    if restored.chain == "broken":
        result.failures.append("hash chain of the restored rows does not verify")
    # Read back from the restored store itself: what landed, not what was sent.
    _, problems = check_chain(restored.into, restored.table)
    result.failures.extend(problems)
    settings = replace(live.settings, database_url=restored.into, keys_database_url=restored.keys_into,
                       projection="inline")
    scratch_store = build(settings, kek=live.keyring.kek, create_schema=False)
    try:
        result.restored = read_model_checksums(scratch_store.directory)
    finally:
        scratch_store.close()
    result.reference, result.live = _live_reference(live, restored.position, scratch)
    for table, expected in result.live.items():
        if result.restored.get(table) != expected:
            result.failures.append(
                f"read model {table} differs from the live system at position {restored.position}"
                f" ({result.restored.get(table, {}).get('rows')} rows restored,"
                f" {expected['rows']} live)"
            )
