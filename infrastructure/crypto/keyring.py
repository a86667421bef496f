"""The key ring: data keys per subject, unwrapped on demand and cached briefly.

Each customer has a profile key and a KYC key (R1.2); the installation has one
system key (non-personal fields and event metadata, never destroyed) and one
blind-index root key (R1.3). Keys are made on first write and wrapped by the KEK
before they touch the database. Unwrapped keys stay in memory for `cache_seconds`
so that replaying a stream unwraps each key once, not once per event; the bound
also limits how long another process could go on reading with a key that this
process has just destroyed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from application.errors import SubjectErased
from domain.catalogue import KeyKind
from infrastructure.crypto.kek import KekError, KekProvider
from infrastructure.crypto.keystore import KeyStore, WrappedKey
from infrastructure.crypto.ledger_watch import LedgerWatch

SYSTEM_SUBJECT = "00000000-0000-0000-0000-000000000000"
# Issue 15: new subjects' keys are made ahead, a batch per durable commit (see
# KeyRing.reserve_subject). The batch doubles from 1 up to POOL_BATCH, so a process
# that registers one customer makes one pair, and a busy one one commit per 64.
POOL_BATCH = 64
# A made-ahead pair older than this is not handed out: far below the orphan sweep's
# grace (24 h, application/operations.py), so the sweep never takes a pair in use.
POOL_MAX_AGE_SECONDS = 600.0
_NEW_SUBJECT_KINDS = (str(KeyKind.KYC), str(KeyKind.PROFILE))
_NEW_SUBJECT_KINDS_LIST = list(_NEW_SUBJECT_KINDS)  # a customer's keys: what a rebuild's page fetches
BLIND_INDEX_ROOT = "blind-index-root"
_CANARY = b"strongroom kek check v1"
_log = logging.getLogger(__name__)


def _context(subject_id: str, kind: str) -> bytes:
    return f"strongroom/dek/v1|{subject_id}|{kind}".encode()


def kek_unlocks(store: KeyStore, kek: KekProvider) -> bool:
    """Whether `kek` unwraps the store's check value (False on a store without one)."""
    canary = store.canary()
    if canary is None:
        return False
    try:
        return kek.unwrap(canary[1], b"kek-check") == _CANARY
    except KekError:
        return False


@dataclass
class _Cached:
    key: bytes
    aead: AESGCM
    expires: float


@dataclass
class _MadeAhead:
    """A new subject's keys, durable in the key store, not yet handed out."""

    subject_id: str
    made_at: float
    keys: dict[str, bytes] = field(default_factory=dict)


class KeyRing:
    """Data keys by (subject, kind); the only place that unwraps them."""

    def __init__(self, store: KeyStore, kek: KekProvider, *, cache_seconds: float = 60.0,
                 watch: LedgerWatch | None = None) -> None:
        self.store = store
        self.kek = kek
        self.cache_seconds = cache_seconds
        # Another process's erasure drops this process's cached customer keys at once
        # (R5.4, issue 13); None: a short-lived ring (a backup, a restore) that needs none.
        self.watch = watch
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._sweep_at = 1024
        self._lock = threading.Lock()
        # Issue 15: subjects whose keys are durable but unused (the pool), and those
        # handed out by reserve_subject whose first event is not sealed yet.
        self._pool: list[_MadeAhead] = []
        self._reserved: dict[str, _MadeAhead] = {}
        self._next_batch = 1
        self._pool_lock = threading.Lock()
        # Issue 15: a thread inside `steady()` has looked at the ledger for its batch.
        self._steady = threading.local()

    # -- start-up ---------------------------------------------------------------------

    def check_kek(self) -> None:
        """Refuse to start with a KEK other than the one the store was made with.

        Writes the check value on a brand-new store; otherwise only reads, so a wrong
        KEK changes nothing (R1.4).
        """
        canary = self.store.canary()
        if canary is None:
            if self.store.has_any_key():
                raise KekError("the key store has keys but no KEK check value; refusing to guess")
            self.store.set_canary(self.kek.kek_id, self.kek.wrap(_CANARY, b"kek-check"))
            return
        kek_id, wrapped = canary
        try:
            ok = self.kek.unwrap(wrapped, b"kek-check") == _CANARY
        except KekError:
            ok = False
        if not ok:
            raise KekError(
                f"this KEK ({self.kek.kek_id}) is not the one the key store was made with "
                f"({kek_id}); nothing was changed"
            )

    # -- data keys ----------------------------------------------------------------------

    def aead(self, subject_id: str, kind: KeyKind | str, *, create: bool = False) -> AESGCM:
        """The cipher for a subject's key; raises SubjectErased if it was destroyed."""
        return self._entry(subject_id, str(kind), create=create).aead

    def has_key(self, subject_id: str, kind: str) -> bool:
        """Whether a (wrapped) key exists for the pair; unwraps nothing."""
        return self.store.get(subject_id, kind) is not None

    def raw_key(self, subject_id: str, kind: str) -> bytes:
        """Key bytes for derivation (blind index root); never leaves infrastructure."""
        return self._entry(subject_id, kind, create=True).key

    def _entry(self, subject_id: str, kind: str, *, create: bool) -> _Cached:
        now = time.monotonic()
        cache_key = (subject_id, kind)
        cached = self._cache.get(cache_key)
        if cached is not None and cached.expires > now:
            if subject_id == SYSTEM_SUBJECT or self._in_steady() or not self._ledger_moved():
                return cached
        stored = self.store.get(subject_id, kind)
        if stored is None:
            if create:
                return self.create_subject(subject_id, [kind])[kind]
            if self.store.is_destroyed(subject_id, kind):
                raise SubjectErased(subject_id, kind)
            raise KeyError(f"no {kind} key for subject {subject_id}")
        return self._remember(stored, now)

    def _ledger_moved(self) -> bool:
        """Whether keys were destroyed (here or elsewhere) since the last look; if so,
        every cached customer key is dropped (the system's are never destroyed)."""
        if self.watch is None or not self.watch.changed():
            return False
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if k[0] == SYSTEM_SUBJECT}
        return True

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, []
        try:
            self._discard(pool)
        except Exception as exc:  # noqa: BLE001 - a store gone at shutdown: the sweep removes them later
            _log.warning("unused made-ahead keys left for keys sweep-orphans: %s", type(exc).__name__)
        finally:
            if self.watch is not None:
                self.watch.close()

    # -- new subjects' keys, made ahead (issue 15) -------------------------------------------

    def reserve_subject(self) -> uuid.UUID:
        """A new subject id whose profile and KYC keys are already durable.

        Why: a registration used to commit its new keys (keys database) and then its
        events (events database): two durable commits per new customer, the second
        being the largest single cost of a secured write on SQLite. Keys are now made
        ahead, up to POOL_BATCH subjects in one commit of the key store, and the id
        is chosen from them, so registering a customer commits only its events.

        Crash reasoning (R1.1, R4.2; keys and events stay in separate stores): a
        batch's keys commit before any of its ids is handed out, and an id is only
        ever written to events after it was handed out; so every event's keys were
        durable before the event was. A crash can only leave keys without events
        (the batch not used yet), never events without keys; those orphan keys are
        removed by `strongroom keys sweep-orphans` (application/operations.py) after
        its grace, and a clean `close()` deletes the unused ones at once. A
        made-ahead pair is never handed out after POOL_MAX_AGE_SECONDS, far inside
        the sweep's grace, so the sweep cannot take a pair that is about to be used.
        """
        now = time.monotonic()
        with self._pool_lock:
            stale = [m for m in self._pool if now - m.made_at > POOL_MAX_AGE_SECONDS]
            if stale:
                self._pool = [m for m in self._pool if m not in stale]
            if not self._pool:
                self._pool = self._make_ahead(self._next_batch)
                self._next_batch = min(POOL_BATCH, self._next_batch * 2)
            made = self._pool.pop()
            self._reserved[made.subject_id] = made
        if stale:
            self._discard(stale)
        return uuid.UUID(made.subject_id)

    def release_subject(self, subject_id: uuid.UUID | str) -> None:
        """Give back a reserved id whose first event was never sealed (its input was refused)."""
        with self._pool_lock:
            made = self._reserved.pop(str(subject_id), None)
            if made is not None:
                self._pool.append(made)

    def _make_ahead(self, count: int) -> list[_MadeAhead]:
        made = [_MadeAhead(str(uuid.uuid4()), time.monotonic()) for _ in range(count)]
        wrapped = []
        for subject in made:
            for kind in _NEW_SUBJECT_KINDS:
                data_key = os.urandom(32)
                subject.keys[kind] = data_key
                context = _context(subject.subject_id, kind)
                wrapped.append(WrappedKey(subject.subject_id, kind, self.kek.wrap(data_key, context), self.kek.kek_id))
        self.store.insert_new(wrapped)  # one durable commit for the whole batch
        return made

    def _discard(self, made: list[_MadeAhead]) -> None:
        if made:
            self.store.discard_unused([m.subject_id for m in made], list(_NEW_SUBJECT_KINDS))

    def _take_reserved(self, subject_id: str, kinds: list[str]) -> dict[str, _Cached] | None:
        with self._pool_lock:
            made = self._reserved.get(subject_id)
            if made is None or not set(kinds) <= set(made.keys):
                return None
            del self._reserved[subject_id]
        expires = time.monotonic() + self.cache_seconds
        entries = {kind: _Cached(made.keys[kind], AESGCM(made.keys[kind]), expires) for kind in kinds}
        with self._lock:
            for kind, entry in entries.items():
                self._cache[(subject_id, kind)] = entry
        return entries

    def _remember(self, stored: WrappedKey, now: float) -> _Cached:
        key = self.kek.unwrap(stored.wrapped, _context(stored.subject_id, stored.kind))
        entry = _Cached(key, AESGCM(key), now + self.cache_seconds)
        with self._lock:
            self._cache[(stored.subject_id, stored.kind)] = entry
            if len(self._cache) > self._sweep_at:
                # Expired keys are dropped in sweeps so that a long run (a rebuild,
                # an import) does not keep every key it ever touched in memory.
                self._cache = {k: v for k, v in self._cache.items() if v.expires > now}
                self._sweep_at = max(1024, 2 * len(self._cache))
        return entry

    def create_subject(
        self, subject_id: str, kinds: list[str] | None = None
    ) -> dict[str, _Cached]:
        """Make a new subject's keys (profile and KYC by default) in one transaction.

        Raises SubjectErased if the ledger says any of them was destroyed: writing
        under a fresh key would quietly resurrect an erased customer's stream.
        """
        kinds = kinds or [str(KeyKind.PROFILE), str(KeyKind.KYC)]
        reserved = self._take_reserved(subject_id, kinds)
        if reserved is not None:
            return reserved  # made ahead and already durable: no commit here
        wrapped = []
        for kind in kinds:
            data_key = os.urandom(32)
            wrapped.append(
                WrappedKey(subject_id, kind, self.kek.wrap(data_key, _context(subject_id, kind)), self.kek.kek_id)
            )
        stored = self.store.insert_all_if_absent(wrapped)
        now = time.monotonic()
        entries = {}
        for kind in kinds:
            key = stored[kind]
            if key is None:
                raise SubjectErased(subject_id, kind)
            entries[kind] = self._remember(key, now)
        return entries

    def prefetch(self, subject_ids: list[str], kind: KeyKind | str, *,
                 held: Sequence[KeyKind | str] = (),
                 fetched: dict[tuple[str, str], WrappedKey] | None = None) -> dict[tuple[str, str], WrappedKey]:
        """Unwrap several subjects' `kind` keys with one query (search candidates).

        The `held` kinds come back from the same query still wrapped, for
        `unwrap_held` to unwrap for the candidates that turn out to match: a search
        costs one key-store round trip, and the other candidates' keys of those kinds
        are never unwrapped (issue 15). `fetched`: the wrapped keys already read with
        the candidates (the read model's query, keys in the same database): no query."""
        now = time.monotonic()
        self._ledger_moved()
        kinds = [str(kind), *(str(k) for k in held if str(k) != str(kind))]
        missing = sorted({
            sid for sid in subject_ids for k in kinds
            if (c := self._cache.get((sid, k))) is None or c.expires <= now
        })
        if fetched is not None:
            stored = fetched
        else:
            stored = self.store.get_kinds(missing, kinds) if missing else {}
        wrapped = {}
        for (sid, k), key in stored.items():
            if k == str(kind):
                if (c := self._cache.get((sid, k))) is None or c.expires <= now:
                    self._remember(key, now)
            else:
                wrapped[(sid, k)] = key
        return wrapped

    def unwrap_held(self, held: dict[tuple[str, str], WrappedKey], subject_id: str) -> None:
        """Unwrap (into the cache) the keys `prefetch` held back for `subject_id`; a key
        not held is looked up as usual when it is used."""
        now = time.monotonic()
        for (sid, kind), stored in held.items():
            if sid == subject_id and ((c := self._cache.get((sid, kind))) is None or c.expires <= now):
                self._remember(stored, now)

    def prefetch_subjects(self, subject_ids: Iterable[str]) -> int:
        """Unwrap every key of the subjects not cached yet, in one query (issue 15: a
        rebuild's page of the log, instead of a query and a transaction per key).
        Subjects without keys (erased, or streams that are not a customer's) are
        left to `aead`, which tells an erased subject from a missing key. Returns
        the keys unwrapped."""
        now = time.monotonic()
        self._ledger_moved()
        kind = str(KeyKind.PROFILE)
        missing = list(dict.fromkeys(
            sid for sid in subject_ids
            if sid != SYSTEM_SUBJECT and ((c := self._cache.get((sid, kind))) is None or c.expires <= now)
        ))
        if not missing:
            return 0
        found = 0
        for start in range(0, len(missing), 500):
            for stored in self.store.get_kinds(missing[start:start + 500], _NEW_SUBJECT_KINDS_LIST).values():
                self._remember(stored, now)
                found += 1
        return found

    def _in_steady(self) -> bool:
        return bool(getattr(self._steady, "depth", 0))

    @contextmanager
    def steady(self) -> Iterator[None]:
        """A batch of work (a page of a rebuild) that looks at the erasure ledger once,
        on entry, instead of before every use of a cached customer key.

        Why: on SQLite each look is a `PRAGMA data_version` on the key store, and a
        rebuild uses a customer's keys about ten times per event it projects (one
        look per sealed column); it was the largest single cost of a rebuild after
        the key lookups (issue 15). The bound this trades: a key destroyed by another
        process while the batch runs is dropped from this thread's cache when its
        next batch starts (a page of 500 events), not at its next use. A rebuild
        purges an erased customer's rows when it reads the erasure record, whatever
        it projected before. Other threads are unaffected; nesting is allowed.
        """
        self._ledger_moved()
        self._steady.depth = getattr(self._steady, "depth", 0) + 1
        try:
            yield
        finally:
            self._steady.depth -= 1

    def destroy(self, subject_id: str, kinds: list[str]) -> list[str]:
        """Crypto-shred: delete the wrapped keys, enter them in the ledger, forget them."""
        destroyed = self.store.destroy(subject_id, kinds)
        with self._lock:
            for kind in kinds:
                self._cache.pop((subject_id, kind), None)
        return destroyed

    def subjects_older_than(self, cutoff: datetime) -> dict[str, list[str]]:
        """Subjects (not the system's own) with keys made before `cutoff`, and their key kinds."""
        subjects = self.store.subjects_created_before(cutoff.astimezone(UTC).isoformat(timespec="microseconds"))
        subjects.pop(SYSTEM_SUBJECT, None)
        return subjects

    def kek_id(self) -> str:
        """The id of the KEK that wraps every data key here."""
        return self.kek.kek_id

    def counts(self) -> dict[str, int]:
        """Data keys by state (what `strongroom keys status` prints)."""
        return self.store.counts()

    def status(self, subject_id: str) -> dict[str, str]:
        result = {}
        for kind in (KeyKind.PROFILE, KeyKind.KYC):
            if self.store.is_destroyed(subject_id, kind):
                result[str(kind)] = "destroyed"
            elif self.store.get(subject_id, kind) is not None:
                result[str(kind)] = "active"
            else:
                result[str(kind)] = "absent"
        return result

    def forget_cached(self) -> None:
        with self._lock:
            self._cache.clear()

    # -- KEK rotation ---------------------------------------------------------------------

    def rotate_kek(self, new_kek: KekProvider) -> int:
        """Re-wrap every data key under `new_kek` in one transaction; events are untouched."""
        rewrapped = []
        for stored in self.store.all_keys():
            context = _context(stored.subject_id, stored.kind)
            data_key = self.kek.unwrap(stored.wrapped, context)
            rewrapped.append(
                WrappedKey(stored.subject_id, stored.kind, new_kek.wrap(data_key, context), new_kek.kek_id)
            )
        self.store.replace_all(rewrapped, new_kek.kek_id, new_kek.wrap(_CANARY, b"kek-check"))
        self.kek = new_kek
        self.forget_cached()
        return len(rewrapped)
