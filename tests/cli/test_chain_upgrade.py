"""A store chained before v2 keeps verifying after the upgrade (issue 11, item 1).

Its rows were written by the version before: row hashes over the ciphertext only
(v1). The upgraded version records, once, the position from which it chains v2,
and from there every row's hash also commits to its metadata digest. `audit
verify`, an evidence bundle and a backup restored into a new store all check v1
rows before that position and v2 rows after it, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_audit_cli import _as_the_api, _customers, _resign, _verify, run
from tests.cli.test_independent_verifier import independent
from tests.cli.test_chained_metadata import NOT_CHAINED, _recount_activity, _reveal_row, _rows, _write_rows
from tests.application.conftest import customer_fields
from tests.infrastructure.before_chain_v2 import before_chain_v2
from tests.infrastructure.chain_attacks import RawStore


def _as_legacy_bundle(bundle: Path) -> None:
    """Rewrite a bundle into the format exported before chain v2: no chain fields."""
    rows = _rows(bundle)
    for row in rows:
        for name in ("chain", "meta_digest", "metadata_salt"):
            row.pop(name, None)
    _write_rows(bundle, rows)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format"] = "strongroom-evidence/v1"
    del manifest["chain_v2_from"]
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def _reveal(instance: Path, customer: str) -> None:
    _as_the_api(instance, lambda b: b.app.access_log.record(kind="reveal", customer_ids=[customer],
                                                            fields=["national_id"]))


def test_a_store_chained_v1_then_upgraded_verifies_exports_and_restores(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", database_url)
    monkeypatch.setenv("STRONGROOM_CHECKPOINT_SECONDS", "3600")
    instance = tmp_path / "instance"
    lines = tmp_path / "customers.jsonl"
    lines.write_text("".join(json.dumps(customer_fields(email=f"ada.{n}@example.org")) + "\n" for n in range(2)))
    with pytest.MonkeyPatch.context() as old:
        before_chain_v2(old)
        assert run(instance, "init", "--json").exit_code == 0
        assert run(instance, "customers", "import", str(lines), "--json").exit_code == 0
        customer = _customers(instance)[0]
        _reveal(instance, customer)
        # A bundle as the version before exported it (strongroom-evidence/v1) still verifies.
        legacy = tmp_path / "legacy"
        assert run(instance, "audit", "export", "--out", str(legacy)).exit_code == 0
        _as_legacy_bundle(legacy)
        _resign(legacy, instance)
        old_bundle = _verify(legacy, instance)
        assert old_bundle.exit_code == 0 and "exported before chain v2" in old_bundle.output, old_bundle.output
        written_v1 = json.loads(run(instance, "audit", "verify", "--json").output)
        assert written_v1["intact"], written_v1
    v1_head = written_v1["head"]["position"]
    raw = RawStore(database_url)
    assert all(raw.row(p)["state"][:3] == b"SR\x01" for p in raw.positions())  # truly the old format

    # The upgraded version: the chain turns v2 after the last v1 row.
    _reveal(instance, customer)
    verified = run(instance, "audit", "verify", "--json")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.output)["rows_checked"] > v1_head
    assert f"rows before position {v1_head + 1} were chained v1" in " ".join(json.loads(verified.output)["notes"])
    v2_rows = [p for p in raw.positions() if p > v1_head]
    assert v2_rows and all(raw.row(p)["state"][:3] == b"SR\x02" for p in v2_rows)

    # An evidence bundle carries both, and says which rows' metadata is chained.
    bundle = tmp_path / "evidence"
    assert run(instance, "audit", "export", "--out", str(bundle)).exit_code == 0
    assert json.loads((bundle / "manifest.json").read_text())["chain_v2_from"] == v1_head + 1
    rows = _rows(bundle)
    assert {r["chain"] for r in rows if r["position"] <= v1_head} == {1}
    assert {r["chain"] for r in rows if r["position"] > v1_head} == {2}
    result = _verify(bundle, instance)
    assert result.exit_code == 0, result.output
    independently = independent(bundle, "--public-key", str(instance / "audit-signing.pub"))
    assert independently.returncode == 0 and f"{v1_head} rows chained v1" in independently.stdout, \
        independently.stdout
    # A v2 reveal rewritten and signed again fails; the v1 reveal before it is the
    # old exposure, vouched for by the export signature only, and the report says so.
    assert "chained v1" in run(instance, "audit", "verify", "--bundle", str(bundle), "--public-key",
                               str(instance / "audit-signing.pub"), "--json").output
    reveal = _reveal_row([r for r in rows if r["position"] > v1_head])
    reveal["metadata"]["context"]["actor_id"] = "staff-agent-9"
    _write_rows(bundle, rows)
    _recount_activity(bundle, rows)
    _resign(bundle, instance)
    tampered = _verify(bundle, instance)
    assert tampered.exit_code == 1 and f"position {reveal['position']}: {NOT_CHAINED}" in tampered.output, \
        tampered.output

    # A byte flipped in a v1 row is still found.
    raw.flip_byte(2)
    flipped = run(instance, "audit", "verify")
    assert flipped.exit_code == 1 and flipped.output.startswith("TAMPERING FOUND at position 2:"), flipped.output
    raw.flip_byte(2)

    # A backup of the upgraded store restores into a new one that verifies, v1 rows and all.
    created = run(instance, "backup", "create", "--json")
    assert created.exit_code == 0, created.output
    restored = tmp_path / "restored"
    restored.mkdir()
    into, keys_into = f"sqlite:///{restored / 'strongroom.sqlite'}", f"sqlite:///{restored / 'keys.sqlite'}"
    config = json.loads((instance / "strongroom.json").read_text()) if (instance / "strongroom.json").exists() else {}
    config.update(database_url=into, keys_database_url=keys_into)
    config.pop("backup_targets", None)
    (restored / "strongroom.json").write_text(json.dumps(config))
    (restored / "kek.key").write_bytes((instance / "kek.key").read_bytes())
    (restored / "kek.key").chmod(0o600)
    last = str(json.loads(created.output)["backups"][0]["last_position"])
    outcome = run(instance, "restore", "--from", "local", "--position", last, "--into", into, "--keys-into", keys_into,
                  "--checkpoints-into", str(restored / "checkpoints"), "--json")
    assert outcome.exit_code == 0, outcome.output
    monkeypatch.delenv("STRONGROOM_DATABASE_URL")
    after = run(restored, "audit", "verify", "--json")
    assert after.exit_code == 0, after.output
    assert json.loads(after.output)["rows_checked"] == json.loads(outcome.output)["position"]
