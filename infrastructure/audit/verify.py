"""Verifying the chain and its checkpoints (R3.3): no decryption key needed.

Each row is checked two ways: its *link* (its `prev_hash` equals the stored hash of
the row before it) and its *contents* (recomputing its hash from its clear columns,
the digest of its ciphertext and, from the recorded v2 start on, its metadata
digest gives its stored `row_hash`; chain.py). A row at or after the v2 start with
no metadata digest is named too: Strongroom's mapper never writes one. A changed byte or
stamp breaks the contents of one row; a deleted, inserted or reordered row breaks a
link; so each problem is named at the row where it is. Then every checkpoint (from
the table and from the folder copy) must carry a valid signature and name a row
that exists with exactly the signed hash: that catches a truncated tail and a
history rewritten with every later hash recomputed.

A *witness* (`audit verify --witness DIR`: checkpoints a backup target kept, out of
the database owner's reach) catches what an owner who cuts back the log, the
checkpoint table and the checkpoint folder together leaves intact: each witnessed
checkpoint must verify, every one the rows reach must name a row with exactly its
hash ("diverges"), and the head must not be behind the newest ("truncated").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from infrastructure.audit.chain import GENESIS, NO_METADATA, ChainRow, row_hash
from infrastructure.audit.checkpoints import Checkpoint, read_checkpoint_files
from infrastructure.audit.signer import signature_valid

PAGE = 2000
MAX_PROBLEMS = 50


class ChainRows(Protocol):
    def select_chain_rows(self, start: int, limit: int, stop: int | None = None) -> list[ChainRow]: ...


def chain_v2_from(recorder: Any) -> int:
    """The first position chained v2 in `recorder`'s table (see chain.py)."""
    return int(recorder.chain_v2_from())


def iter_rows(recorder: ChainRows, start: int = 1, stop: int | None = None, page: int = PAGE) -> Iterator[ChainRow]:
    """Every row from `start` to `stop` in position order, a page at a time."""
    while True:
        rows = recorder.select_chain_rows(start, page, stop)
        yield from rows
        if len(rows) < page:
            return
        start = rows[-1].position + 1


@dataclass(frozen=True, order=True)
class Problem:
    position: int
    what: str

    def as_json(self) -> dict[str, Any]:
        return {"position": self.position, "what": self.what}


@dataclass
class Report:
    """What a verification found; `intact` only when nothing is wrong."""

    rows: int = 0
    first_position: int | None = None
    head_position: int | None = None
    head_hash: bytes | None = None
    checkpoints_verified: int = 0
    latest_checkpoint: Checkpoint | None = None
    started_from: str = "the first row"
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Checkpoints signed more than `copy_grace_seconds` ago with no copy in the
    # checkpoint folder: not tampering by themselves, but the run fails (`passed`).
    copies_missing: list[int] = field(default_factory=list)
    copy_grace_seconds: float | None = None

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def passed(self) -> bool:
        """The chain is intact and every checkpoint past the grace period has its copy."""
        return self.intact and not self.copies_missing

    def copies_missing_sentence(self) -> str | None:
        if not self.copies_missing:
            return None
        count = len(self.copies_missing)
        shown = ", ".join(str(p) for p in self.copies_missing[:10]) + (", ..." if count > 10 else "")
        grace = f"{self.copy_grace_seconds:g}" if self.copy_grace_seconds is not None else "?"
        return (f"{count} checkpoint{'s' if count != 1 else ''} signed more than {grace} s ago "
                f"{'have' if count != 1 else 'has'} no copy in the checkpoint folder (position"
                f"{'s' if count != 1 else ''} {shown}): run `strongroom audit checkpoint` once the "
                "folder is writable")

    @property
    def first_problem(self) -> Problem | None:
        return min(self.problems) if self.problems else None

    def as_json(self) -> dict[str, Any]:
        latest = self.latest_checkpoint
        first = self.first_problem
        return {
            "intact": self.intact,
            "rows_checked": self.rows,
            "started_from": self.started_from,
            "first_position": self.first_position,
            "head": None if self.head_position is None else {
                "position": self.head_position,
                "hash": self.head_hash.hex() if self.head_hash else None,
            },
            "checkpoints_verified": self.checkpoints_verified,
            "latest_checkpoint": None if latest is None else {
                "position": latest.position,
                "signed_at": latest.signed_at.isoformat(),
                "key_id": latest.key_id,
            },
            "first_bad_position": None if first is None else first.position,
            "problems": [p.as_json() for p in sorted(self.problems)],
            "notes": list(self.notes),
            "passed": self.passed,
            "checkpoint_copies_missing": list(self.copies_missing),
        }

    def summary(self) -> str:
        missing = self.copies_missing_sentence()
        if self.intact and missing is not None:
            return f"CHECKPOINT COPIES MISSING: {missing}; the chain itself is intact ({self._intact_summary()})"
        if self.intact:
            return self._intact_summary()
        return self._tampering_summary()

    def _intact_summary(self) -> str:
        latest = self.latest_checkpoint
        covered = (
            f"; latest checkpoint at position {latest.position}, signed {latest.signed_at.isoformat()}"
            if latest is not None else "; no checkpoint yet"
        )
        head = "empty log" if self.head_position is None else f"head at position {self.head_position}"
        return (
            f"chain intact: {self.rows} rows checked from {self.started_from}, {head}, "
            f"{self.checkpoints_verified} checkpoints verified{covered}"
        )

    def _tampering_summary(self) -> str:
        first = self.first_problem
        assert first is not None  # noqa: S101 - not intact means a problem exists
        more = len(self.problems) - 1
        extra = f" ({more} more problem{'s' if more != 1 else ''} found)" if more else ""
        return f"TAMPERING FOUND at position {first.position}: {first.what}{extra}"


class ChainVerifier:
    """Checks rows fed in position order, then the checkpoints against them."""

    def __init__(
        self,
        checkpoints: Sequence[Checkpoint],
        public_keys: Mapping[str, Ed25519PublicKey],
        *,
        start: Checkpoint | None = None,
        first_prev: bytes = GENESIS,
        v2_from: int = 1,
        witnessed: Sequence[Checkpoint] | None = None,
        witness_until_us: int | None = None,
    ) -> None:
        """`witnessed`: checkpoints from a witness folder (None: no witness given).
        `witness_until_us`: only witnessed checkpoints signed at or before it must be
        reached by the rows (a bundle's window end); None: all of them."""
        self.report = Report()
        self.v2_from = v2_from
        self.public_keys = public_keys
        self.trusted: list[Checkpoint] = []
        for checkpoint in sorted(checkpoints, key=lambda c: c.position):
            if self._signature_ok(checkpoint):
                self.trusted.append(checkpoint)
        self.report.checkpoints_verified = len(self.trusted)
        self.report.latest_checkpoint = self.trusted[-1] if self.trusted else None
        self.witnessed: list[Checkpoint] | None = None
        self._witness_until_us = witness_until_us
        if witnessed is not None:
            self.witnessed = [c for c in sorted(witnessed, key=lambda c: c.position)
                              if self._signature_ok(c, "witnessed ")]
        self._wanted = {c.position for c in self.trusted} | {c.position for c in self.witnessed or ()}
        self._hash_at: dict[int, bytes] = {}
        self._start = start
        self._expected_prev: bytes | None = first_prev
        self._prev_position: int | None = None
        if start is not None:
            self.report.started_from = f"the checkpoint at position {start.position}"
            self._expected_prev = None  # the start row's own hash is checked instead

    def _problem(self, position: int, what: str) -> None:
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(Problem(position, what))

    def _signature_ok(self, checkpoint: Checkpoint, which: str = "") -> bool:
        key = self.public_keys.get(checkpoint.key_id)
        when = checkpoint.signed_at.isoformat()
        if key is None:
            self._problem(
                checkpoint.position,
                f"the {which}checkpoint signed {when} names key {checkpoint.key_id}, which is not this "
                "instance's audit key",
            )
            return False
        if not signature_valid(key, checkpoint.signature, checkpoint.message()):
            self._problem(
                checkpoint.position,
                f"the {which}checkpoint signed {when} does not verify: its signature, position, "
                "head hash or time was changed",
            )
            return False
        return True

    def feed(self, rows: Iterable[ChainRow]) -> None:
        # The loop runs once per stored row: state lives in locals and is written
        # back once, and the common case (a good row) takes two comparisons.
        report = self.report
        wanted, hash_at = self._wanted, self._hash_at
        expected_prev, prev_position = self._expected_prev, self._prev_position
        v2_from = self.v2_from
        count = 0
        row: ChainRow | None = None
        try:
            for row in rows:
                if report.first_position is None:
                    report.first_position = row.position
                    if self._start is not None:
                        self._check_start_row(row)
                if row.error is not None:
                    self._problem(row.position, f"the row cannot be read ({row.error}): it was corrupted")
                else:
                    if expected_prev is not None and row.prev_hash != expected_prev:
                        self._broken_link(row.position, prev_position)
                    meta = None
                    if row.position >= v2_from:
                        meta = row.meta_digest
                        if meta is None:
                            self._problem(
                                row.position,
                                f"the row carries no metadata digest, though the chain is v2 from "
                                f"position {v2_from}: it was not written by Strongroom's mapper",
                            )
                            meta = NO_METADATA
                    if row_hash(row.prev_hash, row.position, row.stream_id, row.version, row.topic,
                                row.recorded_at_us, row.digest, meta) != row.row_hash:
                        self._problem(
                            row.position,
                            "the row's contents do not match its hash: its ciphertext, stream id, "
                            "version, topic or recorded_at was changed, or it was moved here",
                        )
                if row.position in wanted:
                    hash_at[row.position] = row.row_hash
                count += 1
                prev_position, expected_prev = row.position, row.row_hash
        finally:
            report.rows += count
            if row is not None:
                report.head_position, report.head_hash = row.position, row.row_hash
            self._expected_prev, self._prev_position = expected_prev, prev_position

    def _check_start_row(self, row: ChainRow) -> None:
        start = self._start
        assert start is not None  # noqa: S101 - only called when starting at a checkpoint
        if row.position != start.position:
            self._problem(
                start.position,
                f"row {start.position}, named by the trusted checkpoint, is missing",
            )
        elif row.row_hash != start.head_hash:
            self._problem(
                row.position,
                f"row {row.position}'s hash differs from the trusted checkpoint's head: "
                "history at or before it was rewritten",
            )

    def _broken_link(self, position: int, previous: int | None) -> None:
        if previous is None:
            self._problem(
                position,
                "the first row does not start the chain (its prev_hash is not the "
                "genesis value): rows before it were deleted",
            )
            return
        missing = ""
        if position > previous + 1:
            span = str(previous + 1) if position == previous + 2 else f"{previous + 1}-{position - 1}"
            missing = f" (positions {span} are absent)"
        self._problem(
            position,
            f"the row does not follow row {previous}: its prev_hash is not that row's hash, "
            f"so a row was deleted, inserted or reordered here{missing}",
        )

    def finish(self) -> Report:
        report = self.report
        head = report.head_position
        for checkpoint in self.trusted:
            if self._start is not None and checkpoint.position < self._start.position:
                continue  # before the trusted start: not re-read this time
            when = checkpoint.signed_at.isoformat()
            if head is None or checkpoint.position > head:
                end = "the log is empty" if head is None else f"the log ends at position {head}"
                first_missing = 1 if head is None else head + 1
                self._problem(
                    first_missing,
                    f"{end} but the checkpoint signed {when} covers rows up to position "
                    f"{checkpoint.position}: rows were removed from the tail",
                )
            elif checkpoint.position not in self._hash_at:
                self._problem(
                    checkpoint.position,
                    f"row {checkpoint.position}, named by the checkpoint signed {when}, is missing",
                )
            elif self._hash_at[checkpoint.position] != checkpoint.head_hash:
                self._problem(
                    checkpoint.position,
                    f"row {checkpoint.position}'s hash differs from the head signed in the "
                    f"checkpoint of {when}: history at or before it was rewritten",
                )
        if self.witnessed is not None:
            self._check_witness()
        return report

    def _check_witness(self) -> None:
        """Every witnessed checkpoint the rows reach must name a row with its exact
        hash; the head must reach the newest one (signed by `witness_until_us`)."""
        report, witnessed = self.report, self.witnessed or []
        head = report.head_position or 0
        lowest = self._start.position if self._start is not None else (report.first_position or 1)
        for checkpoint in witnessed:
            if lowest <= checkpoint.position <= head and self._hash_at.get(checkpoint.position) != checkpoint.head_hash:
                self._problem(
                    checkpoint.position,
                    f"diverges at position {checkpoint.position}: the witness's checkpoint signed "
                    f"{checkpoint.signed_at.isoformat()} names another hash for this row (or no row): "
                    "history at or before it was rewritten",
                )
        due = [c for c in witnessed
               if self._witness_until_us is None or c.signed_at_us <= self._witness_until_us]
        if due and due[-1].position > head:
            newest = due[-1]
            self._problem(
                head + 1,
                f"truncated: the witness has a checkpoint at position {newest.position} (signed "
                f"{newest.signed_at.isoformat()}) beyond the head {head}: rows were removed from the tail",
            )
        if witnessed:
            report.notes.append(
                f"witness: {len(witnessed)} checkpoints verified, the newest at position {witnessed[-1].position}")


def merge_checkpoints(
    in_database: Sequence[Checkpoint], in_folder: Sequence[Checkpoint]
) -> tuple[list[Checkpoint], list[Problem], list[str]]:
    """One list from both places; a checkpoint in one place only, or differing, is named.

    Missing from the database while its copy exists is a problem (checkpoint rows
    are append-only, so someone deleted it); missing from the folder is only a note
    (a copy can be lost without anything in the log being wrong).
    """
    by_position: dict[int, Checkpoint] = {c.position: c for c in in_database}
    problems: list[Problem] = []
    notes: list[str] = []
    merged = dict(by_position)
    copies = {c.position: c for c in in_folder}
    for position, copy in copies.items():
        stored = by_position.get(position)
        if stored is None:
            problems.append(Problem(
                position,
                f"the checkpoint at position {position} is in the checkpoint folder but not in "
                "the database: checkpoint rows were deleted",
            ))
            merged[position] = copy
        elif stored != copy:
            problems.append(Problem(
                position,
                f"the checkpoint at position {position} differs between the database and the "
                "checkpoint folder",
            ))
            merged[position] = copy  # both are checked: keep the copy here...
    missing = sorted(set(by_position) - set(copies))
    if missing:
        notes.append(
            f"{len(missing)} checkpoints have no copy in the checkpoint folder "
            f"(first at position {missing[0]})"
        )
    checkpoints = list(merged.values())
    # ...and the stored one too, so a forged or changed one is caught either way.
    checkpoints += [by_position[p] for p in copies if p in by_position and by_position[p] != copies[p]]
    return checkpoints, problems, notes


def read_witness(folder: Path) -> tuple[list[Checkpoint], list[Problem]]:
    """The checkpoints in a witness folder, and what is wrong with the folder itself.

    A file that does not parse, or a folder with no checkpoint at all, fails the
    run: a witness that says nothing must not pass for one that found nothing wrong.
    """
    found, unreadable = read_checkpoint_files(folder)
    problems = [Problem(int("".join(ch for ch in name if ch.isdigit()) or 0),
                        f"witness file {name} does not parse") for name in unreadable]
    if not found and not unreadable:
        problems.append(Problem(0, f"the witness folder {folder} holds no checkpoint files (checkpoint-*.json)"))
    return found, problems
