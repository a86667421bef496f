"""Signed checkpoints of the chain head, in the database and in a second place.

A checkpoint is {position, head hash, time}, signed with the audit key. They are
written every `checkpoint_rows` rows or `checkpoint_seconds` seconds (whichever
comes first, by a background thread so no request waits for one), when a command
that wrote finishes (`flush`), and on demand (`strongroom audit checkpoint`,
`audit export`).

Each one goes into the `audit_checkpoints` table (append-only like the events) and
is copied as a JSON file into `checkpoint_dir` (default `<instance>/checkpoints/`).
The copy is what makes a truncated tail visible even to someone who also deletes
checkpoint rows: `audit verify` reads both and a checkpoint found in either place
must match the log. Someone who also deletes the copies is caught by the third
place: `backup create` writes the same files into each backup target's
`checkpoints/` folder, out of the owner's reach (`audit verify --witness`).

The copy can fail where the row did not (a full disk, a folder that is not there or
not writable). The row is kept, the copy is tried `COPY_ATTEMPTS` times, and a copy
still missing is retried by the next checkpoint of any process (`copy_missing`:
every checkpoint with no file, not only the newest). `/readyz` warns, and `audit
verify` fails, once one has had no copy for longer than `checkpoint_copy_grace_seconds`.

Rows after the last checkpoint are protected by the append-only role and triggers
only; the checkpoint interval bounds that window.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from application.clock import utc_now
from infrastructure.audit.chain import ChainRow, epoch_micros, from_epoch_micros
from infrastructure.audit.signer import CheckpointSigner
from infrastructure.private_files import make_private_folder, open_private
from infrastructure.sql import Database, lock_schema_changes

log = logging.getLogger(__name__)

CHECKPOINT_TAG = b"strongroom/checkpoint/v1\x00"
TABLE = "audit_checkpoints"
DEFAULT_EVERY_ROWS = 1000
DEFAULT_EVERY_SECONDS = 30.0
_RETRY_SECONDS = 5.0
# A copy is tried this many times, with these pauses between tries, before it is
# reported as failed: enough for a transient error (an NFS hiccup), bounded so a
# broken folder costs a command well under a second.
COPY_ATTEMPTS = 3
_COPY_PAUSES = (0.05, 0.25)
_INT64 = struct.Struct(">q")


@dataclass(frozen=True)
class Checkpoint:
    position: int
    head_hash: bytes
    signed_at_us: int
    key_id: str
    signature: bytes

    @staticmethod
    def message_for(position: int, head_hash: bytes, signed_at_us: int, key_id: str) -> bytes:
        """The exact bytes signed: tag, position, head, time, key id."""
        kid = key_id.encode()
        return b"".join((
            CHECKPOINT_TAG, _INT64.pack(position), head_hash, _INT64.pack(signed_at_us),
            bytes((len(kid),)), kid,
        ))

    def message(self) -> bytes:
        return self.message_for(self.position, self.head_hash, self.signed_at_us, self.key_id)

    @property
    def signed_at(self) -> datetime:
        return from_epoch_micros(self.signed_at_us)

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "head_hash": self.head_hash.hex(),
            "signed_at": self.signed_at.isoformat(timespec="microseconds"),
            "signed_at_us": self.signed_at_us,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        """Parse a checkpoint; raises ValueError (or KeyError/TypeError) when malformed."""
        position, signed_at_us = data["position"], data["signed_at_us"]
        if type(position) is not int or type(signed_at_us) is not int:
            raise ValueError("position and signed_at_us must be integers")
        return cls(
            position=position,
            head_hash=bytes.fromhex(data["head_hash"]),
            signed_at_us=signed_at_us,
            key_id=str(data["key_id"]),
            signature=bytes.fromhex(data["signature"]),
        )


def sign_checkpoint(signer: CheckpointSigner, position: int, head_hash: bytes, when: datetime) -> Checkpoint:
    signed_at_us = epoch_micros(when)
    message = Checkpoint.message_for(position, head_hash, signed_at_us, signer.key_id)
    return Checkpoint(position, head_hash, signed_at_us, signer.key_id, signer.sign(message))


def _checkpoint(row: Sequence[Any]) -> Checkpoint:
    return Checkpoint(int(row[0]), bytes(row[1]), int(row[2]), str(row[3]), bytes(row[4]))


def copy_name(position: int) -> str:
    return f"checkpoint-{position:020d}.json"


def checkpoint_file(checkpoint: Checkpoint) -> bytes:
    """The bytes of a checkpoint's copy (in `checkpoint_dir` and a backup target's witness folder)."""
    return json.dumps(checkpoint.as_json(), sort_keys=True).encode()


def read_checkpoint_files(folder: Path) -> tuple[list[Checkpoint], list[str]]:
    """The checkpoint copies in `folder` (`checkpoint-*.json`), and the names of files that do not parse."""
    found, unreadable = [], []
    if not folder.is_dir():
        return [], []
    for path in sorted(folder.glob("checkpoint-*.json")):
        try:
            found.append(Checkpoint.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except (ValueError, KeyError, TypeError):
            unreadable.append(path.name)
    return found, unreadable


@dataclass(frozen=True)
class CopyOutcome:
    """What one pass over the missing copies did: positions copied, positions still missing.

    `error` is the kind of OS error that stopped the copies (e.g. `NotADirectoryError`),
    never its message: that is all an operator needs and all a log may hold.
    """

    folder: Path
    made: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()
    error: str | None = None

    @property
    def complete(self) -> bool:
        return not self.failed


class ChainBroken(Exception):
    """The rows since the latest checkpoint do not verify: nothing is signed."""


class ChainHead(Protocol):
    def chain_head(self) -> tuple[int, bytes] | None: ...

    def select_chain_rows(self, start: int, limit: int, stop: int | None = None) -> list[ChainRow]: ...


class CheckpointStore:
    """The checkpoints table and its copy in a folder."""

    def __init__(self, database: Database, folder: Path) -> None:
        self.db = database
        self.folder = folder
        self._watch_lock = threading.Lock()
        self._copied_through = 0  # every stored checkpoint up to here had a copy when last looked at

    def create_table(self) -> None:
        blob = "BYTEA" if self.db.dialect == "postgres" else "BLOB"
        with self.db.transaction() as cur:
            lock_schema_changes(cur, self.db.dialect)
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                " position BIGINT PRIMARY KEY,"
                f" head_hash {blob} NOT NULL,"
                " signed_at_us BIGINT NOT NULL,"
                " key_id TEXT NOT NULL,"
                f" signature {blob} NOT NULL)"
            )
            # Append-only, like the events (R3.4): a checkpoint that could be
            # rewritten would pin nothing.
            if self.db.dialect == "postgres":
                cur.execute(
                    "CREATE OR REPLACE FUNCTION strongroom_refuse_checkpoint_change() "
                    "RETURNS trigger LANGUAGE plpgsql AS $BODY$ BEGIN "
                    "RAISE EXCEPTION 'strongroom: checkpoints are append-only: % refused', TG_OP "
                    "USING ERRCODE = 'insufficient_privilege'; END; $BODY$"
                )
                cur.execute(
                    f"CREATE OR REPLACE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE "
                    f"ON {TABLE} FOR EACH ROW EXECUTE FUNCTION strongroom_refuse_checkpoint_change()"
                )
                cur.execute(
                    f"CREATE OR REPLACE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE "
                    f"ON {TABLE} FOR EACH STATEMENT EXECUTE FUNCTION strongroom_refuse_checkpoint_change()"
                )
            else:
                for action in ("UPDATE", "DELETE"):
                    cur.execute(
                        f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_{action.lower()} "
                        f"BEFORE {action} ON {TABLE} "
                        "BEGIN SELECT RAISE(ABORT, 'strongroom: checkpoints are append-only'); END"
                    )

    # -- writing ----------------------------------------------------------------------

    def add(self, checkpoint: Checkpoint) -> Checkpoint:
        """Store the checkpoint's row; `copy_missing` then copies what is stored.

        Two processes may checkpoint the same position at once; the first row
        wins, and the copy is made from the stored row, so the two places agree.
        """
        with self.db.transaction() as cur:
            cur.execute(
                f"INSERT INTO {TABLE} (position, head_hash, signed_at_us, key_id, signature)"  # nosec B608 - constant table name, bound values
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (position) DO NOTHING",
                (checkpoint.position, checkpoint.head_hash, checkpoint.signed_at_us,
                 checkpoint.key_id, checkpoint.signature),
            )
            cur.execute(
                f"SELECT position, head_hash, signed_at_us, key_id, signature FROM {TABLE}"  # nosec B608
                " WHERE position = ?",
                (checkpoint.position,),
            )
            return _checkpoint(cur.fetchone())

    def copy_to_folder(self, checkpoint: Checkpoint) -> Path:
        """One attempt at the file for `checkpoint`; an existing file is never replaced
        (a copy that differs is evidence for `audit verify`, not something to fix)."""
        make_private_folder(self.folder)
        path = self.folder / copy_name(checkpoint.position)
        if path.exists():
            return path
        temporary = path.with_suffix(f".tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            # 0600: who signed what, and when, is for the operator and the auditors.
            with os.fdopen(open_private(temporary), "wb") as handle:
                handle.write(checkpoint_file(checkpoint))
                handle.flush()
                os.fsync(handle.fileno())
            # A hard link never replaces: if another thread or process made the file
            # between the check above and now (or someone changed it), theirs stays
            # and `copy_matches` judges it; os.replace would overwrite evidence.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            with contextlib.suppress(OSError):  # the first error is the one to report
                temporary.unlink()
        return path

    def copy_missing(self, *, everything: bool = False) -> CopyOutcome:
        """Copy every stored checkpoint that has no file in the folder, oldest first.

        Only positions past the last one known copied are looked at, unless
        `everything`; the first pass in a process looks at all of them. Each copy is
        tried `COPY_ATTEMPTS` times; once one still fails, the rest are not tried
        (the folder is what is broken) and are reported missing with it.
        """
        missing = self._missing(everything=everything)
        made: list[int] = []
        for index, checkpoint in enumerate(missing):
            error = self._copy_with_retries(checkpoint)
            if error is not None:
                failed = tuple(c.position for c in missing[index:])
                return CopyOutcome(self.folder, tuple(made), failed, error)
            made.append(checkpoint.position)
        if made:
            self._missing()  # moves past what was just copied
        return CopyOutcome(self.folder, tuple(made))

    def _copy_with_retries(self, checkpoint: Checkpoint) -> str | None:
        """None once the file is there; else the kind of the last OS error."""
        error = "OSError"
        for attempt in range(COPY_ATTEMPTS):
            try:
                self.copy_to_folder(checkpoint)
                return None
            except OSError as exc:
                error = type(exc).__name__
                if attempt < len(_COPY_PAUSES):
                    time.sleep(_COPY_PAUSES[attempt])
        return error

    # -- the copies still missing ---------------------------------------------------------

    def _present(self) -> set[str]:
        try:
            return set(os.listdir(self.folder))
        except OSError:
            return set()

    def _after(self, position: int) -> list[Checkpoint]:
        with self.db.transaction(write=False) as cur:
            cur.execute(
                f"SELECT position, head_hash, signed_at_us, key_id, signature FROM {TABLE}"  # nosec B608
                " WHERE position > ? ORDER BY position",
                (position,),
            )
            rows = cur.fetchall()
        return [_checkpoint(row) for row in rows]

    def _missing(self, *, everything: bool = False) -> list[Checkpoint]:
        with self._watch_lock:
            start = 0 if everything else self._copied_through
        stored = self._after(start)
        present = self._present()
        copied_through = start
        for checkpoint in stored:
            if copy_name(checkpoint.position) not in present:
                break
            copied_through = checkpoint.position
        with self._watch_lock:
            self._copied_through = max(self._copied_through, copied_through)
        return [c for c in stored if copy_name(c.position) not in present]

    def overdue_copies(self, grace_seconds: float, now: datetime | None = None) -> list[Checkpoint]:
        """Stored checkpoints signed more than `grace_seconds` ago that have no copy.

        Cheap enough for a readiness probe: after the first call only checkpoints
        past the last one seen copied are read (a copy deleted later is what
        `audit verify` is for).
        """
        cutoff = epoch_micros(now or utc_now()) - int(grace_seconds * 1_000_000)
        return [c for c in self._missing() if c.signed_at_us <= cutoff]

    def copy_matches(self, checkpoint: Checkpoint) -> bool:
        """The folder holds a copy of exactly this checkpoint."""
        try:
            text = (self.folder / copy_name(checkpoint.position)).read_text(encoding="utf-8")
            return Checkpoint.from_json(json.loads(text)) == checkpoint
        except (OSError, ValueError, KeyError, TypeError):
            return False

    # -- reading ----------------------------------------------------------------------

    def in_database(self) -> list[Checkpoint]:
        with self.db.transaction(write=False) as cur:
            cur.execute(
                f"SELECT position, head_hash, signed_at_us, key_id, signature FROM {TABLE}"  # nosec B608
                " ORDER BY position"
            )
            rows = cur.fetchall()
        return [_checkpoint(row) for row in rows]

    def latest_in_database(self) -> Checkpoint | None:
        with self.db.transaction(write=False) as cur:
            cur.execute(
                f"SELECT position, head_hash, signed_at_us, key_id, signature FROM {TABLE}"  # nosec B608
                " ORDER BY position DESC LIMIT 1"
            )
            row = cur.fetchone()
        return None if row is None else _checkpoint(row)

    def in_folder(self) -> tuple[list[Checkpoint], list[str]]:
        """Checkpoints copied to the folder, and the names of files that do not parse."""
        return read_checkpoint_files(self.folder)


class Checkpointer:
    """Writes a signed checkpoint every N rows or T seconds after rows were committed.

    `after_commit` is a recorder commit listener: it only notes the position and
    wakes a background thread, so a request never waits for a signature or a file.
    Several processes each checkpoint what they see; duplicates are harmless.
    """

    def __init__(
        self,
        recorder: ChainHead,
        store: CheckpointStore,
        signer: CheckpointSigner,
        *,
        every_rows: int = DEFAULT_EVERY_ROWS,
        every_seconds: float = DEFAULT_EVERY_SECONDS,
    ) -> None:
        self.recorder = recorder
        self.store = store
        self.signer = signer
        self.every_rows = max(1, every_rows)
        self.every_seconds = max(0.0, every_seconds)
        self._cond = threading.Condition()
        # One signature at a time in this process: the background thread and a
        # caller (a command, `checkpoint()`) could otherwise both read the head and
        # the slower one store its older position after the newer one, which a
        # backup taken in between would never carry.
        self._signing = threading.Lock()
        self._loaded = False
        self._last_position = 0
        self._last_time = 0.0  # wall clock (seconds) of the latest checkpoint known
        self._committed_position = 0
        self._retry_at = 0.0
        self._copies_pending = False
        self._copy_retry_at = 0.0
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- the commit listener ------------------------------------------------------------

    def after_commit(self, positions: Sequence[int]) -> None:
        with self._cond:
            self._committed_position = max(self._committed_position, max(positions))
            if self._stopping:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="strongroom-checkpointer", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    # -- checkpoints ----------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head (see `sign`), then copy every checkpoint still uncopied.

        A copy that fails is logged and retried later (`copy_missing`); it never
        undoes or hides the row, which is committed.
        """
        made = self.sign()
        self.copy_missing()
        return made

    def sign(self) -> Checkpoint | None:
        """Store a signed checkpoint of the head unless the latest already covers it.

        The rows since the latest checkpoint are verified first: a checkpoint
        attests that the chain from the one before is intact, so the signer never
        vouches for rows someone changed behind its back (ChainBroken instead).
        """
        self._load_latest()
        with self._signing:
            head = self.recorder.chain_head()
            if head is None:
                return None
            position, head_hash = head
            with self._cond:
                if position <= self._last_position:
                    return None
            self._verify_up_to(position)
            checkpoint = self.store.add(sign_checkpoint(self.signer, position, head_hash, utc_now()))
            with self._cond:
                if position > self._last_position:
                    self._last_position = position
                    self._last_time = time.time()
        return checkpoint

    def copy_missing(self, *, everything: bool = False) -> CopyOutcome:
        """Copy what has no copy yet; on failure, log it and retry from the thread later."""
        outcome = self.store.copy_missing(everything=everything)
        with self._cond:
            self._copies_pending = not outcome.complete
            if self._copies_pending:
                self._copy_retry_at = time.time() + _RETRY_SECONDS
        if not outcome.complete:
            log.error(
                "checkpoint copy to %s failed (%s) after %d attempts; checkpoints with no copy: %d "
                "(first at position %d); the rows are stored and the copy will be retried",
                outcome.folder, outcome.error, COPY_ATTEMPTS, len(outcome.failed), outcome.failed[0],
            )
        return outcome

    def flush(self) -> None:
        """Checkpoint what this process wrote since the last checkpoint, if anything.

        A short-lived process (a command) calls this before it exits, so its rows
        do not wait for another process to pin them. Errors are logged, not raised:
        the rows are committed whatever happens here.
        """
        with self._cond:
            pending = self._committed_position > self._last_position
        if not pending:
            return
        try:
            self.checkpoint()
        except ChainBroken as exc:
            log.error("chain verification failed; no checkpoint signed: %s", exc)
        except Exception as exc:  # noqa: BLE001 - see above
            log.error("final checkpoint failed: %s", type(exc).__name__)

    def close(self) -> None:
        """Stop the thread (without a last checkpoint: the database may be gone)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=2)

    def _verify_up_to(self, position: int) -> None:
        from infrastructure.audit.verify import ChainVerifier, chain_v2_from, iter_rows

        latest = self.store.latest_in_database()
        keys = {self.signer.key_id: self.signer.public_key}
        verifier = ChainVerifier([] if latest is None else [latest], keys, start=latest,
                                 v2_from=chain_v2_from(self.recorder))
        verifier.feed(iter_rows(self.recorder, start=1 if latest is None else latest.position, stop=position))
        report = verifier.finish()
        if not report.intact:
            raise ChainBroken(report.summary())

    # -- the background thread ------------------------------------------------------------

    def _load_latest(self) -> None:
        if self._loaded:
            return
        latest = self.store.latest_in_database()
        with self._cond:
            if latest is not None and latest.position > self._last_position:
                self._last_position = latest.position
                self._last_time = latest.signed_at_us / 1_000_000
            self._loaded = True

    def _seconds_until_due(self) -> float | None:
        """None when nothing needs a checkpoint or a copy; else seconds to wait (0: now)."""
        now = time.time()
        if self._committed_position <= self._last_position:
            if self._copies_pending:  # nothing to sign, but a copy to retry
                return max(0.0, self._copy_retry_at - now)
            return None
        if now < self._retry_at:
            return self._retry_at - now
        if self._committed_position - self._last_position >= self.every_rows:
            return 0.0
        return max(0.0, self._last_time + self.every_seconds - now)

    def _run(self) -> None:
        try:
            self._load_latest()
        except Exception as exc:  # noqa: BLE001 - retried below
            log.error("reading the latest checkpoint failed: %s", type(exc).__name__)
        while True:
            with self._cond:
                while not self._stopping:
                    wait = self._seconds_until_due()
                    if wait == 0.0:
                        break
                    self._cond.wait(wait)
                if self._stopping:
                    return
            try:
                self.checkpoint()
            except ChainBroken as exc:
                # The message names positions and what is wrong, never row contents.
                log.error("chain verification failed; no checkpoint signed: %s", exc)
                with self._cond:
                    self._retry_at = time.time() + max(_RETRY_SECONDS, self.every_seconds)
            except Exception as exc:  # noqa: BLE001 - a checkpoint failure must not kill the thread
                log.error("checkpoint failed: %s", type(exc).__name__)
                with self._cond:
                    self._retry_at = time.time() + _RETRY_SECONDS
                    if self._copies_pending:
                        self._copy_retry_at = self._retry_at
