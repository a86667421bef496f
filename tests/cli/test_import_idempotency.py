"""`customers import` is idempotent per line (R7.6): a rerun, or a run after one killed
part-way, registers each line's customer once and reports, per line, the id it
created or reused. Each test names the fault it injects; each runs on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.cli.test_cli import customer_line, run

LINES = 400


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    """(environment selecting the store, a function counting the customers projected)."""
    instance = tmp_path / "instance"
    if request.param == "sqlite":
        env: dict[str, str] = {}
        path = instance / "strongroom.sqlite"

        def count() -> int:
            if not path.exists():
                return 0
            # Read-write, so that after a kill this connection recovers the WAL as
            # the next writer will (a read-only one may not see its last commit).
            conn = sqlite3.connect(path, timeout=5)
            try:
                return int(conn.execute("SELECT COUNT(*) FROM rm_customers").fetchone()[0])
            except sqlite3.OperationalError:
                return 0
            finally:
                conn.close()
    else:
        url = request.getfixturevalue("pg_url")
        env = {"STRONGROOM_DATABASE_URL": url}

        def count() -> int:
            with psycopg.connect(url) as conn:
                try:
                    return int(conn.execute("SELECT COUNT(*) FROM rm_customers").fetchone()[0])
                except psycopg.errors.UndefinedTable:
                    return 0

    assert run(instance, "init", "--json", env=env).exit_code == 0
    return instance, env, count


def write_file(path: Path, n: int) -> Path:
    path.write_text("".join(customer_line(email=f"imp{i}@example.org") + "\n" for i in range(n)))
    return path


def find_email(instance: Path, env: dict[str, str], email: str) -> list[str]:
    found = run(instance, "customers", "find", "--purpose", "support ticket 42", "--email", email, env=env)
    assert found.exit_code == 0, found.output
    return found.output.split()


def test_rerunning_an_import_creates_nothing_twice_and_reports_the_reused_ids(tmp_path, store):
    """Fault: the operator runs the same file again (not knowing whether it finished)."""
    instance, env, count = store
    source = write_file(tmp_path / "customers.jsonl", 5)
    first = run(instance, "customers", "import", str(source), "--portfolio", "retail", "--json", env=env)
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    assert (report["imported"], report["reused"]) == (5, 0)
    assert [item["line"] for item in report["lines"]] == [1, 2, 3, 4, 5]
    assert {item["outcome"] for item in report["lines"]} == {"created"}

    again = json.loads(run(instance, "customers", "import", str(source), "--portfolio", "retail", "--json",
                           env=env).output)
    assert (again["imported"], again["reused"]) == (0, 5)
    assert [(i["line"], i["id"]) for i in again["lines"]] == [(i["line"], i["id"]) for i in report["lines"]]
    assert {item["outcome"] for item in again["lines"]} == {"reused"}
    assert count() == 5
    assert find_email(instance, env, "imp0@example.org") == [report["lines"][0]["id"]]

    # Another batch name makes the same lines other customers, on purpose.
    other = json.loads(run(instance, "customers", "import", str(source), "--portfolio", "retail",
                           "--batch", "second-branch", "--json", env=env).output)
    assert other["imported"] == 5 and count() == 10
    text = run(instance, "customers", "import", str(source), "--portfolio", "retail", env=env).output
    assert text.startswith("imported 0, reused 5, rejected 0")


def strongroom(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("strongroom")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from cli.main import run; run()", *args]


def test_an_import_killed_part_way_and_run_again_registers_each_line_once(tmp_path, store):
    """Fault: the import process is killed (SIGKILL, no clean-up) part-way through."""
    instance, env, count = store
    source = write_file(tmp_path / "customers.jsonl", LINES)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")} | env
    process = subprocess.Popen(
        strongroom("--instance", str(instance), "customers", "import", str(source), "--portfolio", "retail",
                   "--json"),
        env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    try:
        while count() < 20:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the import made no progress"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    before = count()
    assert 20 <= before < LINES  # killed part-way: some lines committed, not all

    rerun = run(instance, "customers", "import", str(source), "--portfolio", "retail", "--json", env=env)
    assert rerun.exit_code == 0, rerun.output
    report = json.loads(rerun.output)
    assert len(report["lines"]) == LINES and len({item["id"] for item in report["lines"]}) == LINES
    assert report["reused"] == before and report["imported"] == LINES - before
    assert [item["outcome"] for item in report["lines"]] == ["reused"] * before + ["created"] * (LINES - before)
    assert count() == LINES
    for i in (0, before - 1, before, LINES - 1):
        assert find_email(instance, env, f"imp{i}@example.org") == [report["lines"][i]["id"]]


def test_the_import_keys_keep_no_personal_data(tmp_path, store):
    """What an attacker with the raw SQLite file finds of an imported line's key: nothing."""
    instance, env, _count = store
    source = tmp_path / "customers.jsonl"
    source.write_text(customer_line(email="keyless.planted@example.org") + "\n")
    assert run(instance, "customers", "import", str(source), "--portfolio", "retail", env=env).exit_code == 0
    if env:
        with psycopg.connect(env["STRONGROOM_DATABASE_URL"]) as conn:
            rows = conn.execute("SELECT * FROM idempotency").fetchall()
        assert len(rows) == 1 and "planted" not in repr(rows)
        return
    raw = b"".join(path.read_bytes() for path in instance.glob("strongroom.sqlite*"))
    assert b"keyless.planted" not in raw and b"Plantedname" not in raw
    conn = sqlite3.connect(instance / "strongroom.sqlite")
    try:
        assert conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0] == 1
    finally:
        conn.close()
