"""Completeness against a witness (issue 11, item 2), on SQLite and on PostgreSQL.

`backup create` writes every signed checkpoint into its target's `checkpoints/`
folder, a place the database's owner does not control (the off-site target). The
attack: the owner removes the newest rows, cuts the checkpoint table back with
them and deletes the newer copies in the instance's own checkpoint folder, so the
store (and any bundle exported from it) is a genuine-looking, shorter history that
plain `audit verify` passes. `audit verify --witness` fails it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result

from infrastructure.audit.checkpoints import copy_name
from tests.cli.test_audit_cli import _as_the_api, _verify, instance, run  # noqa: F401 - `instance` is a fixture
from tests.infrastructure.chain_attacks import RawStore


def _witness(instance: Path) -> Path:
    return instance / "backups" / "local" / "checkpoints"


def _latest_checkpoint(instance: Path) -> int:
    result = run(instance, "audit", "checkpoint", "--json")
    assert result.exit_code == 0, result.output
    return int(json.loads(result.output)["checkpoint"]["position"])


def _three_more_rows(instance: Path) -> int:
    """Three access records through the application, then a checkpoint over them."""
    _as_the_api(instance, lambda b: [
        b.app.access_log.record(kind="view", customer_ids=[], fields=["email"]) for _ in range(3)])
    return _latest_checkpoint(instance)


def _backup(instance: Path) -> dict[str, object]:
    result = run(instance, "backup", "create", "--json")
    assert result.exit_code == 0, result.output
    (backup,) = json.loads(result.output)["backups"]
    return backup


def _cut_back(instance: Path, database_url: str, position: int) -> None:
    """The owner's attack: rows, checkpoint rows and checkpoint copies after `position` go."""
    raw = RawStore(database_url)
    raw.truncate_after(position)
    raw.delete_checkpoints_after(position)
    for copy in (instance / "checkpoints").glob("checkpoint-*.json"):
        if int(copy.stem.removeprefix("checkpoint-")) > position:
            copy.unlink()


def _verify_store(instance: Path, *witness: Path) -> Result:
    return run(instance, "audit", "verify", *(a for w in witness for a in ("--witness", str(w))))


@pytest.mark.controls("PCI-DSS-10.3.3")
def test_backup_create_writes_every_checkpoint_into_the_targets_folder_and_never_replaces_one(
    instance: Path,
) -> None:
    before = sorted(p.name for p in (instance / "checkpoints").glob("checkpoint-*.json"))
    assert before
    backup = _backup(instance)
    witness = _witness(instance)
    assert backup["checkpoints_witnessed"] == len(before)
    assert [p.name for p in sorted(witness.glob("checkpoint-*.json"))] == before
    for name in before:  # the same file as the instance's own copy, byte for byte
        assert (witness / name).read_bytes() == (instance / "checkpoints" / name).read_bytes()

    # A witnessed file is never rewritten, even when it differs from the database.
    changed = witness / before[0]
    changed.write_bytes(b"{}")
    newest = _three_more_rows(instance)
    again = _backup(instance)
    assert changed.read_bytes() == b"{}"
    assert (witness / copy_name(newest)).is_file()
    assert again["checkpoints_witnessed"] >= 1
    # ...and the witness says so: a file that does not parse fails the run.
    result = _verify_store(instance, witness)
    assert result.exit_code == 1 and f"witness file {before[0]} does not parse" in result.output


def test_an_intact_store_passes_against_its_witness(instance: Path) -> None:
    _three_more_rows(instance)
    _backup(instance)
    _three_more_rows(instance)  # rows after the witness's newest checkpoint are fine
    result = _verify_store(instance, _witness(instance))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("chain intact:") and "note: witness:" in result.output


def test_an_empty_witness_folder_fails(instance: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-witness"
    empty.mkdir()
    result = _verify_store(instance, empty)
    assert result.exit_code == 1 and "holds no checkpoint files" in result.output


def test_a_store_cut_back_with_its_checkpoints_passes_alone_and_fails_against_the_witness(
    instance: Path, database_url: str
) -> None:
    kept = _latest_checkpoint(instance)
    removed = _three_more_rows(instance)
    _backup(instance)
    _cut_back(instance, database_url, kept)

    alone = _verify_store(instance)
    assert alone.exit_code == 0, alone.output  # the attack works against the store alone
    result = _verify_store(instance, _witness(instance))
    assert result.exit_code == 1, result.output
    assert (f"TAMPERING FOUND at position {kept + 1}: truncated: the witness has a checkpoint at position "
            f"{removed}") in result.output
    assert f"beyond the head {kept}" in result.output


def test_an_auditor_without_the_kek_finds_the_cut_too(instance: Path, database_url: str, tmp_path: Path) -> None:
    kept = _latest_checkpoint(instance)
    removed = _three_more_rows(instance)
    _backup(instance)
    _cut_back(instance, database_url, kept)
    (instance / "kek.key").rename(tmp_path / "kek.key.away")  # the store and the published key only
    result = run(instance, "audit", "verify", "--witness", str(_witness(instance)), "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["first_bad_position"] == kept + 1
    assert any(f"witness has a checkpoint at position {removed}" in p["what"] for p in report["problems"])
    assert any("without the KEK" in note for note in report["notes"])


def test_a_forged_witness_checkpoint_fails_rather_than_counts(instance: Path) -> None:
    # Someone who can write into the witness folder (or an auditor handed a doctored
    # copy) cannot make a store look cut or rewritten, or hide anything: an unsigned
    # checkpoint fails the run as what it is.
    _backup(instance)
    witness = _witness(instance)
    newest = sorted(witness.glob("checkpoint-*.json"))[-1]
    forged = json.loads(newest.read_text())
    forged["position"] += 1000
    (witness / copy_name(forged["position"])).write_text(json.dumps(forged, sort_keys=True))
    result = _verify_store(instance, witness)
    assert result.exit_code == 1
    assert f"position {forged['position']}: the witnessed checkpoint signed" in result.output
    assert "does not verify" in result.output and "truncated" not in result.output


def test_a_store_rewritten_behind_a_witnessed_checkpoint_diverges(instance: Path, database_url: str) -> None:
    kept = _latest_checkpoint(instance)
    witnessed = _three_more_rows(instance)
    _backup(instance)
    # History after `kept` rewritten, every later hash recomputed, and the checkpoints
    # that would show it deleted from the table and the instance's folder.
    raw = RawStore(database_url)
    raw.rewrite_and_rechain(kept + 1)
    raw.delete_checkpoints_after(kept)
    for copy in (instance / "checkpoints").glob("checkpoint-*.json"):
        if int(copy.stem.removeprefix("checkpoint-")) > kept:
            copy.unlink()

    assert _verify_store(instance).exit_code == 0
    result = _verify_store(instance, _witness(instance))
    assert result.exit_code == 1
    assert f"TAMPERING FOUND at position {witnessed}: diverges at position {witnessed}" in result.output


def test_a_bundle_cut_back_to_an_older_checkpoint_fails_against_the_witness(
    instance: Path, database_url: str, tmp_path: Path
) -> None:
    kept = _latest_checkpoint(instance)
    between = datetime.now(UTC)  # after row `kept`, before anything later (the export records itself)
    complete = tmp_path / "complete"
    assert run(instance, "audit", "export", "--out", str(complete)).exit_code == 0
    removed = _three_more_rows(instance)
    _backup(instance)
    witness = _witness(instance)

    # A bundle made before the newer checkpoint was signed is complete for its window.
    assert _verify(complete, instance, "--public-key", str(instance / "audit-signing.pub"),
                   "--witness", str(witness)).exit_code == 0

    _cut_back(instance, database_url, kept)
    cut = tmp_path / "cut"
    assert run(instance, "audit", "export", "--out", str(cut)).exit_code == 0
    assert _verify(cut, instance).exit_code == 0  # signed with the real key: passes alone
    result = _verify(cut, instance, "--public-key", str(instance / "audit-signing.pub"), "--witness", str(witness))
    assert result.exit_code == 1, result.output
    assert (f"truncated: the witness has a checkpoint at position {removed}" in result.output
            and f"beyond the head {kept}" in result.output)

    # A window that honestly ends before the newer checkpoint was signed passes.
    earlier = tmp_path / "earlier"
    exported = run(instance, "audit", "export", "--out", str(earlier), "--until", between.isoformat())
    assert exported.exit_code == 0, exported.output
    honest = _verify(earlier, instance, "--public-key", str(instance / "audit-signing.pub"), "--witness", str(witness))
    assert honest.exit_code == 0, honest.output
