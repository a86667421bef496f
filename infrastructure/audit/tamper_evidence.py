"""Tamper evidence for one event log (R3.3): signed checkpoints of the chain head (in
the database and, as a second copy, in the checkpoint folder), verification of the
chain against them, and the audit public key beside the instance
(`audit-signing.pub`) for auditors.

The composition root (`infrastructure/composition.py:build`) wires it: it makes the
signer from the key ring, the checkpoint store over the `checkpoint_dir` setting,
and registers the checkpointer as a commit listener of the application's recorder,
so a checkpoint follows at most `checkpoint_rows` rows or `checkpoint_seconds`
seconds after a write.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.persistence import DatabaseError

from infrastructure.audit.checkpoints import (
    Checkpoint,
    Checkpointer,
    CheckpointStore,
    CopyOutcome,
)
from infrastructure.audit.signer import (
    PUBLIC_KEY_FILE,
    CheckpointSigner,
    PublicKeyError,
    key_id_of,
    load_public_key,
)
from infrastructure.audit.verify import (
    ChainVerifier,
    Problem,
    Report,
    chain_v2_from,
    iter_rows,
    merge_checkpoints,
    read_witness,
)

DEFAULT_COPY_GRACE_SECONDS = 300.0


@dataclass(frozen=True)
class CheckpointRun:
    """What `strongroom audit checkpoint` did: the latest checkpoint and its copies.

    `copied` is true only when the folder holds a file matching that checkpoint,
    read back after the copies were made: the command says "copied to" on no less.
    """

    checkpoint: Checkpoint | None
    signed_now: bool
    copies: CopyOutcome
    copied: bool


class TamperEvidence:
    """Checkpoints, verification and the published key for one event log."""

    def __init__(
        self,
        recorder: Any,
        store: CheckpointStore,
        signer: CheckpointSigner,
        checkpointer: Checkpointer,
        instance: Path,
        *,
        copy_grace_seconds: float = DEFAULT_COPY_GRACE_SECONDS,
    ) -> None:
        self.recorder = recorder
        self.store = store
        self.signer = signer
        self.checkpointer = checkpointer
        self.instance = instance
        self.copy_grace_seconds = copy_grace_seconds

    # -- the public key ---------------------------------------------------------------------

    @property
    def public_key_path(self) -> Path:
        return self.instance / PUBLIC_KEY_FILE

    def write_public_key(self) -> None:
        """Write `audit-signing.pub` once; never overwrite (a mismatch is reported)."""
        path = self.public_key_path
        if path.exists() or not self.instance.is_dir():
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return
        with os.fdopen(fd, "wb") as handle:
            handle.write(self.signer.public_pem())

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        return {self.signer.key_id: self.signer.public_key}

    def _public_key_file_problem(self) -> Problem | None:
        path = self.public_key_path
        if not path.exists():
            return None
        try:
            published = load_public_key(path.read_bytes())
        except PublicKeyError as exc:
            return Problem(0, f"{PUBLIC_KEY_FILE} is not usable ({exc})")
        if key_id_of(published) != self.signer.key_id:
            return Problem(
                0,
                f"{PUBLIC_KEY_FILE} (key {key_id_of(published)}) is not the instance's audit "
                f"signing key ({self.signer.key_id}): auditors would check against the wrong key",
            )
        return None

    # -- use ----------------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head now (None on an empty log); the latest if already covered."""
        made = self.checkpointer.checkpoint()
        return made if made is not None else self.store.latest_in_database()

    def checkpoint_run(self) -> CheckpointRun:
        """Sign the head if it is not covered, then copy every checkpoint that has no
        copy yet (all of them, not only this process's), and read the latest back."""
        made = self.checkpointer.sign()
        copies = self.checkpointer.copy_missing(everything=True)
        latest = made if made is not None else self.store.latest_in_database()
        copied = latest is not None and self.store.copy_matches(latest)
        return CheckpointRun(latest, made is not None, copies, copied)

    def copy_warning(self) -> str | None:
        """For `/readyz`: a sentence when a checkpoint has had no copy for longer than
        the grace period, else None. No paths or positions: the probe is public."""
        overdue = self.store.overdue_copies(self.copy_grace_seconds)
        if not overdue:
            return None
        return (f"{len(overdue)} signed checkpoint{'s' if len(overdue) != 1 else ''} older than "
                f"{self.copy_grace_seconds:g} s {'have' if len(overdue) != 1 else 'has'} no copy in the "
                "checkpoint folder")

    def verify(self, *, from_checkpoint: bool = False, witness: Path | None = None) -> Report:
        """Recompute the chain (from the first row, or the latest valid checkpoint),
        and hold it against the checkpoints in the `witness` folder if one is given.

        A checkpoint signed longer than the grace period ago with no copy in the
        folder fails the run too (`Report.copies_missing`), though the chain may be
        intact: the second place is what makes a truncated tail visible.
        """
        return verify_chain(self.recorder, self.store, self.public_keys(),
                            copy_grace_seconds=self.copy_grace_seconds, from_checkpoint=from_checkpoint,
                            key_problem=self._public_key_file_problem(), witness=witness)

    def flush(self) -> None:
        """Checkpoint what this process wrote, before a command exits."""
        self.checkpointer.flush()

    def close(self) -> None:
        try:
            self.recorder.commit_listeners.remove(self.checkpointer.after_commit)
        except ValueError:
            pass
        self.checkpointer.close()


def verify_chain(recorder: Any, store: CheckpointStore, keys: dict[str, Ed25519PublicKey], *,
                 copy_grace_seconds: float, from_checkpoint: bool = False,
                 key_problem: Problem | None = None, witness: Path | None = None) -> Report:
    """Recompute the chain in `recorder` and check the checkpoints in `store` against `keys`.

    Needs no KEK: the chain hashes ciphertext and clear columns (the metadata
    digest is in the clear header), and checkpoints are
    checked with public keys, so this runs with the event store, the checkpoint
    store and a public key alone (R3.3).
    """
    in_folder, unreadable = store.in_folder()
    in_database = store.in_database()
    checkpoints, problems, notes = merge_checkpoints(in_database, in_folder)
    cutoff = int((time.time() - copy_grace_seconds) * 1_000_000)
    copied = {c.position for c in in_folder}
    copies_missing = [c.position for c in in_database if c.position not in copied and c.signed_at_us <= cutoff]
    start = None
    if from_checkpoint:
        valid = ChainVerifier(checkpoints, keys).trusted
        start = valid[-1] if valid else None
    v2_from = chain_v2_from(recorder)
    witnessed, witness_problems = read_witness(witness) if witness is not None else (None, [])
    verifier = ChainVerifier(checkpoints, keys, start=start, v2_from=v2_from, witnessed=witnessed)
    report = verifier.report
    report.problems.extend(problems + witness_problems)
    report.notes.extend(notes)
    report.copies_missing = copies_missing
    report.copy_grace_seconds = copy_grace_seconds
    for name in unreadable:
        digits = "".join(ch for ch in name if ch.isdigit())
        report.problems.append(Problem(int(digits or 0), f"checkpoint copy {name} does not parse"))
    if key_problem is not None:
        report.problems.append(key_problem)
    try:
        verifier.feed(iter_rows(recorder, start=start.position if start else 1))
    except DatabaseError as exc:
        # A store damaged below the rows (a mangled page) cannot be read past
        # some point: that is a finding, not a configuration error.
        after = report.head_position or 0
        report.problems.append(Problem(
            after + 1,
            f"the event store cannot be read beyond position {after} ({type(exc).__name__}): "
            "it was damaged",
        ))
        return report
    report = verifier.finish()
    if report.head_position is not None and 1 < v2_from <= report.head_position + 1:
        report.notes.append(
            f"rows before position {v2_from} were chained v1 (before the upgrade): their hashes commit to "
            "the ciphertext only, not to a metadata digest")
    return report


class KeylessVerification:
    """`audit verify` without the KEK: the event store, the checkpoint store and the
    published `audit-signing.pub`, nothing else (the composition root opens it).

    What it cannot do is confirm that the published key is the instance's own
    signing key (that key is wrapped by the KEK); the report says so in a note.
    """

    def __init__(self, recorder: Any, store: CheckpointStore, public_key: Ed25519PublicKey,
                 *, copy_grace_seconds: float, close: Any) -> None:
        self.recorder = recorder
        self.store = store
        self.public_key = public_key
        self.copy_grace_seconds = copy_grace_seconds
        self._close = close

    def verify(self, *, from_checkpoint: bool = False, witness: Path | None = None) -> Report:
        report = verify_chain(self.recorder, self.store, {key_id_of(self.public_key): self.public_key},
                              copy_grace_seconds=self.copy_grace_seconds, from_checkpoint=from_checkpoint,
                              witness=witness)
        report.notes.append(
            f"verified without the KEK, against {PUBLIC_KEY_FILE} (key {key_id_of(self.public_key)}); "
            "that it is the instance's signing key was not confirmed"
        )
        return report

    def close(self) -> None:
        self._close()
