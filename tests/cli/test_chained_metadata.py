"""Metadata an auditor reads is chained, not only signed (issue 11, item 1; R3.3).

The attacker is an insider holding the KEK: they export a bundle, rewrite what a
row says about who acted and what was seen (move a reveal to another member of
staff, drop a customer from it, change its purpose or outcome), recount the
activity report to match, and sign the manifest again with the instance's real
audit key (`_resign`). Each row's hash commits to a salted digest of exactly that
metadata, and signed checkpoints pin the hashes, so `audit verify --bundle` must
fail at the row, on SQLite and on PostgreSQL. A byte of metadata flipped in the raw
store is found by `audit verify` too.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_audit_cli import _as_the_api, _customers, _resign, _verify, instance, run
from tests.infrastructure.chain_attacks import RawStore

__all__ = ["instance"]  # the fixture, shared with test_audit_cli

NOT_CHAINED = "the row's metadata is not what its row hash commits to"


def _reveal(instance: Path) -> list[str]:
    """staff-agent-7 reveals two customers' national ids; their ids."""
    ids = _customers(instance)[:2]
    _as_the_api(instance, lambda b: b.app.access_log.record(
        kind="reveal", customer_ids=ids, fields=["national_id"], details={"reason": "refund"}))
    return ids


def _rows(bundle: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (bundle / "rows.jsonl").read_text().splitlines()]


def _write_rows(bundle: Path, rows: list[dict[str, Any]]) -> None:
    (bundle / "rows.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _recount_activity(bundle: Path, rows: list[dict[str, Any]]) -> None:
    """The careful insider makes reports/activity.json agree with the rewritten rows."""
    counted: dict[str, Counter[str]] = {"by_actor": Counter(), "by_kind": Counter(), "by_event": Counter()}
    for row in rows:
        if not row["in_window"]:
            continue
        meta = row.get("metadata") or {}
        counted["by_actor"][str((meta.get("context") or {}).get("actor_id"))] += 1
        access = meta.get("access")
        counted["by_kind"]["access" if access else "change"] += 1
        counted["by_event"][f"access:{access.get('kind')}" if access else row["topic"].partition(":")[2]] += 1
    (bundle / "reports" / "activity.json").write_text(json.dumps(
        {name: dict(sorted(c.items())) for name, c in counted.items()}, indent=2, sort_keys=True))


def _reveal_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in rows if ((r["metadata"] or {}).get("access") or {}).get("kind") == "reveal")


def _move_to_another_actor(row: dict[str, Any]) -> None:
    row["metadata"]["context"]["actor_id"] = "staff-agent-9"


def _drop_a_customer(row: dict[str, Any]) -> None:
    row["metadata"]["access"]["customer_ids"] = row["metadata"]["access"]["customer_ids"][:1]


def _change_purpose(row: dict[str, Any]) -> None:
    row["metadata"]["context"]["purpose"] = "fraud investigation"


def _change_outcome(row: dict[str, Any]) -> None:
    row["metadata"]["access"]["outcome"] = "denied"


def _change_address(row: dict[str, Any]) -> None:
    row["metadata"]["context"]["client_addr"] = "192.0.2.1"


def _drop_a_field(row: dict[str, Any]) -> None:
    row["metadata"]["access"]["fields"] = []


TAMPERINGS = {
    "the reveal moved to another member of staff": _move_to_another_actor,
    "a customer dropped from the reveal": _drop_a_customer,
    "the purpose changed": _change_purpose,
    "the outcome changed": _change_outcome,
    "the client address changed": _change_address,
    "the fields seen dropped": _drop_a_field,
}


@pytest.fixture
def exported(instance: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    ids = _reveal(instance)
    out = tmp_path / "evidence"
    result = run(instance, "audit", "export", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out, ids


def test_an_exported_reveal_carries_its_chained_metadata(exported: tuple[Path, list[str]], instance: Path) -> None:
    bundle, ids = exported
    row = _reveal_row(_rows(bundle))
    assert row["chain"] == 2 and len(row["metadata_salt"]) == 32 and len(row["meta_digest"]) == 64
    assert row["metadata"]["context"]["actor_id"] == "staff-agent-7"
    assert sorted(row["metadata"]["access"]["customer_ids"]) == sorted(ids)
    result = _verify(bundle, instance)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
@pytest.mark.controls("PCI-DSS-10.3.4")
def test_metadata_rewritten_and_signed_again_by_an_insider_fails(
    exported: tuple[Path, list[str]], instance: Path, tamper: Any
) -> None:
    bundle, _ = exported
    rows = _rows(bundle)
    row = _reveal_row(rows)
    tamper(row)
    _write_rows(bundle, rows)
    _recount_activity(bundle, rows)
    _resign(bundle, instance)
    result = _verify(bundle, instance)
    assert result.exit_code == 1, "rewritten metadata, signed again, went unnoticed"
    assert result.output.startswith(f"TAMPERING FOUND at position {row['position']}: {NOT_CHAINED}"), result.output


def test_an_insider_who_also_recomputes_the_digest_and_the_hashes_still_fails(
    exported: tuple[Path, list[str]], instance: Path
) -> None:
    """The most careful insider: a new digest for the rewritten metadata, and every row
    hash from there to the end recomputed, so every link agrees. The signed checkpoint
    at the end of the range no longer matches."""
    from infrastructure.audit.chain import row_hash
    from infrastructure.audit.metadata import canonical

    bundle, _ = exported
    rows = _rows(bundle)
    row = _reveal_row(rows)
    _move_to_another_actor(row)
    salt = bytes.fromhex(row["metadata_salt"])
    row["meta_digest"] = hashlib.sha256(b"strongroom/event-metadata/v1\x00" + salt
                                        + canonical(row["metadata"])).hexdigest()
    prev = bytes.fromhex(row["prev_hash"])
    for later in rows[rows.index(row):]:
        later["prev_hash"] = prev.hex()
        prev = row_hash(prev, later["position"], later["stream_id"], later["version"], later["topic"],
                        later["recorded_at_us"], bytes.fromhex(later["state_sha256"]),
                        bytes.fromhex(later["meta_digest"]) if later["chain"] == 2 else None)
        later["row_hash"] = prev.hex()
    _write_rows(bundle, rows)
    _recount_activity(bundle, rows)
    _resign(bundle, instance)
    result = _verify(bundle, instance)
    assert result.exit_code == 1
    assert "hash differs from the head signed in the checkpoint" in result.output, result.output


def test_a_flipped_metadata_byte_in_the_raw_store_is_found(instance: Path, database_url: str) -> None:
    _reveal(instance)
    raw = RawStore(database_url)
    position = raw.positions()[-1]
    for offset in (3, 20, 34):  # inside the clear metadata digest (envelope format 2)
        raw.flip_byte(position, offset)
        result = run(instance, "audit", "verify")
        assert result.exit_code == 1, f"a flipped byte at offset {offset} went unnoticed"
        assert result.output.startswith(
            f"TAMPERING FOUND at position {position}: the row's contents do not match its hash"), result.output
        raw.flip_byte(position, offset)  # put it back
    assert run(instance, "audit", "verify").exit_code == 0


def test_a_bundle_relabelled_as_exported_before_chain_v2_fails(exported: tuple[Path, list[str]], instance: Path) -> None:
    """The insider claims the bundle predates chain v2, so its metadata would be
    checked by the signature alone: its v2 rows' hashes do not recompute as v1."""
    from tests.cli.test_chain_upgrade import _as_legacy_bundle

    bundle, _ = exported
    rows = _rows(bundle)
    _move_to_another_actor(_reveal_row(rows))
    _write_rows(bundle, rows)
    _recount_activity(bundle, rows)
    _as_legacy_bundle(bundle)
    _resign(bundle, instance)
    result = _verify(bundle, instance)
    assert result.exit_code == 1
    assert "the row's contents do not match its hash" in result.output, result.output
