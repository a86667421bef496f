"""`strongroom worker --monitor` rides out a PostgreSQL crash (issue 12, R7.4, R7.6): its
database is killed under it (`pg_ctl stop -m immediate`) and started again; the monitor
stays up, raises the next alert once it is back, and writes only JSON lines (R7.3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from application.context import RequestContext, acting_as
from cli.main import main
from infrastructure.composition import Settings, build
from tests.application.test_monitoring import stored_alerts
from tests.throwaway_pg import cluster  # noqa: F401 - the fixture, used by name

STAFF = RequestContext(actor_id="0b5c3c4e-1111-4c1e-9a0e-000000000007", via="api", session_id="s-7",
                       client_addr="192.0.2.7", purpose="INC-9")


def break_glass(instance: Path, grant: str) -> None:
    """A break-glass record in the log, as the API writes it (the monitor's input)."""
    built = build(Settings.load(instance))
    try:
        with acting_as(STAFF):
            built.app.access_log.record(kind="break_glass", outcome="allowed",
                                        details={"grant_id": grant, "portfolio": "private", "minutes": "5"})
    finally:
        built.close()


def alerts(instance: Path) -> list[str]:
    built = build(Settings.load(instance))
    try:
        return sorted(a.details.get("grant_id", "") for a, _ in stored_alerts(built.app, "break_glass_opened"))
    finally:
        built.close()


def wait_for(instance: Path, expected: list[str], seconds: float) -> list[str]:
    until = time.monotonic() + seconds
    while True:
        found = alerts(instance)
        if found == expected or time.monotonic() > until:
            return found
        time.sleep(0.3)


@pytest.mark.slow
def test_the_monitor_rides_out_a_postgres_crash_and_logs_only_json(tmp_path, cluster, monkeypatch):  # noqa: F811
    instance = tmp_path / "instance"
    env = {"STRONGROOM_DATABASE_URL": cluster.url("strongroom")}
    assert CliRunner().invoke(main, ["--instance", str(instance), "init", "--json"], env=env).exit_code == 0
    monitor = subprocess.Popen(  # our own console script, fixed arguments
        [str(Path(sys.executable).with_name("strongroom")), "--instance", str(instance), "worker", "--monitor"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", env["STRONGROOM_DATABASE_URL"])  # for the in-test reads
    try:
        break_glass(instance, "before")
        assert wait_for(instance, ["before"], 10) == ["before"]

        cluster.crash()
        time.sleep(6)  # longer than the fallback poll: the monitor meets the outage
        assert monitor.poll() is None, "the monitor exited when PostgreSQL went down"
        cluster.start()

        break_glass(instance, "after")
        assert wait_for(instance, ["after", "before"], 20) == ["after", "before"]  # each once
        assert monitor.poll() is None
    finally:
        monitor.send_signal(signal.SIGTERM)
        out, err = monitor.communicate(timeout=20)
    assert monitor.returncode == 0, err
    assert out == ""
    messages = [json.loads(line)["message"] for line in err.splitlines()]  # every line JSON, or this raises
    # It met the outage (its LISTEN connection broke, or a read failed) and said so.
    assert {"store unavailable; the monitor will try again",
            "listening for new events failed; polling meanwhile"} & set(messages), messages
    if "store unavailable; the monitor will try again" in messages:
        assert "store available again; the monitor carries on" in messages
