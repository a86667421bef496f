"""Keys whose subject's events never committed are swept (issue 9).

Fault injected: a real `strongroom customers import` process SIGKILLed after the new
customer's keys committed (their own transaction, on the keys database) and before
its events did: the keys are left for a customer who never existed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from tests.application.conftest import customer_fields

ROOT = Path(__file__).resolve().parents[2]

# `strongroom customers import`, with the event store's insert replaced by SIGKILL:
# the mapper has made and committed the keys by then; nothing after runs.
KILLED_IMPORT = """
import os, signal, sys
import cli.context
from infrastructure.composition import build as real_build

def build(*args, **kwargs):
    built = real_build(*args, **kwargs)
    built.app.recorder.insert_events = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    return built

cli.context.build = build
from cli.main import main
main(["--instance", sys.argv[1], "customers", "import", sys.argv[2]])
"""


def run(instance: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--instance", str(instance), *args], catch_exceptions=False)


def active_keys(instance: Path) -> int:
    counts = json.loads(run(instance, "keys", "status", "--json").output)["data_keys"]
    return sum(n for name, n in counts.items() if name.startswith("active_"))


@pytest.fixture
def instance(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", database_url)
    folder = tmp_path / "instance"
    assert run(folder, "init", "--json").exit_code == 0
    lines = tmp_path / "customers.jsonl"
    lines.write_text("".join(json.dumps(customer_fields(email=f"kept.{n}@example.org")) + "\n" for n in range(2)))
    assert run(folder, "customers", "import", str(lines)).exit_code == 0
    yield folder


def kill_an_import(instance: Path, tmp_path: Path) -> None:
    line = tmp_path / "killed.jsonl"
    line.write_text(json.dumps(customer_fields(email="never.committed@example.org")) + "\n")
    done = subprocess.run([sys.executable, "-c", KILLED_IMPORT, str(instance), str(line)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -9, done.stderr


def test_keys_left_by_a_killed_write_are_swept_and_recorded(instance: Path, tmp_path: Path) -> None:
    before = active_keys(instance)
    kill_an_import(instance, tmp_path)
    left = active_keys(instance) - before
    assert left >= 2, "the killed write made keys first"
    head = json.loads(run(instance, "audit", "verify", "--json").output)["head"]

    # Young keys are left alone: their events may still be on the way.
    young = json.loads(run(instance, "keys", "sweep-orphans", "--json").output)
    assert young["orphans"] == []
    dry = json.loads(run(instance, "keys", "sweep-orphans", "--grace-hours", "0", "--dry-run", "--json").output)
    [orphan] = dry["orphans"]
    assert dry["removed"] is False and active_keys(instance) - before == left

    swept = run(instance, "keys", "sweep-orphans", "--grace-hours", "0", "--json")
    assert swept.exit_code == 0, swept.output
    assert json.loads(swept.output)["orphans"] == [orphan]
    assert active_keys(instance) == before
    status = json.loads(run(instance, "keys", "status", "--customer", orphan["subject_id"], "--json").output)
    assert {status["customer"]["profile"], status["customer"]["kyc"]} == {"destroyed"}  # entered in the erasure ledger
    # The customers whose events did commit keep their keys, and the log is untouched.
    assert json.loads(run(instance, "keys", "sweep-orphans", "--grace-hours", "0", "--json").output)["orphans"] == []
    assert json.loads(run(instance, "audit", "verify", "--json").output)["head"] == head
    found = run(instance, "customers", "find", "--purpose", "support ticket 42", "--email", "kept.1@example.org")
    assert found.exit_code == 0, found.output
    shown = run(instance, "customers", "show", "--purpose", "support ticket 42", found.output.split()[0])
    assert shown.exit_code == 0 and "kept.1@example.org" in shown.output, shown.output


def test_a_sweep_against_an_empty_event_log_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The mistake it guards against: the keys database of a live store, the events
    # URL of another (empty) one. Every key would look orphaned.
    folder = tmp_path / "instance"
    assert run(folder, "init", "--json").exit_code == 0
    (tmp_path / "another.sqlite").touch()  # an empty store (a missing one is refused before this)
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", f"sqlite:///{tmp_path / 'another.sqlite'}")
    result = run(folder, "keys", "sweep-orphans", "--grace-hours", "0")
    assert result.exit_code == 1 and "event log is empty" in result.output
