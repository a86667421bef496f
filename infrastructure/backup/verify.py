"""`backup verify`: integrity of a target's backups without restoring them (R4.3).

Checked: every manifest's signature (against this installation's key, never the
key written in the manifest), the link from each increment to the one before (id,
manifest hash, positions), every segment's presence and SHA-256, the rows inside
each segment (positions rising, within the manifest's range, counted right),
chain continuity across segments and increments when the table has chain columns
(each row's `prev_hash` is the `row_hash` before it), the key backup each manifest
names, and that the last backup the audit log recorded for this target is still
there (a deleted newest increment is otherwise invisible). Every problem names
the file it was found in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from infrastructure.backup.create import complete_manifests
from infrastructure.backup.eventrows import CHAIN_HEAD, CHAIN_PREV
from infrastructure.backup.manifest import (
    EVENTS,
    KEYS,
    BackupCorrupt,
    ManifestSigner,
    decode_segment,
    manifest_path,
    parse_manifest,
    sha256,
)
from infrastructure.backup.keys import GENERATIONS_SUBJECT
from infrastructure.backup.targets import Target


@dataclass(frozen=True)
class Problem:
    file: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


@dataclass
class VerifyReport:
    target: str
    backups: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target, "ok": self.ok, "backups": self.backups,
            "problems": [{"file": p.file, "problem": p.problem} for p in self.problems],
        }


def read_segment(target: Target, entry: dict[str, Any]) -> bytes:
    """A segment's bytes, checked against its manifest entry."""
    file = entry["file"]
    try:
        data = target.read(file)
    except FileNotFoundError:
        raise BackupCorrupt(file, "segment is missing") from None
    if sha256(data) != entry["sha256"]:
        raise BackupCorrupt(file, "SHA-256 does not match the manifest (changed or corrupted)")
    return data


def segment_rows(target: Target, entry: dict[str, Any], columns: list[str]) -> list[list[Any]]:
    data = read_segment(target, entry)
    seg_columns, rows = decode_segment(entry["file"], data)
    if seg_columns != columns:
        raise BackupCorrupt(entry["file"], "columns differ from the manifest's")
    if len(rows) != entry["rows"]:
        raise BackupCorrupt(entry["file"], f"holds {len(rows)} rows, the manifest says {entry['rows']}")
    return rows


def manifest_chain(target: Target, signer: ManifestSigner, report: VerifyReport) -> list[dict[str, Any]]:
    """Every complete event manifest, signature- and link-checked, oldest first."""
    chain: list[dict[str, Any]] = []
    prior: tuple[dict[str, Any], str] | None = None
    for file, data in complete_manifests(target):
        try:
            document = parse_manifest(file, data)
            signer.check(file, document)
        except BackupCorrupt as exc:
            report.problems.append(Problem(exc.file, exc.problem))
            prior = None
            continue
        expected = None if prior is None else {"backup_id": prior[0]["backup_id"], "manifest_sha256": prior[1]}
        if chain or document.get("previous") is not None:
            if document.get("previous") != expected:
                report.problems.append(Problem(file, "does not follow the previous backup (an increment is missing or was replaced)"))
            elif int(document["after_position"]) != int(prior[0]["last_position"]):  # type: ignore[index]
                report.problems.append(Problem(file, "positions do not continue from the previous backup"))
        elif int(document.get("after_position", 0)) != 0:
            report.problems.append(Problem(file, "first backup does not start at the beginning of the log"))
        chain.append(document)
        prior = (document, sha256(data))
    return chain


def verify_target(
    target: Target,
    signer: ManifestSigner,
    *,
    last_recorded: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    report = VerifyReport(target=target.name)
    chain = manifest_chain(target, signer, report)
    head: Any = None
    for document in chain:
        file = manifest_path(EVENTS, document["backup_id"])
        columns = list(document["columns"])
        position = int(document["after_position"])
        chained = document.get("chain") is not None
        at = {name: i for i, name in enumerate(columns)}
        if document.get("checkpoints") is not None:
            try:
                read_segment(target, document["checkpoints"])
            except BackupCorrupt as exc:
                report.problems.append(Problem(exc.file, exc.problem))
        for entry in document["segments"]:
            try:
                rows = segment_rows(target, entry, columns)
            except BackupCorrupt as exc:
                report.problems.append(Problem(exc.file, exc.problem))
                head = None  # continuity cannot be checked across a bad segment
                continue
            for row in rows:
                if not isinstance(row[0], int) or row[0] <= position or row[0] > int(document["last_position"]):
                    report.problems.append(Problem(entry["file"], f"row at position {row[0]} is out of order or range"))
                    break
                position = row[0]
                if chained:
                    if head is not None and row[at[CHAIN_PREV]] != head:
                        report.problems.append(Problem(entry["file"], f"hash chain broken at position {row[0]}"))
                    head = row[at[CHAIN_HEAD]]
            if progress is not None:
                progress(len(rows))
        if chained and head is not None and document["chain"].get("head") != head:
            report.problems.append(Problem(file, "chain head does not match the last row"))
        _verify_keys(target, signer, document, report)
        report.backups.append(_summary(document))
    if last_recorded is not None and last_recorded not in {d["backup_id"] for d in chain}:
        report.problems.append(Problem(
            manifest_path(EVENTS, last_recorded),
            "the newest backup recorded in the audit log is missing from this target (truncated)",
        ))
    return report


def _verify_keys(target: Target, signer: ManifestSigner, document: dict[str, Any], report: VerifyReport) -> None:
    keys = document.get("keys") or {}
    file = keys.get("file", "keys manifest")
    try:
        data = target.read(file)
    except FileNotFoundError:
        report.problems.append(Problem(file, "key backup manifest is missing"))
        return
    try:
        if sha256(data) != keys.get("sha256"):
            raise BackupCorrupt(file, "key manifest SHA-256 does not match the event manifest")
        keys_manifest = parse_manifest(file, data)
        signer.check(file, keys_manifest)
        if keys_manifest.get("changes"):
            # A key backup of changes restores only with the one before it (issue 15 item 5).
            previous = keys_manifest["previous"]
            try:
                linked = target.read(previous["file"])
            except FileNotFoundError:
                raise BackupCorrupt(file, "the key backup this one adds to is missing") from None
            if sha256(linked) != previous["sha256"]:
                raise BackupCorrupt(previous["file"], "key manifest SHA-256 does not match the key backup after it")
        backup_id = str(keys_manifest["backup_id"])
        if not target.list(f"{KEYS}/{backup_id}") and signer.keyring.store.is_destroyed(
                GENERATIONS_SUBJECT, f"key-backup:{backup_id}"):
            # An expired key backup, pruned on purpose (backup/generations.py): only this
            # installation could destroy its generation key; a segment deleted by anyone
            # else, with its generation alive, is still reported missing.
            return
        for entry in keys_manifest["segments"]:
            json.loads(read_segment(target, entry))
    except BackupCorrupt as exc:
        report.problems.append(Problem(exc.file, exc.problem))
    except ValueError:
        report.problems.append(Problem(file, "key backup does not parse"))


def _summary(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "backup_id": document["backup_id"], "created_at": document["created_at"],
        "after_position": document["after_position"], "last_position": document["last_position"],
        "rows": document["rows"], "segments": len(document["segments"]),
        "bytes": sum(int(s["bytes"]) for s in document["segments"]),
        "last_recorded_at": document.get("last_recorded_at"),
        "chain_head": (document.get("chain") or {}).get("head"),
    }


def list_backups(target: Target, signer: ManifestSigner) -> VerifyReport:
    """Manifests only (signatures and links), no segment reads: what `backup list` shows."""
    report = VerifyReport(target=target.name)
    report.backups = [_summary(d) for d in manifest_chain(target, signer, report)]
    return report


def restorable_segments(target: Target, chain: list[dict[str, Any]]) -> Iterator[tuple[list[str], list[list[Any]]]]:
    """(columns, rows) per segment in position order, each checked as it is read.

    Columns travel per increment: a migration that adds a column (the hash chain,
    say) between two increments leaves the older rows without it.
    """
    for document in chain:
        columns = list(document["columns"])
        for entry in document["segments"]:
            yield columns, segment_rows(target, entry, columns)
