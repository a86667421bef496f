"""`/readyz` while signed checkpoints have no second copy (R3.3, R7.6).

The copy going missing is a fault in the evidence trail, not in serving: the answer
stays 200 "ready" (every API process out of the load balancer over a full backup
disk would be an outage), with a warning an operator's monitoring can see. The
warning names no folder or position: the probe is public.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from application.context import acting_as
from tests.application.conftest import OPERATOR

WARNING = "checkpoint copies: 1 signed checkpoint older than 0 s has no copy in the checkpoint folder"


def _blocked(tmp_path: Path) -> Path:
    blocker = tmp_path / "backup-mount"
    blocker.write_text("not a folder")
    return blocker


def _checkpoint_a_new_row(app) -> None:
    built = app.extensions["strongroom"]
    with acting_as(OPERATOR):
        built.app.access_log.record(kind="view", customer_ids=[], fields=[])
    assert built.tamper_evidence.checkpoint() is not None  # the row is signed even though the copy fails


@pytest.mark.controls("PCI-DSS-10.7.2")
def test_readiness_warns_while_a_checkpoint_has_no_copy_and_clears_once_it_is_made(
    app_factory, database_url, tmp_path
):
    """Fault: checkpoint_dir lies below a regular file (ENOTDIR, even for root); then the file is removed."""
    blocker = _blocked(tmp_path)
    app = app_factory(database_url=database_url, checkpoint_dir=str(blocker / "checkpoints"),
                      checkpoint_copy_grace_seconds=0)
    client = app.test_client()
    assert client.get("/readyz").get_json() == {"status": "ready"}  # nothing signed yet

    _checkpoint_a_new_row(app)
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "warnings": [WARNING]}
    assert str(tmp_path) not in response.get_data(as_text=True)

    blocker.unlink()  # the folder is repaired; the next checkpoint makes the copy
    app.extensions["strongroom"].tamper_evidence.checkpoint()
    assert (blocker / "checkpoints").is_dir()
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_readiness_does_not_warn_within_the_grace_period(app_factory, tmp_path):
    """Fault: checkpoint_dir lies below a regular file, for less than the grace period."""
    blocker = _blocked(tmp_path)
    app = app_factory(checkpoint_dir=str(blocker / "checkpoints"), checkpoint_copy_grace_seconds=3600)
    _checkpoint_a_new_row(app)
    assert app.test_client().get("/readyz").get_json() == {"status": "ready"}


def test_a_slow_warning_check_keeps_its_last_answer_and_the_probe_its_deadline():
    """Fault: the copy check hangs (a folder on a stalled network mount)."""
    import threading
    import time

    from web.health import ReadinessProbe

    release = threading.Event()

    def copies() -> str:
        release.wait()
        return "2 signed checkpoints ... have no copy"

    probe = ReadinessProbe({"event store": lambda: 1}, timeout=0.2, warnings={"checkpoint copies": copies})
    try:
        release.set()
        assert probe.warnings() == ["checkpoint copies: 2 signed checkpoints ... have no copy"]
        release.clear()
        started = time.monotonic()
        assert probe.warnings() == ["checkpoint copies: 2 signed checkpoints ... have no copy"]
        assert time.monotonic() - started < 1
    finally:
        release.set()
        probe.stop()
