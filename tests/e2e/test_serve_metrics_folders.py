"""Fault: a `strongroom serve` master killed with SIGKILL leaves its metrics folder behind.

The next `strongroom serve` removes it at start; a live server's folder, and a
folder that names no owner yet, are never touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli.metrics_folders import OWNER_FILE, PREFIX, remove_stale_metrics_folders
from tests.e2e.server import initialise, serving


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("metrics-folders") / "instance"
    initialise(folder)
    return folder


def owned_by(temporary: Path, pid: int) -> list[Path]:
    return [folder for folder in temporary.glob(f"{PREFIX}*")
            if (folder / OWNER_FILE).is_file() and (folder / OWNER_FILE).read_text().split()[0] == str(pid)]


def test_a_killed_masters_folder_is_removed_by_the_next_serve_and_a_live_ones_is_kept(
        instance: Path, tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {"TMPDIR": str(temporary)}
    # A folder whose pid now belongs to another, live process (pid reuse after a kill).
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    reused = temporary / f"{PREFIX}reused"
    reused.mkdir()
    (reused / OWNER_FILE).write_text(f"{bystander.pid} 1\n")
    # A folder made by a server that has not yet named itself.
    unnamed = temporary / f"{PREFIX}starting"
    unnamed.mkdir()
    try:
        with serving(instance, tmp_path / "killed.log", env=env) as killed:
            master = killed["process"]
            [killed_folder] = owned_by(temporary, master.pid)
            assert not reused.exists()  # the start-up sweep already removed it
            assert remove_stale_metrics_folders(temporary) == []  # the live server's folder stays
            assert killed_folder.is_dir()
            os.killpg(master.pid, signal.SIGKILL)  # the fault: no shutdown code runs
            master.wait()
        assert killed_folder.is_dir(), "a killed master cannot clean up after itself"

        with serving(instance, tmp_path / "next.log", env=env) as running:
            assert not killed_folder.exists()
            assert len(owned_by(temporary, running["process"].pid)) == 1
            assert unnamed.is_dir()
        assert "removed 1 metrics folder(s)" in (tmp_path / "next.log").read_text()
    finally:
        bystander.kill()
        bystander.wait()
    # A clean stop removes its own folder; only the unnamed one is left.
    assert sorted(p.name for p in temporary.glob(f"{PREFIX}*")) == [unnamed.name]
