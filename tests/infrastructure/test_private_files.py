"""Stores, keys, checkpoint copies and local backups are the service user's alone
(issue 10, item 10f; R1.3, R1.4): files 0600, folders 0700, made so by explicit modes
even under a permissive umask (022, a common default), on SQLite and on PostgreSQL
(whose local files are the KEK, the checkpoint copies and the backups)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from application.context import acting_as
from infrastructure.backup.targets import LocalTarget
from infrastructure.private_files import make_private_sqlite
from tests.application.conftest import OPERATOR, customer_fields, make_components


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def modes_under(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): stat.S_IMODE(path.stat().st_mode) for path in [folder, *folder.rglob("*")]}


def test_stores_wal_keys_and_checkpoint_copies_are_private_whatever_the_umask(
        tmp_path: Path, database_url: str, permissive_umask: None) -> None:
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)
    built = make_components(tmp_path, database_url, checkpoint_dir=str(tmp_path / "evidence" / "checkpoints"))
    try:
        with acting_as(OPERATOR):
            for n in range(3):
                built.app.register_customer(customer_fields(email=f"ada.{n}@example.org"))
            assert built.tamper_evidence.checkpoint() is not None
            built.tamper_evidence.checkpoint_run()
        files = modes_under(instance)
        if database_url.startswith("sqlite"):
            # The write-ahead log and its index are open now, holding the latest pages.
            store = Path(database_url.removeprefix("sqlite:///"))
            for name in (store, Path(f"{store}-wal"), Path(f"{store}-shm"), instance / "keys.sqlite"):
                assert name.exists(), name
                assert stat.S_IMODE(name.stat().st_mode) == 0o600, (name, oct(name.stat().st_mode))
        checkpoints = modes_under(tmp_path / "evidence")
    finally:
        built.close()
    assert files["kek.key"] == 0o600
    assert any(name.startswith("checkpoints/checkpoint-") for name in checkpoints), checkpoints
    for name, mode in checkpoints.items():
        wanted = 0o600 if name.endswith(".json") else 0o700
        assert mode == wanted, (name, oct(mode))


def test_a_local_backup_target_makes_every_folder_0700_and_every_file_0600(
        tmp_path: Path, permissive_umask: None) -> None:
    target = LocalTarget("local", tmp_path / "backups" / "local")
    target.write("events/run-1/000001.seg", b"segment")
    target.create_exclusive("events/run-1.manifest.json", b"{}")
    for name, mode in modes_under(tmp_path / "backups").items():
        path = tmp_path / "backups" / name
        assert mode == (0o700 if path.is_dir() else 0o600), (name, oct(mode))


def test_a_store_left_readable_by_an_earlier_version_is_made_private(tmp_path: Path) -> None:
    store = tmp_path / "old.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").write_bytes(b"")
        os.chmod(f"{store}{suffix}", 0o644)
    make_private_sqlite(str(store))
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(os.stat(f"{store}{suffix}").st_mode) == 0o600
