"""`strongroom bench --suite faults`: the figures come out, each beside its goal.

Fault injected (by the suite itself): a PostgreSQL cluster of the run's own,
stopped with `pg_ctl -m immediate` under writers for one second, then started.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli.main import main
from tests.conftest import PG_ADMIN_URL


def test_the_faults_suite_reports_recovery_error_shares_and_healthz_beside_their_goals(tmp_path) -> None:
    result = CliRunner().invoke(main, [
        "--instance", str(tmp_path / "instance"), "bench", "--suite", "faults", "--json", "--store", "postgres",
        "--pg-url", PG_ADMIN_URL, "--fault-clients", "2", "--outage-seconds", "1",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["faults"]
    assert set(report) == {"faults_recovery", "faults_503_share", "faults_500_share", "faults_healthz_p99"}
    assert report["faults_recovery"]["goal"] == "<= 2000 ms" and report["faults_recovery"]["value"] > 0
    assert report["faults_503_share"]["goal"] == "100 %"
    assert report["faults_500_share"]["goal"] == "0 %"
    assert report["faults_503_share"]["value"] + report["faults_500_share"]["value"] <= 100
    assert report["faults_healthz_p99"]["goal"] == "<= 100 ms" and report["faults_healthz_p99"]["value"] > 0
    for figure in report.values():
        assert figure["met"] in (True, False) and figure["unit"]
    assert not (tmp_path / "instance").exists()  # never the operator's instance
