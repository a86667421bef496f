"""`strongroom recert start|list|decide|check` (R6.2), as the operator runs them.

The operator starts a campaign, lists it, may not decide an item that is not
escalated (exit 2, nothing changed), and `check` (cron) reports what it did.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main


def run(instance: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--instance", str(instance), *args], catch_exceptions=False)


@pytest.mark.controls("PCI-DSS-7.2.4")
def test_the_operator_starts_lists_and_checks_a_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite'}")
    monkeypatch.setenv("STRONGROOM_CHECKPOINT_SECONDS", "3600")
    folder = tmp_path / "instance"
    assert run(folder, "init", "--json").exit_code == 0
    assert run(folder, "staff", "add", "sam", "--role", "supervisor", "--portfolio", "retail").exit_code == 0
    assert run(folder, "staff", "add", "ann", "--role", "agent", "--portfolio", "retail").exit_code == 0
    started = run(folder, "recert", "start", "--json")
    assert started.exit_code == 0, started.output
    campaign = json.loads(started.output)
    items = {i["username"]: i for i in campaign["items"]}
    assert set(items) == {"admin", "sam", "ann"} and items["ann"]["state"] == "pending"
    assert run(folder, "recert", "start").exit_code == 2  # one open campaign at a time

    refused = run(folder, "recert", "decide", campaign["id"], items["ann"]["staff_id"], "revoke")
    assert refused.exit_code == 2 and "not yours" in refused.output
    listed = json.loads(run(folder, "recert", "list", "--json").output)
    assert [c["id"] for c in listed] == [campaign["id"]] and listed[0]["summary"]["pending"] == 3
    checked = json.loads(run(folder, "recert", "check", "--json").output)
    assert checked == {"escalated": 0, "alerted": 0, "started": None}
    assert "ann" in run(folder, "recert", "list").output
