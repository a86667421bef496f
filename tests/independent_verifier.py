"""An evidence-bundle verifier written from docs/evidence-format.md alone.

It imports nothing from Strongroom: the Python standard library and `cryptography`
only (a test checks that). It is what a third party would write from the document,
so if the document and `strongroom audit verify --bundle` drift apart, CI sees it.

    python tests/independent_verifier.py BUNDLE (--public-key PEM | --key-fingerprint HEX) [--witness DIR]

Exit 0 and "OK ..." when the bundle verifies; exit 1 and "FAIL: <reason>" when not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import struct
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "strongroom-evidence/v2"
CHAIN_V1 = b"strongroom/chain/v1\x00"
CHAIN_V2 = b"strongroom/chain/v2\x00"
METADATA = b"strongroom/event-metadata/v1\x00"
CHECKPOINT = b"strongroom/checkpoint/v1\x00"
MANIFEST = b"strongroom/evidence-manifest/v1\x00"
KEY = b"strongroom-audit-key\x00"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
HEX = re.compile(r"[0-9a-f]*")


class Rejected(Exception):
    pass


def need(condition: bool, reason: str) -> None:
    if not condition:
        raise Rejected(reason)


def i64(n: int) -> bytes:
    return struct.pack(">q", n)


def i32(n: int) -> bytes:
    return struct.pack(">i", n)


def hexbytes(value: Any, size: int, what: str) -> bytes:
    need(isinstance(value, str) and len(value) == 2 * size and HEX.fullmatch(value) is not None,
         f"{what} is not {size} bytes of lower-case hex")
    return bytes.fromhex(value)


def integer(value: Any, what: str) -> int:
    need(type(value) is int, f"{what} is not an integer")
    return value


def readable_time(micros: int) -> str:
    return (EPOCH + timedelta(microseconds=micros)).isoformat(timespec="microseconds")


def raw_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(KEY + raw_key(key)).hexdigest()


def load_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise Rejected("a public key is not PEM") from None
    need(isinstance(key, Ed25519PublicKey), "a public key is not Ed25519")
    assert isinstance(key, Ed25519PublicKey)
    return key


def signed(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def row_hash(row: dict[str, Any], v2: bool) -> bytes:
    sid, top = row["stream_id"].encode("utf-8"), row["topic"].encode("utf-8")
    parts = [CHAIN_V2 if v2 else CHAIN_V1, row["_prev"], i64(row["position"]), i32(len(sid)), sid,
             i64(row["version"]), i32(len(top)), top, i64(row["recorded_at_us"]), row["_state"]]
    if v2:
        parts.append(row["_meta"])
    return hashlib.sha256(b"".join(parts)).digest()


def jsonl(path: Path) -> list[dict[str, Any]]:
    objects = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]
    need(all(isinstance(o, dict) for o in objects), f"{path.name} holds something other than objects")
    return objects


def recount(rows: list[dict[str, Any]], first: int, last: int) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {"by_actor": {}, "by_kind": {}, "by_event": {}}

    def add(table: str, name: str) -> None:
        counts[table][name] = counts[table].get(name, 0) + 1

    for row in rows:
        if not first <= row["position"] <= last:
            continue
        m = row.get("metadata") or {}
        context = m.get("context") or {}
        actor = context.get("actor_id")
        add("by_actor", "None" if actor is None else str(actor))
        a = m.get("access")
        add("by_kind", "access" if a else "change")
        if a:
            kind = a.get("kind")
            add("by_event", "access:" + ("None" if kind is None else str(kind)))
        else:
            add("by_event", row["topic"].partition(":")[2])
    return counts


def parse_checkpoint(checkpoint: dict[str, Any]) -> None:
    integer(checkpoint.get("position"), "a checkpoint's position")
    integer(checkpoint.get("signed_at_us"), "a checkpoint's signed_at_us")
    checkpoint["_head"] = hexbytes(checkpoint.get("head_hash"), 32, "head_hash")
    checkpoint["_sig"] = hexbytes(checkpoint.get("signature"), 64, "signature")


def check_checkpoint(checkpoint: dict[str, Any], key: Ed25519PublicKey, key_id: str) -> None:
    kid = checkpoint.get("key_id")
    need(kid == key_id, f"checkpoint {checkpoint['position']}: another key")
    message = (CHECKPOINT + i64(checkpoint["position"]) + checkpoint["_head"]
               + i64(checkpoint["signed_at_us"]) + bytes((len(kid),)) + kid.encode("ascii"))
    need(signed(key, checkpoint["_sig"], message), f"checkpoint {checkpoint['position']}: bad signature")


def check_witness(witness: Path, manifest: dict[str, Any], rows: list[dict[str, Any]],
                  key: Ed25519PublicKey, key_id: str) -> int:
    """Section 12: the bundle against a folder of witnessed checkpoints."""
    files = sorted(witness.glob("checkpoint-*.json"))
    need(bool(files), "the witness holds no checkpoint")
    end_text = manifest["window"]["until"] or manifest["created_at"]
    end = (datetime.fromisoformat(end_text) - EPOCH) // timedelta(microseconds=1)
    by_position = {row["position"]: row for row in rows}
    low, high = rows[0]["position"], rows[-1]["position"]
    for file in files:
        checkpoint = json.loads(file.read_text(encoding="utf-8"))
        parse_checkpoint(checkpoint)
        check_checkpoint(checkpoint, key, key_id)
        position = checkpoint["position"]
        if low <= position <= high:
            need(by_position[position]["_hash"] == checkpoint["_head"], f"diverges at position {position}")
        if checkpoint["signed_at_us"] <= end:
            need(position <= high, f"truncated: the witness has a checkpoint at position {position} "
                                   f"beyond the head {high}")
    return len(files)


def verify(folder: Path, pinned: str, witness: Path | None = None) -> str:
    # 1. the files and the pinned key
    for name in ("manifest.json", "manifest.sig", "audit-signing.pub"):
        need((folder / name).is_file(), f"no {name}")
    key = load_key((folder / "audit-signing.pub").read_bytes())
    need(fingerprint(key) == pinned, "the bundle's key is not the pinned key")
    key_id = fingerprint(key)[:16]
    # 2. the manifest signature
    manifest_bytes = (folder / "manifest.json").read_bytes()
    sig_text = (folder / "manifest.sig").read_bytes()
    need(re.fullmatch(rb"[0-9a-f]{128}\n?", sig_text) is not None, "manifest.sig is not 128 lower-case hex digits")
    need(signed(key, bytes.fromhex(sig_text[:128].decode()), MANIFEST + manifest_bytes),
         "the manifest signature does not verify")
    # 3. the manifest
    manifest = json.loads(manifest_bytes)
    need(manifest.get("format") == FORMAT, "unknown format")
    p = integer(manifest.get("chain_v2_from"), "chain_v2_from")
    need(p >= 1, "chain_v2_from is not a position")
    window, extent, files = manifest["window"], manifest["range"], manifest["files"]
    # 4. the files
    present = {f.relative_to(folder).as_posix() for f in folder.rglob("*") if f.is_file()}
    present -= {"manifest.json", "manifest.sig"}
    need(present == set(files), "the files present are not the files listed")
    for name, entry in files.items():
        data = (folder / name).read_bytes()
        need(len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"],
             f"{name} does not match the manifest")
    # 5. parse
    rows = jsonl(folder / "rows.jsonl")
    checkpoints = jsonl(folder / "checkpoints.jsonl")
    activity = json.loads((folder / "reports" / "activity.json").read_text(encoding="utf-8"))
    for row in rows:
        for name in ("chain", "position", "version", "recorded_at_us"):
            integer(row.get(name), f"a row's {name}")
        need(isinstance(row.get("stream_id"), str) and isinstance(row.get("topic"), str), "a row's ids")
        row["_prev"] = hexbytes(row.get("prev_hash"), 32, "prev_hash")
        row["_hash"] = hexbytes(row.get("row_hash"), 32, "row_hash")
        row["_state"] = hexbytes(row.get("state_sha256"), 32, "state_sha256")
    for checkpoint in checkpoints:
        parse_checkpoint(checkpoint)
    # 6. readable values
    first, last = integer(window["first_position"], "first_position"), integer(window["last_position"], "last")
    for row in rows:
        need(row.get("recorded_at") == readable_time(row["recorded_at_us"]),
             f"row {row['position']}: recorded_at disagrees with recorded_at_us")
        need(row.get("in_window") is (first <= row["position"] <= last), f"row {row['position']}: in_window")
    for checkpoint in checkpoints:
        need(checkpoint.get("signed_at") == readable_time(checkpoint["signed_at_us"]),
             f"checkpoint {checkpoint['position']}: signed_at disagrees with signed_at_us")
    counted = recount(rows, first, last)
    need(activity == counted, "reports/activity.json disagrees with the rows")
    # 7. metadata
    v1 = 0
    for row in rows:
        v2 = row["position"] >= p
        need(row["chain"] == (2 if v2 else 1), f"row {row['position']}: chain version disagrees with P")
        if not v2:
            v1 += 1
            continue
        salt = hexbytes(row.get("metadata_salt"), 16, "metadata_salt")
        row["_meta"] = hexbytes(row.get("meta_digest"), 32, "meta_digest")
        digest = hashlib.sha256(METADATA + salt + canonical(row.get("metadata"))).digest()
        need(digest == row["_meta"], f"row {row['position']}: the metadata is not what the chain commits to")
    # 8. checkpoint signatures
    for checkpoint in checkpoints:
        check_checkpoint(checkpoint, key, key_id)
    # 9. the chain
    need(bool(rows), "no rows")
    anchor = extent.get("anchor_checkpoint")
    if anchor is None:
        need(rows[0]["position"] == 1 and rows[0]["_prev"] == bytes(32), "the chain does not start at genesis")
    else:
        pinned_start = [c for c in checkpoints if c["position"] == anchor]
        need(len(pinned_start) == 1, "the anchor checkpoint is missing")
        need(rows[0]["position"] == anchor and rows[0]["_hash"] == pinned_start[0]["_head"],
             "the first row is not the anchor checkpoint's head")
    for before, row in zip(rows, rows[1:]):
        need(row["position"] == before["position"] + 1, f"row {row['position']}: not the next position")
        need(row["_prev"] == before["_hash"], f"row {row['position']}: does not link to the row before")
    for row in rows:
        need(row_hash(row, row["position"] >= p) == row["_hash"], f"row {row['position']}: the row hash is wrong")
    # 10. checkpoints against rows
    by_position = {row["position"]: row for row in rows}
    for checkpoint in checkpoints:
        row = by_position.get(checkpoint["position"])
        need(row is not None and row["_hash"] == checkpoint["_head"],
             f"checkpoint {checkpoint['position']}: does not match the rows")
    # 11. the range
    need(rows[0]["position"] == extent["from_position"] and rows[-1]["position"] == extent["to_position"],
         "the rows do not cover the range")
    need(rows[-1]["position"] in {c["position"] for c in checkpoints}, "the last row is not pinned")
    # 12. the window
    need(sum(1 for r in rows if first <= r["position"] <= last) == window["rows"], "the window's row count")
    # 13. the staff directory, when the bundle has one
    if "reports/staff-directory.json" in files:
        directory = json.loads((folder / "reports" / "staff-directory.json").read_text(encoding="utf-8"))
        need(isinstance(directory, dict) and isinstance(directory.get("actors"), list),
             "the staff directory is not an object with a list of actors")
        named = {str(a.get("id")) for a in directory["actors"] if isinstance(a, dict)}
        need(set(counted["by_actor"]) - {"None"} <= named,
             "the staff directory does not name every actor of the window")
    # 15. the bill of materials, when the bundle has one
    if "sbom.cdx.json" in files:
        bom = json.loads((folder / "sbom.cdx.json").read_text(encoding="utf-8"))
        need(isinstance(bom, dict) and bom.get("bomFormat") == "CycloneDX" and isinstance(bom.get("components"), list),
             "sbom.cdx.json is not a CycloneDX document with a list of components")
    # 16. the internal-audit reports, when the bundle has them
    for name in sorted(n for n in files if n.startswith("reports/r6/")):
        report = json.loads((folder / name).read_text(encoding="utf-8"))
        need(isinstance(report, dict) and report.get("report") == name[len("reports/r6/"):-len(".json")]
             and isinstance(report.get("rows"), list) and isinstance(report.get("window"), dict)
             and report["window"].get("first_position") == first and report["window"].get("last_position") == last,
             f"{name} is not a report over the manifest's window")
    note = f"; {v1} rows chained v1 (metadata signed at export only)" if v1 else ""
    # 14. the witness (section 12), when there is one
    if witness is not None:
        note += f"; complete against {check_witness(witness, manifest, rows, key, key_id)} witnessed checkpoints"
    return f"OK {len(rows)} rows, {len(checkpoints)} checkpoints, key {key_id}{note}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    pin = parser.add_mutually_exclusive_group(required=True)
    pin.add_argument("--public-key", type=Path)
    pin.add_argument("--key-fingerprint")
    parser.add_argument("--witness", type=Path)
    args = parser.parse_args(argv)
    try:
        pinned = (fingerprint(load_key(args.public_key.read_bytes())) if args.public_key
                  else args.key_fingerprint.strip().lower())
        print(verify(args.bundle, pinned, args.witness))
    except Rejected as exc:
        print(f"FAIL: {exc}")
        return 1
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        print(f"FAIL: the bundle does not parse ({type(exc).__name__})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
