"""`strongroom monitor rules`, the monitor's settings, and a failed `audit verify` that the
monitor alerts on (issue 12; R3.6, R3.3), on SQLite and again on PostgreSQL where a store
is involved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from application.context import RequestContext, acting_as
from cli.main import main
from infrastructure.composition import Settings, build
from infrastructure.monitor import build_monitor
from tests.application.test_monitoring import stored_alerts
from tests.infrastructure.chain_attacks import RawStore


def run(instance: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["--instance", str(instance), *args], env=env, catch_exceptions=False)


def test_the_rules_table_shows_every_rule_with_the_settings_applied(tmp_path: Path) -> None:
    env = {"STRONGROOM_MONITOR_RULES": '{"searches_empty": {"threshold": 4, "window_seconds": 30}}',
           "STRONGROOM_MONITOR_TIME_ZONE": "Europe/Paris"}
    shown = json.loads(run(tmp_path, "monitor", "rules", "--json", env=env).output)
    rules = {r["id"]: r for r in shown["rules"]}
    assert rules["searches_empty"] == {
        "id": "searches_empty", "severity": "critical", "threshold": 4, "window_seconds": 30.0,
        "responses": ["alert", "webhook", "end_sessions"], "enabled": True,
        "catches": "search oracle: guessing a value by searches that find nothing"}
    assert len(rules) == 17 and shown["business_hours"]["time_zone"] == "Europe/Paris"
    table = run(tmp_path, "monitor", "rules", env=env).output
    assert "searches_empty" in table and "break_glass_opened" in table
    assert "business hours: 07:00-19:00 mon,tue,wed,thu,fri (Europe/Paris)" in table


def test_a_misspelt_rule_stops_the_command_and_names_it(tmp_path: Path) -> None:
    result = run(tmp_path, "monitor", "rules", env={"STRONGROOM_MONITOR_RULES": '{"search_empty": {}}'})
    assert result.exit_code == 2
    assert "monitor_rules names unknown rules: search_empty" in result.output


def test_the_monitor_process_needs_postgresql(tmp_path: Path) -> None:
    folder = tmp_path / "instance"
    assert run(folder, "init", "--json").exit_code == 0
    result = run(folder, "worker", "--monitor")
    assert result.exit_code == 2


@pytest.fixture
def instance(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", database_url)
    folder = tmp_path / "instance"
    assert run(folder, "init", "--json").exit_code == 0
    yield folder


def test_a_failed_verification_is_recorded_and_the_monitor_alerts(instance: Path, database_url: str) -> None:
    # Tampering with the trail (R3.3) is found by `audit verify`; the run itself goes
    # into the log, so the monitor raises the critical alert within its next read.
    assert run(instance, "audit", "verify").exit_code == 0
    raw = RawStore(database_url)
    raw.flip_byte(raw.positions()[1])
    assert run(instance, "audit", "verify").exit_code == 1
    built = build(Settings.load(instance))
    try:
        with acting_as(RequestContext(actor_id="operator:test", via="cli")):
            build_monitor(built).catch_up()
            found = {a.details.get("position", "verify"): a for a, _ in
                     stored_alerts(built.app, "chain_verification_failed")}
        # Two alerts: the monitor's own read of the changed row failed authentication,
        # and the verification run recorded its failure.
        assert set(found) == {"verify", str(raw.positions()[1])}
        assert found["verify"].severity == "critical" and found["verify"].actor_id.startswith("operator:")
        assert int(found["verify"].details["problems"]) >= 1
    finally:
        built.close()
