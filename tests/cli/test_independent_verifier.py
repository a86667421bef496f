"""docs/evidence-format.md is exact enough to reimplement (issue 11, item 6; R3.3).

`tests/independent_verifier.py` was written from the document alone. It runs here
as a separate program, as a third party would run theirs, against fresh bundles
from both stores and against tampered ones: it must accept exactly what `audit
verify --bundle` accepts. If the code's format moves away from the document (a
field, a tag, a byte order), the independent verifier rejects a fresh bundle and
this fails.
"""

from __future__ import annotations

import ast
import json
import subprocess  # nosec B404 - runs the verifier under test, with fixed arguments
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_audit_cli import _resign, _verify, instance, run
from tests.cli.test_audit_witness import _backup, _cut_back, _latest_checkpoint, _three_more_rows, _witness
from tests.cli.test_chained_metadata import (
    TAMPERINGS,
    _recount_activity,
    _reveal,
    _reveal_row,
    _rows,
    _write_rows,
)

__all__ = ["instance"]

VERIFIER = Path(__file__).resolve().parents[1] / "independent_verifier.py"


def independent(bundle: Path, *pin: str) -> subprocess.CompletedProcess[str]:
    """The independent verifier, as its own process, from a folder outside the repository."""
    return subprocess.run(  # nosec B603 - our interpreter, our script, paths from the test
        [sys.executable, "-I", str(VERIFIER), str(bundle), *pin],
        capture_output=True, text=True, timeout=120, cwd=bundle.parent, check=False,
    )


def test_the_independent_verifier_imports_nothing_from_the_project() -> None:
    tree = ast.parse(VERIFIER.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}


@pytest.fixture
def bundle(instance: Path, tmp_path: Path) -> Path:
    _reveal(instance)
    out = tmp_path / "evidence"
    result = run(instance, "audit", "export", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    return out


def _pins(instance: Path, bundle: Path) -> list[list[str]]:
    exported = json.loads((bundle / "manifest.json").read_text())
    assert exported["format"] == "strongroom-evidence/v2"
    fingerprint = run(instance, "audit", "export", "--out", str(bundle.parent / "again"), "--json")
    return [["--public-key", str(instance / "audit-signing.pub")],
            ["--key-fingerprint", json.loads(fingerprint.output)["key_fingerprint"]]]


def test_a_fresh_bundle_verifies_independently(bundle: Path, instance: Path) -> None:
    for pin in _pins(instance, bundle):
        result = independent(bundle, *pin)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("OK ")


def test_a_bundle_pinned_to_another_key_is_refused_independently(bundle: Path) -> None:
    result = independent(bundle, "--key-fingerprint", "0" * 64)
    assert result.returncode == 1 and "not the pinned key" in result.stdout


def test_one_changed_byte_in_any_file_is_refused_by_both(bundle: Path, instance: Path) -> None:
    pin = ["--public-key", str(instance / "audit-signing.pub")]
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        original = path.read_bytes()
        changed = bytearray(original)
        changed[len(changed) // 2] ^= 0x01
        path.write_bytes(bytes(changed))
        try:
            assert independent(bundle, *pin).returncode == 1, f"{path.name}: accepted independently"
            assert _verify(bundle, instance).exit_code == 1, f"{path.name}: accepted by audit verify"
        finally:
            path.write_bytes(original)
    assert independent(bundle, *pin).returncode == 0


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_metadata_rewritten_and_signed_again_is_refused_by_both(bundle: Path, instance: Path, tamper: Any) -> None:
    rows = _rows(bundle)
    tamper(_reveal_row(rows))
    _write_rows(bundle, rows)
    _recount_activity(bundle, rows)
    _resign(bundle, instance)
    result = independent(bundle, "--public-key", str(instance / "audit-signing.pub"))
    assert result.returncode == 1 and "the metadata is not what the chain commits to" in result.stdout, result.stdout
    assert _verify(bundle, instance).exit_code == 1


def test_a_row_removed_and_signed_again_is_refused_by_both(bundle: Path, instance: Path) -> None:
    rows = _rows(bundle)
    del rows[len(rows) // 2]
    _write_rows(bundle, rows)
    _recount_activity(bundle, rows)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["window"]["rows"] -= 1
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    _resign(bundle, instance)
    assert independent(bundle, "--public-key", str(instance / "audit-signing.pub")).returncode == 1
    assert _verify(bundle, instance).exit_code == 1


def test_a_bundle_cut_back_to_an_older_checkpoint_is_refused_by_both_against_the_witness(
    instance: Path, database_url: str, tmp_path: Path
) -> None:
    pin = ["--public-key", str(instance / "audit-signing.pub")]
    kept = _latest_checkpoint(instance)
    removed = _three_more_rows(instance)
    _backup(instance)
    witness = ["--witness", str(_witness(instance))]
    complete = tmp_path / "complete"
    assert run(instance, "audit", "export", "--out", str(complete)).exit_code == 0
    result = independent(complete, *pin, *witness)
    assert result.returncode == 0 and "complete against" in result.stdout, result.stdout

    _cut_back(instance, database_url, kept)
    cut = tmp_path / "cut"
    assert run(instance, "audit", "export", "--out", str(cut)).exit_code == 0
    assert independent(cut, *pin).returncode == 0  # genuine, signed with the real key
    refused = independent(cut, *pin, *witness)
    assert refused.returncode == 1
    assert f"truncated: the witness has a checkpoint at position {removed}" in refused.stdout, refused.stdout
    assert _verify(cut, instance, *pin, *witness).exit_code == 1

