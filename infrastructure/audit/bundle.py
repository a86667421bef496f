"""Evidence bundles for external auditors (R6.3): export, and verify offline.

A bundle is a folder:

    manifest.json         what the bundle covers, and the SHA-256 and size of every file
    manifest.sig          Ed25519 signature (hex) of manifest.json, by the audit key
    audit-signing.pub     the public key (PEM); compare its fingerprint with the
                          instance's published one, or pin it with --public-key
    rows.jsonl            one row per line: position, stream id, version, topic,
                          recorded_at, SHA-256 of the ciphertext, prev_hash, row_hash,
                          whether it is inside the requested window, and its metadata
                          (who, session, request, address, purpose; for access records
                          what was seen: kinds, customer ids, field names; for a
                          customer's change the names of the fields it set); from the
                          chain's v2 start on, also the salt and metadata digest
    checkpoints.jsonl     the signed checkpoints over the exported range
    reports/verification.json   the live chain verification at export time
    reports/activity.json       counts over the window: by actor, kind and event
    reports/staff-directory.json  who each actor id is (username, roles, portfolios,
                          status, MFA) as of the window's end: staff_directory.py
    sbom.cdx.json         the CycloneDX bill of materials of the exporting installation:
                          every installed package and its version (PCI DSS 6.3.2)
    reports/r6/NAME.json  the internal-audit reports (R6.1, application/reports.py) over
                          the bundle's window positions: access review, privileged
                          actions, reveals and exports, failed logins, break-glass,
                          backups and drills, chain verification, alerts, recertification

Metadata is chained (v2 rows, see chain.py): the verifier recomputes each v2 row's
metadata digest from its salt and the canonical JSON of its `metadata`, and that
digest into the row hash, so metadata rewritten by someone who then signs the
manifest again (an insider with the KEK) breaks the chain at that row. Rows before
the v2 start (`chain_v2_from` in the manifest) are v1: their metadata is vouched
for by the export signature only, and the report says so.

The format is specified for reimplementation in docs/evidence-format.md.

Why no ciphertext: a row hash commits to the SHA-256 of its ciphertext (see
chain.py), so the digest is all a verifier needs; shipping ciphertext would hand
encrypted personal data to a third party for nothing. No values are in the bundle,
only names and ids.

Anchoring: the exported range is widened to signed checkpoints at both ends (the
latest checkpoint before the window, or the first row; a fresh checkpoint at the
head is signed first), so every row in the window is pinned by signatures: the
range's first row must carry the anchor's signed hash, and its last row a later
checkpoint's. `verify_bundle` needs no database and no keys beyond the public key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from application.clock import utc_now
from infrastructure.audit.chain import HASH_BYTES, SALT_BYTES, ChainRow, epoch_micros, meta_digest
from infrastructure.audit.checkpoints import ChainBroken, Checkpoint
from infrastructure.audit.signer import (
    PUBLIC_KEY_FILE,
    PublicKeyError,
    fingerprint_of,
    key_id_of,
    load_public_key,
    signature_valid,
)
from infrastructure.audit.tamper_evidence import TamperEvidence
from infrastructure.audit.metadata import auditor_view, canonical
from infrastructure.audit.staff_directory import staff_directory
from infrastructure.audit.verify import ChainVerifier, Problem, Report, chain_v2_from, read_witness
from infrastructure.software_inventory import write_sbom

FORMAT = "strongroom-evidence/v2"
# Bundles exported before chain v2 still verify, every row as v1 (metadata under the
# export signature only). Relabelling a newer bundle so gains nothing: its v2 rows'
# hashes do not recompute as v1.
LEGACY_FORMAT = "strongroom-evidence/v1"
_NO_V2 = 2**63 - 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
ROWS = "rows.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
STAFF_DIRECTORY = "reports/staff-directory.json"
SBOM = "sbom.cdx.json"
R6_REPORTS = "reports/r6/"
MANIFEST_TAG = b"strongroom/evidence-manifest/v1\x00"


class BundleError(Exception):
    """The bundle cannot be written (the output exists, the log is empty...)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    window_rows: int
    checkpoints: int
    key_id: str
    key_fingerprint: str
    live_chain_intact: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "rows": self.rows, "window_rows": self.window_rows,
            "checkpoints": self.checkpoints, "key_id": self.key_id,
            "key_fingerprint": self.key_fingerprint, "live_chain_intact": self.live_chain_intact,
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _row_json(row: ChainRow, in_window: bool, metadata: dict[str, Any] | None, v2: bool,
              salt: bytes | None) -> dict[str, Any]:
    data = {
        "chain": 2 if v2 else 1,
        "position": row.position,
        "stream_id": row.stream_id,
        "version": row.version,
        "topic": row.topic,
        "recorded_at": row.recorded_at.isoformat(timespec="microseconds"),
        "recorded_at_us": row.recorded_at_us,
        "state_sha256": row.digest.hex(),
        "prev_hash": row.prev_hash.hex(),
        "row_hash": row.row_hash.hex(),
        "in_window": in_window,
        "metadata": metadata,
    }
    if v2:
        data["meta_digest"] = None if row.meta_digest is None else row.meta_digest.hex()
        data["metadata_salt"] = None if salt is None else salt.hex()
    return data


def _hex(value: Any, size: int) -> bytes:
    """Exactly `size` bytes spelt as lower-case hex, or ValueError."""
    if not isinstance(value, str) or len(value) != 2 * size or value != value.lower():
        raise ValueError("expected lower-case hex")
    return bytes.fromhex(value)


def _row_from_json(data: dict[str, Any]) -> ChainRow:
    data.setdefault("chain", 1)  # a legacy bundle's rows say nothing: v1
    for name in ("position", "version", "recorded_at_us", "chain"):
        if type(data[name]) is not int:
            raise ValueError(f"{name} must be an integer")
    return ChainRow(
        position=data["position"],
        stream_id=str(data["stream_id"]),
        version=data["version"],
        topic=str(data["topic"]),
        recorded_at_us=data["recorded_at_us"],
        digest=bytes.fromhex(data["state_sha256"]),
        prev_hash=bytes.fromhex(data["prev_hash"]),
        row_hash=bytes.fromhex(data["row_hash"]),
        meta_digest=_hex(data["meta_digest"], HASH_BYTES) if data["chain"] == 2 else None,
    )


def _metadata_problem(data: dict[str, Any], v2_from: int) -> str | None:
    """Why a row's readable metadata is not the metadata its row hash commits to."""
    v2 = data["position"] >= v2_from
    if data["chain"] != (2 if v2 else 1):
        return f"the row says chain v{data['chain']}, but the chain is v2 from position {v2_from}"
    if not v2:
        return None
    try:
        salt = _hex(data.get("metadata_salt"), SALT_BYTES)
        digest = meta_digest(salt, canonical(data.get("metadata")))
    except (ValueError, TypeError):
        return "the row's metadata salt or metadata cannot be read"
    if digest.hex() != data.get("meta_digest"):
        return ("the row's metadata is not what its row hash commits to: who, session, request, "
                "address, purpose, or what was seen was changed")
    return None


# -- export -------------------------------------------------------------------------------


class _Metadata:
    """Who/when/why of a stored row, from its system part only (no values)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.mapper = app.mapper

    def of(self, notification: Any, v2: bool) -> tuple[dict[str, Any], bytes | None]:
        """(metadata, salt): for a v2 row the very canonical text that was chained,
        for a v1 row the same view built from its system part (no salt)."""
        from domain.catalogue import KeyKind

        try:
            if v2:
                chained = self.mapper.chained_metadata(notification)
                if chained is None:
                    return {"error": "the row carries no chained metadata"}, None
                salt, text = chained
                return json.loads(text), salt
            system = self.mapper.open_parts(notification, only=KeyKind.SYSTEM).get(KeyKind.SYSTEM, {})
        except Exception as exc:  # noqa: BLE001 - a row that does not open is itself evidence
            return {"error": f"{type(exc).__name__}: the system part does not decrypt"}, None
        return json.loads(canonical(auditor_view(notification.topic, system.get("_meta", {}), system))), None


def export_bundle(
    evidence: TamperEvidence,
    app: Any,
    out: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    created_by: str | None = None,
    reports: Callable[[int, int], Mapping[str, Any]] | None = None,
) -> ExportResult:
    """Write a signed evidence bundle for the window [since, until] into `out`;
    `reports(first, last)` gives the R6.1 reports over the window's positions."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} already exists and is not an empty folder; nothing was written")
    recorder = evidence.recorder
    try:
        evidence.checkpoint()  # pins the head, so the window's end is signed
    except ChainBroken:
        pass  # the live verification below says what is wrong; the bundle carries it
    report = evidence.verify()
    head = recorder.chain_head()
    if head is None:
        raise BundleError("the event log is empty: there is nothing to export")
    first = 1 if since is None else recorder.position_at(since - timedelta(microseconds=1)) + 1
    last = head[0] if until is None else recorder.position_at(until)
    checkpoints = sorted(
        ChainVerifier(evidence.store.in_database(), evidence.public_keys()).trusted, key=lambda c: c.position
    )
    anchor = next((c for c in reversed(checkpoints) if c.position < first), None)
    closing = next((c for c in checkpoints if c.position >= max(first, last)), None)
    range_from = anchor.position if anchor is not None else 1
    range_to = closing.position if closing is not None else head[0]
    covered = [c for c in checkpoints if range_from <= c.position <= range_to]

    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    (out / "reports").mkdir(mode=0o700, exist_ok=True)
    metadata = _Metadata(app)
    v2_from = chain_v2_from(recorder)
    activity: dict[str, Counter[str]] = {"by_actor": Counter(), "by_kind": Counter(), "by_event": Counter()}
    rows_written = window_rows = 0
    actors: set[str] = set()
    with open(out / ROWS, "w", encoding="utf-8") as handle:
        for row, notification in _rows_with_notifications(recorder, range_from, range_to):
            in_window = first <= row.position <= last
            v2 = row.position >= v2_from
            meta, salt = metadata.of(notification, v2) if notification is not None else (None, None)
            if in_window:
                window_rows += 1
                _count(activity, row, meta)
                actors.add(_actor_of(meta))
            handle.write(json.dumps(_row_json(row, in_window, meta, v2, salt), sort_keys=True) + "\n")
            rows_written += 1
    with open(out / CHECKPOINTS, "w", encoding="utf-8") as handle:
        for checkpoint in covered:
            handle.write(json.dumps(checkpoint.as_json(), sort_keys=True) + "\n")
    (out / PUBLIC_KEY_FILE).write_bytes(evidence.signer.public_pem())
    (out / "reports" / "verification.json").write_text(json.dumps(report.as_json(), indent=2, sort_keys=True))
    (out / "reports" / "activity.json").write_text(json.dumps(
        {name: dict(sorted(counter.items())) for name, counter in activity.items()}, indent=2, sort_keys=True
    ))
    directory = staff_directory(app, last, actors - {"None"})
    (out / STAFF_DIRECTORY).write_text(json.dumps(directory, indent=2, sort_keys=True))
    # Listed in `files` like the rest, so the manifest signature covers it (issue 14, item 5).
    write_sbom(out / SBOM)
    if reports is not None:
        (out / "reports" / "r6").mkdir(mode=0o700, exist_ok=True)
        for name, content in reports(first, last).items():
            (out / "reports" / "r6" / f"{name}.json").write_text(json.dumps(content, indent=2, sort_keys=True,
                                                                             default=str))
    files = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = path.relative_to(out).as_posix()
        files[name] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
    manifest = {
        "format": FORMAT,
        "created_at": utc_now().isoformat(),
        "created_by": created_by,
        "key_id": evidence.signer.key_id,
        "window": {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "first_position": first,
            "last_position": last,
            "rows": window_rows,
        },
        "range": {
            "from_position": range_from,
            "to_position": range_to,
            "anchor_checkpoint": anchor.position if anchor is not None else None,
            "closing_checkpoint": closing.position if closing is not None else None,
            "rows": rows_written,
        },
        "live_chain_intact": report.intact,
        "chain_v2_from": v2_from,
        "files": files,
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    (out / MANIFEST).write_bytes(manifest_bytes)
    (out / SIGNATURE).write_text(evidence.signer.sign(MANIFEST_TAG + manifest_bytes).hex() + "\n")
    for path in out.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o600)
    fingerprint = fingerprint_of(load_public_key(evidence.signer.public_pem()))
    return ExportResult(out, rows_written, window_rows, len(covered), evidence.signer.key_id, fingerprint,
                        report.intact)


def _rows_with_notifications(recorder: Any, start: int, stop: int, page: int = 1000) -> Iterator[tuple[ChainRow, Any]]:
    """Chain rows with their notifications (for metadata), a page at a time."""
    while start <= stop:
        rows = recorder.select_chain_rows(start, page, stop)
        if not rows:
            return
        notes = {n.id: n for n in recorder.select_notifications(start, page, stop=rows[-1].position)}
        for row in rows:
            yield row, notes.get(row.position)
        start = rows[-1].position + 1


def _actor_of(meta: dict[str, Any] | None) -> str:
    """The row's actor id as text ("None" when it names none), as activity.json counts it."""
    context = (meta or {}).get("context") or {}
    return str(context.get("actor_id"))


def _count(activity: dict[str, Counter[str]], row: ChainRow, meta: dict[str, Any] | None) -> None:
    activity["by_actor"][_actor_of(meta)] += 1
    access = (meta or {}).get("access")
    activity["by_kind"]["access" if access else "change"] += 1
    event = f"access:{access.get('kind')}" if access else row.topic.partition(":")[2]
    activity["by_event"][event] += 1


# -- offline verification --------------------------------------------------------------------


def _readable_disagreements(row_data: list[dict[str, Any]], rows: list[ChainRow],
                            checkpoint_data: list[dict[str, Any]], checkpoints: list[Checkpoint],
                            activity: Any, window: dict[str, Any]) -> Iterator[Problem]:
    """Every value a person reads beside a signed or chained one must say the same:
    a readable `recorded_at` or `signed_at`, the `in_window` flag, and the activity
    report, which is recounted from the rows."""
    first, last = window.get("first_position"), window.get("last_position")
    counted: dict[str, Counter[str]] = {"by_actor": Counter(), "by_kind": Counter(), "by_event": Counter()}
    for data, row in zip(row_data, rows):
        if data.get("recorded_at") != row.recorded_at.isoformat(timespec="microseconds"):
            yield Problem(row.position, "recorded_at does not match the chained recorded_at_us")
        in_window = isinstance(first, int) and isinstance(last, int) and first <= row.position <= last
        if data.get("in_window") is not in_window:
            yield Problem(row.position, "in_window does not match the manifest's window")
        if in_window:
            _count(counted, row, data.get("metadata"))
    for data, checkpoint in zip(checkpoint_data, checkpoints):
        if data.get("signed_at") != checkpoint.signed_at.isoformat(timespec="microseconds"):
            yield Problem(checkpoint.position, "a checkpoint's signed_at does not match its signed signed_at_us")
    recounted = {name: dict(sorted(counter.items())) for name, counter in counted.items()}
    if activity != recounted:
        yield Problem(0, "reports/activity.json does not match the rows it counts")


def _unnamed_actors(directory: dict[str, Any], activity: dict[str, Any]) -> list[str]:
    """The window's actors (as activity.json, already checked against the rows, counts
    them) that the staff directory does not name: a directory edited to hide who acted."""
    actors = directory.get("actors")
    named = {str(entry.get("id")) for entry in actors if isinstance(entry, dict)} if isinstance(actors, list) else set()
    return sorted(set(activity.get("by_actor", {})) - named - {"None"})


def _is_cyclonedx(path: Path) -> bool:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(document, dict) and document.get("bomFormat") == "CycloneDX"
            and isinstance(document.get("components"), list))


# manifest.sig: exactly the 64-byte Ed25519 signature in lower-case hex, and at most
# one final new line. bytes.fromhex() alone would also take spaces and upper case.
_SIGNATURE_TEXT = re.compile(rb"[0-9a-f]{128}\n?")


def _window_end_us(window: dict[str, Any], manifest: dict[str, Any]) -> int:
    """The window's end in epoch microseconds: its `until`, or when the bundle was made."""
    end = window.get("until") or manifest["created_at"]
    return epoch_micros(datetime.fromisoformat(end))


def verify_bundle(path: Path, *, public_key_pem: bytes | None = None, fingerprint: str | None = None,
                  witness: Path | None = None) -> Report:
    """Check a bundle with no database: signature, files, chain, checkpoints, and that
    every readable value agrees with the signed one it stands beside.

    With a `witness` folder (checkpoints a backup target kept): each witnessed
    checkpoint inside the bundle's range must name its row's exact hash, and the
    bundle must reach every witnessed checkpoint signed by the window's end (`until`,
    or `created_at` for a window open to the head): a bundle cut back to an older
    checkpoint by someone holding the signing key fails.

    The signing key must be pinned, by its PEM (`public_key_pem`) or its full
    fingerprint (`fingerprint`, 64 hex digits, which `audit export` prints): the key
    inside a bundle proves nothing on its own, since whoever forged the bundle could
    have made that key too.
    """
    report = Report(started_from="the bundle's anchor")

    def fail(what: str, position: int = 0) -> Report:
        report.problems.append(Problem(position, what))
        return report

    if not path.is_dir():
        return fail(f"{path} is not a bundle folder")
    for required in (MANIFEST, SIGNATURE, PUBLIC_KEY_FILE):
        if not (path / required).is_file():
            return fail(f"the bundle has no {required}")
    if public_key_pem is None and not fingerprint:
        return fail("no pinned key: a bundle verifies only against the instance's published "
                    "audit key (--public-key audit-signing.pub, or --key-fingerprint)")
    try:
        bundled_key = load_public_key((path / PUBLIC_KEY_FILE).read_bytes())
        key = load_public_key(public_key_pem) if public_key_pem is not None else bundled_key
    except PublicKeyError as exc:
        return fail(f"the public key does not load ({exc})")
    pins = [fingerprint_of(key)] if public_key_pem is not None else []
    pins += [fingerprint.strip().lower()] if fingerprint else []
    if not all(hmac.compare_digest(fingerprint_of(bundled_key).encode(), pin.encode()) for pin in pins):
        return fail(f"the bundle was signed with key {key_id_of(bundled_key)}, not the pinned key")
    manifest_bytes = (path / MANIFEST).read_bytes()
    signature_text = (path / SIGNATURE).read_bytes()
    if not _SIGNATURE_TEXT.fullmatch(signature_text):
        return fail("manifest.sig is not exactly one lower-case hex Ed25519 signature")
    signature = bytes.fromhex(signature_text.decode("ascii").rstrip("\n"))
    if not signature_valid(key, signature, MANIFEST_TAG + manifest_bytes):
        return fail("the manifest's signature does not verify: the manifest was changed or not signed by this key")
    try:
        manifest = json.loads(manifest_bytes)
        files: dict[str, dict[str, Any]] = manifest["files"]
        window, extent = manifest["window"], manifest["range"]
        legacy = manifest.get("format") == LEGACY_FORMAT
        v2_from = _NO_V2 if legacy else manifest["chain_v2_from"]
    except (ValueError, KeyError, TypeError):
        return fail("the manifest does not parse")
    if manifest.get("format") not in (FORMAT, LEGACY_FORMAT):
        return fail(f"unknown bundle format {manifest.get('format')!r}")
    if type(v2_from) is not int or v2_from < 1:
        return fail("the manifest's chain_v2_from is not a position")
    report.notes.append(f"signed by audit key {key_id_of(key)}, as pinned")
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {MANIFEST, SIGNATURE}
    for name in sorted(present - set(files)):
        fail(f"{name} is not listed in the manifest: it was added")
    for name, expected in sorted(files.items()):
        file = path / name
        if name not in present:
            fail(f"{name}, listed in the manifest, is missing")
        elif file.stat().st_size != expected.get("bytes") or _sha256(file) != expected.get("sha256"):
            fail(f"{name} does not match its SHA-256 in the manifest: it was changed")
    if report.problems:
        return report
    try:
        row_data = [json.loads(line) for line in (path / ROWS).read_text().splitlines() if line]
        checkpoint_data = [json.loads(line) for line in (path / CHECKPOINTS).read_text().splitlines() if line]
        rows = [_row_from_json(data) for data in row_data]
        checkpoints = [Checkpoint.from_json(data) for data in checkpoint_data]
        activity = json.loads((path / "reports" / "activity.json").read_text())
        directory = json.loads((path / STAFF_DIRECTORY).read_text()) if STAFF_DIRECTORY in files else None
        if directory is not None and not isinstance(directory, dict):
            raise ValueError("the staff directory is not an object")
    except (ValueError, KeyError, TypeError, OSError):
        return fail("rows.jsonl, checkpoints.jsonl, reports/activity.json or reports/staff-directory.json "
                    "does not parse")
    for problem in _readable_disagreements(row_data, rows, checkpoint_data, checkpoints, activity, window):
        report.problems.append(problem)
    for data in row_data:
        what = _metadata_problem(data, v2_from)
        if what is not None:
            report.problems.append(Problem(data["position"], what))
    if report.problems:
        return report
    v1_rows = sum(1 for r in rows if r.position < v2_from)
    if legacy:
        report.notes.append(f"a bundle exported before chain v2 ({LEGACY_FORMAT}): the metadata of its "
                            f"{v1_rows} rows is vouched for by the export signature only")
    elif v1_rows:
        report.notes.append(
            f"{v1_rows} row{'s' if v1_rows != 1 else ''} before position {v2_from} {'are' if v1_rows != 1 else 'is'} "
            "chained v1: their metadata is vouched for by the export signature only")
    anchor_position = extent.get("anchor_checkpoint")
    anchor = next((c for c in checkpoints if c.position == anchor_position), None)
    if anchor_position is not None and anchor is None:
        return fail(f"the anchor checkpoint at position {anchor_position} is not in the bundle")
    witnessed, witness_problems = read_witness(witness) if witness is not None else (None, [])
    try:
        window_end = _window_end_us(window, manifest)
    except (ValueError, TypeError, AttributeError):
        return fail("the manifest's window end (until, or created_at) is not a time")
    verifier = ChainVerifier(checkpoints, {key_id_of(key): key}, start=anchor, v2_from=v2_from,
                             witnessed=witnessed, witness_until_us=window_end)
    verifier.feed(rows)
    result = verifier.finish()
    result.problems.extend(witness_problems)
    result.notes.extend(report.notes)
    if anchor is None and rows and rows[0].position != 1:
        result.problems.append(Problem(rows[0].position, "the bundle starts neither at the first row nor at a checkpoint"))
    if not rows or rows[-1].position != extent.get("to_position") or rows[0].position != extent.get("from_position"):
        result.problems.append(Problem(0, "the rows do not cover the range the manifest names"))
    elif not any(c.position == rows[-1].position for c in verifier.trusted):
        result.problems.append(Problem(rows[-1].position, "the bundle's last row is not pinned by a signed checkpoint"))
    in_window = [r for r in rows if window["first_position"] <= r.position <= window["last_position"]]
    if len(in_window) != window.get("rows"):
        result.problems.append(Problem(0, "the window's row count differs from the manifest"))
    if SBOM in files and not _is_cyclonedx(path / SBOM):
        result.problems.append(Problem(0, f"{SBOM} is not a CycloneDX document with a list of components"))
    if directory is not None and not result.problems and _unnamed_actors(directory, activity):
        # Checked last: it is vouched for by the manifest signature only, so a chain
        # problem, if there is one, is the better answer to give first.
        result.problems.append(Problem(0, "reports/staff-directory.json does not name every actor of the window"))
    for name in sorted(n for n in files if n.startswith(R6_REPORTS)):
        if not _report_matches(path / name, name, window):
            result.problems.append(Problem(0, f"{name} is not a report over the manifest's window"))
    return result


def _report_matches(file: Path, name: str, window: dict[str, Any]) -> bool:
    """An R6.1 report (step 15 of docs/evidence-format.md): an object naming itself as
    its file does, over the manifest window's positions, with a list of rows."""
    try:
        report = json.loads(file.read_text())
        return (isinstance(report, dict) and report.get("report") == name[len(R6_REPORTS):-len(".json")]
                and isinstance(report.get("rows"), list)
                and report["window"]["first_position"] == window["first_position"]
                and report["window"]["last_position"] == window["last_position"])
    except (OSError, ValueError, TypeError, KeyError):
        return False
