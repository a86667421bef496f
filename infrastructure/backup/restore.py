"""`restore`: a new store holding exactly the events up to a point (R4.4, R4.6).

1. Refuse anything that could touch the live store: the live database (or key
   store) as the destination, or a destination that already holds events or keys
   (unless it is marked as the destination of a restore that never finished: then
   start over, dropping only the tables that run made; restore_state.py). Mark the
   destination `in_progress` before the first write; mark it `complete` after the
   last, so nothing takes a killed restore for a store.
2. Verify the manifests (signatures, links) before reading a byte of data.
3. Restore the key store from the newest key backup, minus every key the erasure
   ledger lists (the backup's ledger and the live one): erasure is never undone.
4. Build the schema on the destination with the same KEK (`build()`), then insert
   the rows exactly as stored (positions, `recorded_at`, chain hashes), each
   segment checked against its SHA-256 as it is read, up to the position or time.
5. Record where the restored chain turns v2 (the backup's `chain.v2_from`, or after
   the last restored row for a backup made before chain v2: audit/chain.py).
   Verify the restored chain against the signed checkpoints the backup carries (those
   at or below the restored position), then write them into the destination's
   `audit_checkpoints` (and its checkpoint folder, when given): a restored store
   passes `audit verify`. A backup made before checkpoints were backed up has none;
   the restore says so, and verify then checks the chain alone.
6. Rebuild the read models from the restored log: `jobs` forked workers follow the
   rows as they go in, each batch once committed (partitioned_rebuild.run_alongside;
   issue 15 item 3). A cut by time has no last position known in advance, so that
   restore rebuilds after the last row is in.

SQLite and PostgreSQL either way round: rows travel in a portable form
(infrastructure/backup/eventrows.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from infrastructure.audit.checkpoints import Checkpoint, CheckpointStore
from infrastructure.audit.verify import ChainVerifier, chain_v2_from, iter_rows
from infrastructure.audit.chain import (
    ChainRow,
    canonical_uuid_hex,
    epoch_micros,
    meta_digest_of_state,
    state_digest,
    unreadable_row,
)
from infrastructure.backup.eventrows import (
    CHAIN_HEAD,
    CHAIN_PREV,
    EventTable,
    TableRef,
    decode_row,
    pg_conninfo,
)
from infrastructure.backup import restore_state
from infrastructure.backup.generations import KeyBackupExpired, open_keys
from infrastructure.backup.keys import KeysRestored, import_keys, merge_key_exports
from infrastructure.backup.manifest import BackupCorrupt, ManifestSigner, parse_manifest, sha256
from infrastructure.backup.targets import Target
from infrastructure.backup.verify import (
    Problem,
    VerifyReport,
    manifest_chain,
    read_segment,
    restorable_segments,
)
from infrastructure.composition import KEYS_SCHEMA, Components, Settings, build
from infrastructure.eventstore.shared import MAX_POSITION
from infrastructure.partitioned_rebuild import default_jobs
from cryptography.exceptions import InvalidTag

from application.clock import utc_now
from infrastructure.crypto.kek import KekProvider
from infrastructure.crypto.keyring import KeyRing
from infrastructure.crypto.keystore import KeyStore, WrappedKey
from infrastructure.sql import Database, is_postgres, sqlite_path

INSERT_BATCH = 5000
Progress = Callable[[str, int, int | None], None]


class RestoreRefused(Exception):
    """The restore would write where it must not, or cannot start (exit 2)."""


@dataclass
class RestoreResult:
    into: str
    keys_into: str
    position: int
    rows: int
    last_recorded_at: str | None
    keys: KeysRestored
    read_model_events: int
    seconds: float
    chain: str
    backup_id: str
    table: str = ""
    problems: list[str] = field(default_factory=list)
    checkpoints: int | None = None  # None: the backup carries no checkpoints (made before they were)
    started_over: bool = False  # a killed restore into the same destination was cleared first

    def as_json(self) -> dict[str, Any]:
        return {
            "into": _redacted(self.into), "keys_into": _redacted(self.keys_into), "position": self.position,
            "rows": self.rows, "last_recorded_at": self.last_recorded_at,
            "keys_restored": self.keys.restored, "keys_withheld_by_erasure_ledger": self.keys.withheld,
            "read_model_events": self.read_model_events, "seconds": round(self.seconds, 3),
            "chain": self.chain, "backup_id": self.backup_id, "problems": self.problems,
            "checkpoints_restored": self.checkpoints, "started_over": self.started_over,
        }


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def store_identity(url: str) -> tuple[str, ...]:
    """What makes two URLs the same store, whatever their spelling."""
    if is_postgres(url):
        conninfo, schema = pg_conninfo(url)
        parts = urlsplit(conninfo)
        host = (parts.hostname or "").lower()
        host = "127.0.0.1" if host in ("localhost", "::1") else host
        return ("postgres", host, str(parts.port or 5432), parts.path.lstrip("/"), schema)
    return ("sqlite", str(Path(sqlite_path(url)).resolve()))


def default_keys_url(into_url: str) -> str:
    """Beside the restored events: the same PostgreSQL database (its own schema), or
    a sibling SQLite file."""
    if is_postgres(into_url):
        return into_url
    path = Path(sqlite_path(into_url)).resolve()
    return f"sqlite:///{path.with_name(path.stem + '.keys.sqlite')}"


def _stamp(value: Any) -> datetime:
    """A row's `recorded_at` as an aware UTC time, from its backed-up form or decoded."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    text = value["ts"] if isinstance(value, dict) else value
    return datetime.fromisoformat(str(text)).astimezone(timezone.utc)


def _existing_rows(url: str, table: str) -> int:
    try:
        existing = EventTable(TableRef(url, table))
    except LookupError:
        return 0
    try:
        return existing.max_position()
    finally:
        existing.close()


def _check_destination(live: Components, into_url: str, keys_into_url: str) -> None:
    live_stores = {store_identity(live.settings.database_url), store_identity(live.settings.keys_database_url)}
    if store_identity(into_url) in live_stores:
        raise RestoreRefused("refusing to restore into the live store: give a new, empty database")
    if store_identity(keys_into_url) in live_stores:
        raise RestoreRefused("refusing to restore keys into the live key store")


def _check_unused(into_url: str) -> None:
    for table in ("stored_events", "strongroom_events"):
        if _existing_rows(into_url, table):
            raise RestoreRefused("the destination already holds events; restore builds a new store")


def _keys_database(keys_into_url: str) -> Database:
    return Database.connect(keys_into_url, schema=KEYS_SCHEMA if is_postgres(keys_into_url) else None)


def _prepare_destination(into_db: Database, into_url: str, keys_into_url: str) -> tuple[list[str], list[str], bool]:
    """The tables there before any restore began, and whether this run starts over.

    Only a destination marked `in_progress` by a restore is cleared, and only of the
    tables that run made: anything else holding events is refused, as before.
    """
    marker = restore_state.read_marker(into_db)
    keys_identity = list(store_identity(keys_into_url))
    if marker is not None and marker.status == restore_state.IN_PROGRESS:
        if marker.keys_store != keys_identity:
            raise RestoreRefused("the interrupted restore into this destination wrote its keys elsewhere: "
                                 "run it again with the same --keys-into")
        restore_state.drop_made_since(into_db, marker.tables_before)
        keys_db = _keys_database(keys_into_url)
        try:
            restore_state.drop_made_since(keys_db, marker.keys_tables_before)
        finally:
            keys_db.close()
        return marker.tables_before, marker.keys_tables_before, True
    _check_unused(into_url)
    keys_db = _keys_database(keys_into_url)
    try:
        return restore_state.tables(into_db), restore_state.tables(keys_db), False
    finally:
        keys_db.close()


def verified_chain(target: Target, signer: ManifestSigner) -> list[dict[str, Any]]:
    report = VerifyReport(target=target.name)
    chain = manifest_chain(target, signer, report)
    if report.problems:
        raise BackupCorrupt(report.problems[0].file, report.problems[0].problem)
    if not chain:
        raise RestoreRefused(f"target {target.name} holds no complete backup")
    return chain


def load_key_backup(target: Target, signer: ManifestSigner, document: dict[str, Any],
                    keyring: KeyRing) -> dict[str, Any]:
    """The key store as of `document`'s key backup: that one, and when it holds only
    changes, every key backup it links back to down to a full one, merged in order
    (keys.merge_key_exports; issue 15 item 5). Each link is checked against the
    SHA-256 the signed manifest after it names, and each opens only under its own
    generation key, so an expired link refuses the restore rather than lose keys."""
    link: dict[str, Any] | None = document["keys"]
    exports: list[dict[str, Any]] = []
    seen: set[str] = set()
    while link is not None:
        file = str(link["file"])
        if file in seen:
            raise BackupCorrupt(file, "key backup chain loops")
        seen.add(file)
        keys_manifest, exported = _open_key_backup(target, signer, file, link.get("sha256"), keyring)
        exports.append(exported)
        link = keys_manifest.get("previous") if keys_manifest.get("changes") else None
    return exports[0] if len(exports) == 1 else merge_key_exports(exports[::-1])


def _open_key_backup(target: Target, signer: ManifestSigner, file: str, digest: str | None,
                     keyring: KeyRing) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        data = target.read(file)
    except FileNotFoundError:
        raise BackupCorrupt(file, "key backup manifest is missing") from None
    if digest is not None and sha256(data) != digest:
        raise BackupCorrupt(file, "key manifest SHA-256 does not match the manifest that names it")
    keys_manifest = parse_manifest(file, data)
    signer.check(file, keys_manifest)
    (entry,) = keys_manifest["segments"]
    try:
        data = read_segment(target, entry)
    except BackupCorrupt as exc:
        if keys_manifest.get("expires_at") and datetime.fromisoformat(keys_manifest["expires_at"]) <= utc_now():
            raise RestoreRefused(f"key backup {keys_manifest['backup_id']} has expired and was pruned "
                                 "(key backups are kept key_backup_retention_days)") from exc
        raise
    try:
        return keys_manifest, open_keys(keyring, data)
    except KeyBackupExpired as exc:
        raise RestoreRefused(str(exc)) from None
    except (ValueError, InvalidTag):
        raise BackupCorrupt(entry["file"], "key backup does not parse or open") from None


def restore_backup(
    *,
    live: Components,
    target: Target,
    into_url: str,
    keys_into_url: str | None = None,
    position: int | None = None,
    to_time: datetime | None = None,
    kek: KekProvider | None = None,
    signer: ManifestSigner | None = None,
    progress: Progress | None = None,
    checkpoint_dir: Path | None = None,
    jobs: int | None = None,
) -> RestoreResult:
    """Restore `target`'s backups up to `position` or `to_time` into a new store; the read
    models are rebuilt by `jobs` processes (default: the number of cores; issue 15)."""
    started = time.perf_counter()
    keys_into_url = keys_into_url or default_keys_url(into_url)
    _check_destination(live, into_url, keys_into_url)
    into_db = Database.connect(into_url)
    try:
        return _restore_marked(
            live=live, target=target, into_db=into_db, into_url=into_url, keys_into_url=keys_into_url,
            position=position, to_time=to_time, kek=kek, signer=signer, progress=progress,
            checkpoint_dir=checkpoint_dir, started=started, jobs=jobs or default_jobs(),
        )
    finally:
        into_db.close()


def _restore_marked(
    *, live: Components, target: Target, into_db: Database, into_url: str, keys_into_url: str,
    position: int | None, to_time: datetime | None, kek: KekProvider | None, signer: ManifestSigner | None,
    progress: Progress | None, checkpoint_dir: Path | None, started: float, jobs: int = 1,
) -> RestoreResult:
    """The restore between its in-progress marker and its completion mark."""
    tables_before, keys_tables_before, started_over = _prepare_destination(into_db, into_url, keys_into_url)
    signer = signer or ManifestSigner(live.keyring)
    chain = verified_chain(target, signer)
    newest = chain[-1]
    if position is not None and position > int(newest["last_position"]):
        raise RestoreRefused(
            f"the backups on {target.name} reach position {newest['last_position']}, not {position}"
        )
    if to_time is not None and to_time.tzinfo is None:
        raise RestoreRefused("--to needs a timezone, e.g. 2026-11-29T12:00:00+00:00")

    # Keys first: build() would otherwise make a fresh system key and blind-index root.
    exported = load_key_backup(target, signer, newest, live.keyring)
    # The first write into the destination: until `complete`, nothing may take it for a store.
    restore_state.begin(into_db, backup_id=newest["backup_id"], position=position,
                        keys_store=list(store_identity(keys_into_url)), tables_before=tables_before,
                        keys_tables_before=keys_tables_before)
    keys_db = _keys_database(keys_into_url)
    try:
        keys = import_keys(KeyStore(keys_db), exported, live.keyring.store.destroyed())
    except ValueError as exc:
        raise RestoreRefused(str(exc)) from None
    finally:
        keys_db.close()

    settings: Settings = replace(
        live.settings, database_url=into_url, keys_database_url=keys_into_url, projection="inline",
    )
    restored = build(settings, kek=kek or live.keyring.kek, allow_incomplete_restore=True)
    try:
        table_name = restored.app.recorder.events_table_name

        def load() -> tuple[_Inserted, int | None]:
            return _load_rows(restored, into_url, table_name, target, chain, position, to_time, progress,
                              int(newest["last_position"]), checkpoint_dir)

        partitioned = restored.projection.partitioned
        if to_time is None and partitioned is not None:
            # Issue 15 item 3: the read models are rebuilt by `jobs` workers as the rows
            # go in (a cut by time has no last position known in advance: in turn).
            end = int(newest["last_position"]) if position is None else position
            partitioned.prefetch_keys = True
            rebuilt, (inserted, checkpoints) = partitioned.run_alongside(
                restored.projection, restored.app, jobs=jobs, target=end, write=load,
                progress=None if progress is None else (lambda n: progress("read models", n, end)),
            )
        else:
            inserted, checkpoints = load()
            rebuilt = _rebuild(restored, jobs, inserted.last_position, progress)
    finally:
        restored.close()
    restore_state.complete(into_db, position=inserted.last_position)
    return RestoreResult(
        into=into_url, keys_into=keys_into_url, position=inserted.last_position, rows=inserted.rows,
        last_recorded_at=None if inserted.last_stamp is None else inserted.last_stamp.isoformat(), keys=keys,
        read_model_events=rebuilt, seconds=time.perf_counter() - started, chain=inserted.chain,
        backup_id=newest["backup_id"], table=table_name, problems=inserted.problems,
        checkpoints=checkpoints, started_over=started_over,
    )


def _load_rows(
    restored: Components, into_url: str, table_name: str, target: Target, chain: list[dict[str, Any]],
    position: int | None, to_time: datetime | None, progress: Progress | None, last_backed_up: int,
    checkpoint_dir: Path | None,
) -> tuple[_Inserted, int | None]:
    """Insert the rows up to the cut, record where the chain turns v2, and check them
    against the signed checkpoints (then store those); returns what was inserted and
    the number of checkpoints restored (None: the backup carries none)."""
    table = EventTable(TableRef(into_url, table_name))
    try:
        carried = backed_up_checkpoints(target, chain) if table.has_chain else None
        # The rows are checked against the signed checkpoints as they go in (they are
        # written unchanged), not read back afterwards: a second pass over the whole
        # log was a sixth of a restore (issue 15 item 3). A cut by time is not known
        # in advance, so that restore checks the checkpoints it reached afterwards.
        verifier, expected = None, []
        if carried is not None and to_time is None:
            expected = [c for c in carried if position is None or c.position <= position]
            verifier = ChainVerifier(expected, restored.tamper_evidence.public_keys(),
                                     v2_from=restored_v2_from(chain, MAX_POSITION))
        inserted = _insert_rows(table, target, chain, position, to_time, progress, last_backed_up, verifier)
        table.finish_restore()
        if inserted.chained:
            table.record_chain_v2_from(restored_v2_from(chain, inserted.last_position))
    finally:
        table.close()
    if any(c.position > inserted.last_position for c in expected):
        verifier = None  # fewer rows than the checkpoints cover: check what was reached
    checkpoints = (_restore_checkpoints(restored, carried, inserted.last_position, checkpoint_dir, verifier)
                   if inserted.chained and carried is not None else None)
    return inserted, checkpoints


def _rebuild(restored: Components, jobs: int, total: int, progress: Progress | None) -> int:
    """The read models rebuilt from the restored log by `jobs` processes, this one
    reading the restored key store once (PrefetchedKeyStore), as each worker does."""
    store = restored.keyring.store
    restored.keyring.store = PrefetchedKeyStore(store)
    restored.projection.jobs = jobs
    if restored.projection.partitioned is not None:
        restored.projection.partitioned.prefetch_keys = True
    try:
        return int(restored.projection.rebuild(
            restored.app, progress=None if progress is None else (lambda n: progress("read models", n, total)),
        ))
    finally:
        restored.keyring.store = store
        restored.keyring.forget_cached()


def restored_v2_from(chain: list[dict[str, Any]], last_position: int) -> int:
    """Where the restored rows' chain turns v2: the store's recorded start, or (a
    backup made before chain v2, or a cut before the start) the next new row."""
    recorded = [int(d["chain"]["v2_from"]) for d in chain if isinstance(d.get("chain"), dict)
                and isinstance(d["chain"].get("v2_from"), int)]
    return min([*recorded[-1:], last_position + 1])


def backed_up_checkpoints(target: Target, chain: list[dict[str, Any]]) -> list[Checkpoint] | None:
    """Every checkpoint the chain's increments carry (None when none carries a segment)."""
    found: dict[int, Checkpoint] = {}
    carried = False
    for document in chain:
        entry = document.get("checkpoints")
        if entry is None:
            continue  # an increment made before checkpoints were backed up
        carried = True
        try:
            for data in json.loads(read_segment(target, entry)):
                checkpoint = Checkpoint.from_json(data)
                found.setdefault(checkpoint.position, checkpoint)
        except (ValueError, KeyError, TypeError):
            raise BackupCorrupt(entry["file"], "checkpoint segment does not parse") from None
    return sorted(found.values(), key=lambda c: c.position) if carried else None


def _restore_checkpoints(
    restored: Components, carried: list[Checkpoint], position: int, folder: Path | None,
    fed: ChainVerifier | None = None,
) -> int:
    """Verify the restored rows against the signed checkpoints at or below `position`
    (`fed`: a verifier the rows were fed to as they were inserted; otherwise they are
    read back), then store those checkpoints (and copy them to `folder`). A mismatch
    fails the restore: the rows restored are not the rows that were signed."""
    kept = [c for c in carried if c.position <= position]
    evidence = restored.tamper_evidence
    verifier = fed
    if verifier is None:
        verifier = ChainVerifier(kept, evidence.public_keys(), v2_from=chain_v2_from(evidence.recorder))
        verifier.feed(iter_rows(evidence.recorder, start=1, stop=position))
    report = verifier.finish()
    if not report.intact:
        raise BackupCorrupt("checkpoints", f"the restored chain does not match the signed checkpoints: "
                                           f"{report.summary()}")
    for checkpoint in kept:
        evidence.store.add(checkpoint)
    if folder is not None:
        copies = CheckpointStore(evidence.store.db, folder).copy_missing(everything=True)
        if not copies.complete:
            raise RestoreRefused(f"could not copy the checkpoints to {folder} ({copies.error})")
    return len(kept)


class PrefetchedKeyStore(KeyStore):
    """The restored key store, read in one query for the read-model rebuild.

    The rebuild opens every customer's keys once; one round trip per key is most
    of its database time on PostgreSQL. Nothing is written to the key store while
    it runs, so a snapshot of it answers the same; anything not in the snapshot
    (or a write) goes to the real store.
    """

    def __init__(self, store: KeyStore) -> None:
        super().__init__(store.db)
        self._keys = {(k.subject_id, k.kind): k for k in store.all_keys()}
        self._by_subject: dict[str, list[WrappedKey]] = {}
        for key in self._keys.values():
            self._by_subject.setdefault(key.subject_id, []).append(key)
        self._destroyed = {(s, k) for s, k, _ in store.destroyed()}

    def get(self, subject_id: str, kind: str) -> WrappedKey | None:
        found = self._keys.get((subject_id, kind))
        return found if found is not None else super().get(subject_id, kind)

    def get_kinds(self, subject_ids: list[str], kinds: list[str]) -> dict[tuple[str, str], WrappedKey]:
        found = {(k.subject_id, k.kind): k for sid in subject_ids for k in self._by_subject.get(sid, ())
                 if k.kind in kinds}
        return found | super().get_kinds([s for s in subject_ids if s not in self._by_subject], kinds)

    def is_destroyed(self, subject_id: str, kind: str) -> bool:
        return (subject_id, kind) in self._destroyed or super().is_destroyed(subject_id, kind)


@dataclass
class _Inserted:
    rows: int = 0
    last_position: int = 0
    last_stamp: datetime | None = None
    chain_head: Any = None
    chained: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def chain(self) -> str:
        if not self.chained:
            return "no chain columns"
        return "broken" if self.problems else "verified"


def _insert_rows(
    table: EventTable, target: Target, chain: list[dict[str, Any]], position: int | None,
    to_time: datetime | None, progress: Progress | None, total: int, verifier: ChainVerifier | None = None,
) -> _Inserted:
    """Insert the rows up to the cut; chain continuity is checked on exactly the rows
    inserted, as they go in (they are written unchanged, so no second read is needed),
    and `verifier`, if given, is fed the same rows as the chain sees them.

    Each row is decoded once (`decode_row`), for the insert and for both checks.
    """
    done = _Inserted(chained=table.has_chain)
    for columns, rows in restorable_segments(target, chain):
        at_recorded = columns.index("recorded_at")
        at_prev = columns.index(CHAIN_PREV) if CHAIN_PREV in columns else None
        at_head = columns.index(CHAIN_HEAD) if CHAIN_HEAD in columns else None
        keep = []
        stop = False
        for row in rows:
            try:
                decoded = decode_row(row, dialect=table.dialect)
                at, stamp = decoded[0], _stamp(decoded[at_recorded])
            except (ValueError, TypeError, KeyError, IndexError):
                raise BackupCorrupt("segment", f"the row after position {done.last_position} does not decode") from None
            # Positions must rise and stay within the backup: the read models' workers
            # follow the rows in position order (partitioned_rebuild.run_alongside), and
            # a row behind them, or past the end, would never be projected.
            if type(at) is not int or not done.last_position < at <= total:
                raise BackupCorrupt("segment", f"the row after position {done.last_position} is out of "
                                               f"order or past the backup's last position {total}")
            if (position is not None and at > position) or (to_time is not None and stamp > to_time):
                stop = True
                break
            if at_prev is not None and at_head is not None:
                if done.chain_head is not None and decoded[at_prev] != done.chain_head and not done.problems:
                    done.problems.append(str(Problem(table.ref.table, f"hash chain broken at position {at}")))
                done.chain_head = decoded[at_head]
            keep.append(decoded)
            done.last_position, done.last_stamp = at, stamp
        for start in range(0, len(keep), INSERT_BATCH):
            table.insert_decoded(columns, keep[start:start + INSERT_BATCH])
        if verifier is not None:
            verifier.feed(_chain_rows(columns, keep))
        done.rows += len(keep)
        if progress is not None:
            progress("events", len(keep), position or total)
        if stop:
            break
    return done


def _chain_rows(columns: list[str], rows: list[Any]) -> Iterator[ChainRow]:
    """Decoded backed-up rows (`decode_row`) as the chain sees them: what
    `select_chain_rows` makes of the same row once stored (the canonical stream id,
    the stamp in microseconds, the state's digest and metadata digest)."""
    at = {name: i for i, name in enumerate(columns)}
    at_id, at_version, at_topic = at["originator_id"], at["originator_version"], at["topic"]
    at_state, at_stamp, at_prev, at_head = at["state"], at["recorded_at"], at[CHAIN_PREV], at[CHAIN_HEAD]
    last_stamp: Any = None
    last_micros = 0  # the rows of one save share a stamp: converted once
    for row in rows:
        prev, head = row[at_prev], row[at_head]
        try:
            state = row[at_state]
            stamp = row[at_stamp]
            if stamp != last_stamp:
                last_stamp, last_micros = stamp, epoch_micros(_stamp(stamp))
            yield ChainRow(int(row[0]), _canonical_id(row[at_id]), int(row[at_version]), str(row[at_topic]),
                           last_micros, state_digest(state), prev, head, None, meta_digest_of_state(state))
        except (ValueError, TypeError, KeyError) as exc:
            last_stamp = None
            yield unreadable_row(int(row[0]), prev, head, exc)


def _canonical_id(stored: Any) -> str:
    """A stream id as the chain hashed it: a UUID's canonical text."""
    text = str(stored)
    if len(text) == 32:  # SQLite's 32 hex digits
        return canonical_uuid_hex(text)
    if len(text) == 36 and text == text.lower():  # already canonical (PostgreSQL's)
        return text
    return str(UUID(text))


def check_chain(database_url: str, table_name: str) -> tuple[str, list[str]]:
    """Chain continuity of a (restored) events table: each prev_hash is the row_hash before."""
    table = EventTable(TableRef(database_url, table_name))
    try:
        if not table.has_chain:
            return "no chain columns", []
        at_prev, at_head = table.columns.index(CHAIN_PREV), table.columns.index(CHAIN_HEAD)
        head: Any = None
        for row in table.rows():
            if head is not None and row[at_prev] != head:
                return "broken", [str(Problem(table_name, f"hash chain broken at position {row[0]}"))]
            head = row[at_head]
        return "verified", []
    finally:
        table.close()
