"""Restore drills (R4.3): a good backup passes, a drifted read model fails, and every
result lands in the audit log with its RPO and RTO."""

from __future__ import annotations

import uuid

import pytest

from application.context import acting_as
from application.restore import RecoveryRecords
from infrastructure.backup.create import create_backup
from infrastructure.backup.drill import run_drill
from infrastructure.backup.targets import LocalTarget
from tests.application.conftest import OPERATOR, customer_fields, make_components


@pytest.fixture
def live(tmp_path, database_url):
    built = make_components(tmp_path, database_url)
    with acting_as(OPERATOR):
        yield built
    built.close()


@pytest.fixture
def target(tmp_path):
    return LocalTarget("local", tmp_path / "backups")


def _populate(app, n=6):
    ids = [app.register_customer(customer_fields(email=f"d{i}@example.org"))["id"] for i in range(n)]
    app.record_interaction(ids[0], kind="note", channel="branch", notes="Planted drill note")
    app.update_customer(ids[1], {"risk_rating": "high"})
    return ids


@pytest.mark.controls("GDPR-32")
def test_a_drill_of_a_good_backup_passes_and_is_recorded(live, target):
    _populate(live.app)
    backup = create_backup(live, target, segment_rows=4)
    result = run_drill(live, target)
    assert result.failures == [] and result.outcome == "succeeded"
    assert result.position == backup.last_position and result.backup_id == backup.backup_id
    assert result.reference == "live read model"
    assert result.restored["rm_customers"]["rows"] == 6 and result.restored["rm_interactions"]["rows"] == 1
    assert result.rto_seconds > 0 and result.rpo_seconds >= 0

    status = RecoveryRecords(live.app).status()
    assert status["last_drill"]["outcome"] == "succeeded"
    assert status["last_good_drill"]["backup_id"] == backup.backup_id
    assert status["last_drill"]["rto_seconds"] == round(result.rto_seconds, 3)


def test_customers_changed_since_the_backup_are_compared_at_the_backup_position(live, target):
    ids = _populate(live.app)
    create_backup(live, target)
    live.app.update_customer(ids[2], {"email": "changed@example.org"})
    live.app.erase_customer(ids[3], "GDPR Art. 17 request")
    live.app.register_customer(customer_fields(email="later@example.org"))
    result = run_drill(live, target)
    assert result.failures == [], result.failures
    assert result.reference.startswith("live log projected to position")
    # The erased customer is gone from the restored read model too (R4.6).
    assert result.restored["rm_customers"]["rows"] == 5


def test_a_read_model_that_drifted_from_the_log_fails_the_drill(live, target):
    ids = _populate(live.app)
    create_backup(live, target)
    with live.events_db.transaction() as cur:  # a lost blind-index row on the live side
        cur.execute("DELETE FROM rm_customer_search WHERE customer_id = ? AND field = ?", (ids[4], "email"))
    result = run_drill(live, target)
    assert result.outcome == "failed"
    assert any("rm_customer_search differs" in f for f in result.failures)
    status = RecoveryRecords(live.app).status()
    assert status["last_drill"]["outcome"] == "failed" and status["last_good_drill"] is None


def test_a_damaged_backup_fails_the_drill_naming_the_file(live, target):
    _populate(live.app)
    backup = create_backup(live, target, segment_rows=3)
    segment = target.root / "events" / backup.backup_id / "000002.seg"
    segment.write_bytes(segment.read_bytes()[:-10])
    result = run_drill(live, target)
    assert result.outcome == "failed"
    assert any(f"events/{backup.backup_id}/000002.seg" in f for f in result.failures)


def test_a_drill_with_no_backup_fails(live, target):
    _populate(live.app, 2)
    result = run_drill(live, target)
    assert result.outcome == "failed" and result.failures


def test_recording_a_drill_needs_an_actor(tmp_path):
    built = make_components(tmp_path, f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.sqlite'}")
    try:
        from application.errors import AnonymousWrite

        with pytest.raises(AnonymousWrite):
            RecoveryRecords(built.app).record_drill(target="local", backup_id="x", position=0, rpo_seconds=0,
                                                    rto_seconds=0, outcome="failed", failures=[])
    finally:
        built.close()
