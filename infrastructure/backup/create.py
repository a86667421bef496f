"""`backup create`: one consistent, incremental backup to one target (R4.1, R4.2).

Incremental per target: the rows after the last position that target's last
complete manifest covers, read from one database snapshot. Order of writing:
event segments, then the signed checkpoints up to the last position (one
small segment, every checkpoint: a restore verifies the chain against them and
puts them back), then the key backup (read after the events, so every key an
event in this backup needs is in it: keys are made before the events they seal),
then the event manifest, last and atomically. Last of all, every signed checkpoint
the target does not hold yet goes into its `checkpoints/` folder (the witness),
one file per checkpoint exactly as in `checkpoint_dir`, never replacing a file
there: the off-site target is a place the database's owner does not control, so
`audit verify --witness` can tell a store or bundle cut back to an older
checkpoint from a complete one. Leftovers of an interrupted run
(segments with no manifest) are removed first; the run then covers their rows.

The whole run holds the target's lock (lock.py): without it a second run would
take the first one's segments for leftovers, remove them, and build on the same
base. The lock is confirmed (and its heartbeat beaten) before every write and
before the clean-up, so a run whose lock was broken stops before its manifest.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from application.clock import utc_now
from infrastructure.audit.checkpoints import Checkpoint, checkpoint_file, copy_name
from infrastructure.backup.eventrows import CHAIN_HEAD, CHAIN_PREV, POSITION, EventTable, TableRef
from infrastructure.backup.generations import seal_keys
from infrastructure.backup.keys import KEYS_SEGMENT, MarkLost, export_key_changes, export_keys
from infrastructure.backup.lock import TargetLock
from infrastructure.backup.manifest import (
    CHECKPOINTS_SEGMENT,
    EVENTS,
    FORMAT,
    KEYS,
    MANIFEST_SUFFIX,
    BackupCorrupt,
    ManifestSigner,
    canonical,
    encode_segment,
    manifest_path,
    new_backup_id,
    parse_manifest,
    segment_path,
    sha256,
)
from infrastructure.backup.targets import Target

SEGMENT_ROWS = 5000
WITNESS = "checkpoints"


@dataclass(frozen=True)
class BackupResult:
    target: str
    backup_id: str
    after_position: int
    last_position: int
    rows: int
    segments: int
    bytes: int
    seconds: float
    checkpoints_witnessed: int = 0
    stale_locks_broken: list[str] = field(default_factory=list)


def complete_manifests(target: Target, kind: str = EVENTS) -> list[tuple[str, bytes]]:
    """(file, bytes) of every complete backup of `kind` on the target, oldest first."""
    names = [n for n in target.list(kind) if n.endswith(MANIFEST_SUFFIX) and not n.startswith(".")]
    return [(f"{kind}/{name}", target.read(f"{kind}/{name}")) for name in sorted(names)]


def remove_interrupted(target: Target, lock: TargetLock) -> list[str]:
    """Delete segments and temporary files that no manifest vouches for.

    Only while holding the target's lock: otherwise "no manifest yet" may mean
    "another run is writing them", and removing them corrupts that run's backup.
    """
    lock.confirm()
    removed = []
    for kind in (EVENTS, KEYS):
        names = target.list(kind)
        complete = {n[: -len(MANIFEST_SUFFIX)] for n in names if n.endswith(MANIFEST_SUFFIX)}
        for name in names:
            path = f"{kind}/{name}"
            if name.startswith("."):
                target.remove(path)  # a temporary file of an interrupted atomic write
            elif not name.endswith(MANIFEST_SUFFIX) and name not in complete:
                target.remove_tree(path)  # segments of a run that never wrote its manifest
            else:
                continue
            removed.append(path)
    return removed


def _last_manifest(target: Target, signer: ManifestSigner) -> tuple[dict[str, Any], str] | None:
    manifests = complete_manifests(target)
    if not manifests:
        return None
    file, data = manifests[-1]
    document = parse_manifest(file, data)
    # Never build an increment on a base that this installation did not sign.
    signer.check(file, document)
    return document, sha256(data)


def create_backup(
    components: Any,
    target: Target,
    *,
    signer: ManifestSigner | None = None,
    segment_rows: int = SEGMENT_ROWS,
    progress: Callable[[int], None] | None = None,
    wait: float = 0.0,
) -> BackupResult:
    """Write one incremental backup to `target`, holding its lock for the whole run.

    Raises LockHeld (a TargetError) when another live run holds the lock for
    longer than `wait` seconds.
    """
    with TargetLock(target, purpose="backup create", wait=wait) as lock:
        result = _create_locked(components, target, lock, signer=signer, segment_rows=segment_rows,
                                progress=progress)
    return replace(result, stale_locks_broken=lock.broken)


def _create_locked(
    components: Any,
    target: Target,
    lock: TargetLock,
    *,
    signer: ManifestSigner | None,
    segment_rows: int,
    progress: Callable[[int], None] | None,
) -> BackupResult:
    started = time.perf_counter()
    signer = signer or ManifestSigner(components.keyring)
    last = _last_manifest(target, signer)
    remove_interrupted(target, lock)
    previous = None if last is None else {"backup_id": last[0]["backup_id"], "manifest_sha256": last[1]}
    after = 0 if last is None else int(last[0]["last_position"])
    chain_head = None if last is None else (last[0].get("chain") or {}).get("head")
    backup_id = new_backup_id()
    app = components.app
    table = EventTable(TableRef(components.settings.database_url, app.recorder.events_table_name))
    segments: list[dict[str, Any]] = []
    total_rows = total_bytes = 0
    first_prev: Any = None
    first_recorded = last_recorded = None
    try:
        columns = table.columns
        at = {name: i for i, name in enumerate(columns)}
        chained = table.has_chain

        def flush(rows: list[list[Any]]) -> None:
            nonlocal total_bytes
            data = encode_segment(columns, rows)
            name = f"{len(segments) + 1:06d}.seg"
            lock.confirm()
            target.write(segment_path(EVENTS, backup_id, name), data)
            segments.append({
                "file": segment_path(EVENTS, backup_id, name), "sha256": sha256(data), "bytes": len(data),
                "rows": len(rows), "first_position": rows[0][0], "last_position": rows[-1][0],
            })
            total_bytes += len(data)
            if progress is not None:
                progress(len(rows))

        for upto, rows in table.snapshot(after):
            buffer: list[list[Any]] = []
            for row in rows:
                if first_recorded is None:
                    first_recorded = row[at["recorded_at"]]
                    if chained:
                        first_prev = row[at[CHAIN_PREV]]
                last_recorded = row[at["recorded_at"]]
                if chained:
                    chain_head = row[at[CHAIN_HEAD]]
                buffer.append(row)
                total_rows += 1
                if len(buffer) >= segment_rows:
                    flush(buffer)
                    buffer = []
            if buffer:
                flush(buffer)
            last_position = max(after, upto) if total_rows else after
    finally:
        table.close()

    # The signed checkpoints up to this backup's end (R3.3), all of them: they are
    # small, and a restore from this increment alone still has every one to verify against.
    checkpoints = [c.as_json() for c in components.tamper_evidence.store.in_database()
                   if c.position <= last_position]
    checkpoints_data = json.dumps(checkpoints, separators=(",", ":")).encode()
    checkpoints_segment = segment_path(EVENTS, backup_id, CHECKPOINTS_SEGMENT)
    lock.confirm()
    target.write(checkpoints_segment, checkpoints_data)

    # Keys apart (R4.2), read after the events, sealed under this backup's own
    # generation key, which expires (infrastructure/backup/generations.py, issue 13);
    # only what changed since this target's last key backup when that is exact (keys.py).
    created = utc_now()
    now = created.isoformat(timespec="microseconds")
    retention = timedelta(days=components.settings.key_backup_retention_days)
    exported, chain = export_for_target(components.keyring.store, target, signer, last, created, retention)
    mark = exported.pop("mark")
    keys_data = seal_keys(components.keyring, backup_id,
                          json.dumps(exported, separators=(",", ":")).encode())
    keys_segment = segment_path(KEYS, backup_id, KEYS_SEGMENT)
    lock.confirm()
    target.write(keys_segment, keys_data)
    keys_manifest = signer.sign({
        "format": FORMAT, "kind": KEYS, "backup_id": backup_id, "created_at": now,
        "expires_at": (created + retention).isoformat(timespec="microseconds"),
        "kek_ids": sorted({k[3] for k in exported["data_keys"]}),
        "kek_check_ids": sorted(c[0] for c in exported["kek_check"]),
        "data_keys": len(exported["data_keys"]), "destroyed_keys": len(exported["destroyed_keys"]),
        "segments": [{"file": keys_segment, "sha256": sha256(keys_data), "bytes": len(keys_data)}],
        "mark": mark, **(chain or {"changes": False, "base": {"backup_id": backup_id, "created_at": now}}),
    })
    keys_manifest_bytes = canonical(keys_manifest)
    lock.confirm()
    target.write(manifest_path(KEYS, backup_id), keys_manifest_bytes)

    manifest = signer.sign({
        "format": FORMAT, "kind": EVENTS, "backup_id": backup_id, "created_at": now,
        "target": target.name, "table": app.recorder.events_table_name, "dialect": table.dialect,
        "columns": columns, "previous": previous,
        "after_position": after, "last_position": last_position, "rows": total_rows,
        "first_recorded_at": _stamp_text(first_recorded), "last_recorded_at": _stamp_text(last_recorded),
        # v2_from: where the store's chain turned v2 (audit/chain.py); a restore
        # records it again in the new store, or its rows before it would not verify.
        "chain": {"columns": [CHAIN_PREV, CHAIN_HEAD], "first_prev": first_prev, "head": chain_head,
                  "v2_from": app.recorder.chain_v2_from()}
        if chained else None,
        "segments": segments,
        "checkpoints": {"file": checkpoints_segment, "sha256": sha256(checkpoints_data),
                        "bytes": len(checkpoints_data), "count": len(checkpoints)},
        "keys": {"file": manifest_path(KEYS, backup_id), "sha256": sha256(keys_manifest_bytes)},
    })
    # Last, atomically: only now does this backup exist, and only if this run still holds the lock.
    lock.confirm()
    target.write(manifest_path(EVENTS, backup_id), canonical(manifest))
    witnessed = witness_checkpoints(target, components.tamper_evidence.store.in_database(), lock)
    return BackupResult(
        target=target.name, backup_id=backup_id, after_position=after, last_position=last_position,
        rows=total_rows, segments=len(segments), bytes=total_bytes + len(checkpoints_data) + len(keys_data),
        seconds=time.perf_counter() - started, checkpoints_witnessed=witnessed,
    )


def export_for_target(store: Any, target: Target, signer: ManifestSigner,
                      last: tuple[dict[str, Any], str] | None, now: datetime,
                      retention: timedelta) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The key export for this backup, and, when it holds only changes, how it links
    to the key backup before it on this target (None: a full export).

    A full export is taken when there is no earlier key backup here with a mark, when
    that one's contents are gone (pruned), when the full export its chain starts from
    is older than half the retention (so the newest chain never leans on a generation
    key about to expire: a restore reads every key backup back to that full one, and
    each opens only while its generation key lives), when the KEK check values
    changed (a rotation rewraps every key in place, which SQLite's rowid mark cannot
    see), or when the mark no longer holds (keys.MarkLost).
    """
    previous = _previous_keys(target, signer, last)
    if previous is not None:
        document, file, digest = previous
        base = document.get("base") or {}
        fresh = bool(base) and datetime.fromisoformat(base["created_at"]) + retention / 2 > now
        if fresh and document.get("mark") and target.list(f"{KEYS}/{document['backup_id']}"):
            try:
                changes = export_key_changes(store, document["mark"])
            except MarkLost:
                changes = None
            if changes is not None and sorted(c[0] for c in changes["kek_check"]) == document.get("kek_check_ids"):
                return changes, {"changes": True, "base": base,
                                 "previous": {"backup_id": document["backup_id"], "file": file, "sha256": digest}}
    return export_keys(store), None


def _previous_keys(target: Target, signer: ManifestSigner,
                   last: tuple[dict[str, Any], str] | None) -> tuple[dict[str, Any], str, str] | None:
    if last is None or not (last[0].get("keys") or {}).get("file"):
        return None
    file = last[0]["keys"]["file"]
    try:
        data = target.read(file)
    except FileNotFoundError:
        return None
    if sha256(data) != last[0]["keys"].get("sha256"):
        return None  # not the key backup the signed event manifest names: start afresh
    document = parse_manifest(file, data)
    signer.check(file, document)
    return document, file, sha256(data)


def witness_checkpoints(target: Target, checkpoints: list[Checkpoint], lock: TargetLock) -> int:
    """Write each checkpoint with no file in the target's `checkpoints/` folder; how many were written.

    A file already there is never replaced, even if it differs: a witness that the
    database's owner could rewrite would witness nothing (a difference is for
    `audit verify --witness` to report). Only under the target's lock, so no other
    run writes the same name between the listing and the write.
    """
    present = set(target.list(WITNESS))
    written = 0
    for checkpoint in checkpoints:
        name = copy_name(checkpoint.position)
        if name in present:
            continue
        lock.confirm()
        target.write(f"{WITNESS}/{name}", checkpoint_file(checkpoint))
        written += 1
    return written


def _stamp_text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value["ts"] if isinstance(value, dict) else value)


__all__ = ["BackupCorrupt", "BackupResult", "POSITION", "complete_manifests", "create_backup"]
