"""`strongroom staff training record|list` (R6.4), on SQLite and on PostgreSQL.

The operator records a completion for a member named by username; it is an event on
the member's stream in the audit trail, recorded as the operator's; the list shows
it and whether the training is current. Bad input exits 2 and stores nothing.
"""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main

OPERATOR = f"operator:{getpass.getuser()}@{socket.gethostname()}"


def run(instance: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--instance", str(instance), *args], catch_exceptions=False)


@pytest.fixture
def instance(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", database_url)
    monkeypatch.setenv("STRONGROOM_CHECKPOINT_SECONDS", "3600")
    folder = tmp_path / "instance"
    assert run(folder, "init", "--json").exit_code == 0
    assert run(folder, "staff", "add", "carol", "--role", "agent", "--portfolio", "retail").exit_code == 0
    yield folder


def _record(instance: Path, when: datetime, *extra: str) -> Result:
    return run(instance, "staff", "training", "record", "carol", "--course", "security-awareness",
               "--course-version", "2026.1", "--completed-at", when.isoformat(), "--evidence-ref", "LMS-77",
               *extra)


@pytest.mark.controls("PCI-DSS-12.6.1")
def test_the_operator_records_training_and_lists_it(instance: Path) -> None:
    listed = json.loads(run(instance, "staff", "training", "list", "carol", "--json").output)
    assert listed["current"] is False and listed["completions"] == []  # new: no reveal yet

    stale = datetime.now(UTC) - timedelta(days=400)
    assert json.loads(_record(instance, stale, "--json").output)["current"] is False  # over 12 months
    done = _record(instance, datetime.now(UTC) - timedelta(days=1), "--json")
    assert done.exit_code == 0, done.output
    state = json.loads(done.output)
    assert state["current"] is True and len(state["completions"]) == 2
    assert {c["recorded_by"] for c in state["completions"]} == {OPERATOR}

    # The completion is in the audit trail, as the operator's change to carol's account.
    replay = run(instance, "audit", "replay", "--kind", "change", "--format", "jsonl").output
    events = [e for e in map(json.loads, replay.splitlines()) if e["event"] == "StaffMember.TrainingCompleted"]
    assert len(events) == 2 and {e["actor_id"] for e in events} == {OPERATOR}
    assert {e["stream_id"] for e in events} == {state["staff_id"]}


def test_bad_input_exits_2_and_records_nothing(instance: Path) -> None:
    future = _record(instance, datetime.now(UTC) + timedelta(days=30))
    assert future.exit_code == 2 and "completed_at" in future.output
    nobody = run(instance, "staff", "training", "record", "nobody", "--course", "c", "--course-version", "1",
                 "--completed-at", "2026-01-01", "--evidence-ref", "x")
    assert nobody.exit_code == 2 and "not found" in nobody.output
    bad_date = run(instance, "staff", "training", "record", "carol", "--course", "c", "--course-version", "1",
                   "--completed-at", "yesterday", "--evidence-ref", "x")
    assert bad_date.exit_code == 2
    assert json.loads(run(instance, "staff", "training", "list", "carol", "--json").output)["completions"] == []
