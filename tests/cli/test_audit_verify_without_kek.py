"""`strongroom audit verify` over the store runs without the KEK (R3.3): tamper evidence
survives the loss of the key, and an auditor given the store is not given the KEK.

Faults injected: the KEK file moved away, then a wrong KEK in its place; on top of
each, one byte flipped in a raw event row (an attacker with database access), and
the published key replaced by another (someone covering their tracks).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cli.main import main
from infrastructure.crypto.kek import LocalKek
from tests.application.conftest import customer_fields
from tests.infrastructure.chain_attacks import RawStore


def run(instance: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--instance", str(instance), *args], catch_exceptions=False)


@pytest.fixture
def instance(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", database_url)
    folder = tmp_path / "instance"
    assert run(folder, "init", "--json").exit_code == 0
    lines = tmp_path / "customers.jsonl"
    lines.write_text("".join(json.dumps(customer_fields(email=f"kek.{n}@example.org")) + "\n" for n in range(3)))
    assert run(folder, "customers", "import", str(lines), "--json").exit_code == 0
    yield folder


@pytest.fixture(params=["missing", "wrong"])
def without_kek(request: pytest.FixtureRequest, instance: Path, tmp_path: Path) -> Path:
    """The instance with its KEK moved away, or replaced by another one."""
    (instance / "kek.key").rename(tmp_path / "kek.key.away")
    if request.param == "wrong":
        LocalKek.create(instance / "kek.key")
    assert run(instance, "customers", "list").exit_code == 2  # the rest of the tool cannot start
    return instance


def test_an_intact_store_verifies_without_the_kek(without_kek: Path) -> None:
    result = run(without_kek, "audit", "verify", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["intact"] is True and report["rows_checked"] >= 4
    assert report["checkpoints_verified"] >= 1
    assert any("without the KEK" in note for note in report["notes"])
    assert run(without_kek, "audit", "verify", "--from-checkpoint").exit_code == 0


def test_a_flipped_byte_is_found_without_the_kek(without_kek: Path, database_url: str) -> None:
    raw = RawStore(database_url)
    target = raw.positions()[2]
    raw.flip_byte(target)
    result = run(without_kek, "audit", "verify")
    assert result.exit_code == 1
    assert result.output.startswith(f"TAMPERING FOUND at position {target}: the row's contents do not match its hash")


def test_a_replaced_public_key_fails_the_checkpoints(without_kek: Path) -> None:
    # Without the KEK the published key is all there is to check against: one that
    # did not sign the checkpoints cannot vouch for them.
    other = Ed25519PrivateKey.generate().public_key()
    (without_kek / "audit-signing.pub").write_bytes(other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert run(without_kek, "audit", "verify").exit_code == 1


def test_without_the_kek_and_the_public_key_verify_refuses_clearly(without_kek: Path) -> None:
    (without_kek / "audit-signing.pub").unlink()
    result = run(without_kek, "audit", "verify")
    assert result.exit_code == 2
    assert "audit-signing.pub" in result.output
