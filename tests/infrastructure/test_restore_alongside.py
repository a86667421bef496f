"""A restore rebuilds its read models while it inserts its rows (issue 15 item 3, R4.4).

The rebuild's workers start before the first row is in and follow the log as each
batch commits: only a full page, or the last one once every row is in, is projected.
The read models must come out row for row what a rebuild of the finished log in one
process makes, and a restore that fails part-way must leave no worker behind.
On SQLite and again on PostgreSQL.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from infrastructure import projection as projection_module
from infrastructure.backup import restore as restore_module
from infrastructure.backup.create import create_backup
from infrastructure.backup.eventrows import EventTable
from infrastructure.backup.manifest import BackupCorrupt
from infrastructure.backup.restore import restore_backup
from infrastructure.partitioned_rebuild import RebuildInterrupted
from tests.application.test_partitioned_rebuild import _fill, _raise_alert, read_model_digest
from tests.infrastructure.test_backup_restore_faults import (  # noqa: F401 - fixtures
    into,
    live,
    restored_instance,
    target,
)


@pytest.fixture
def slow_small_batches(monkeypatch):
    """Rows go in 7 at a time, 30 ms apart, and pages hold 10: the workers meet short
    pages (a batch not in yet) again and again, and a page spans two batches."""
    monkeypatch.setattr(restore_module, "INSERT_BATCH", 7)
    monkeypatch.setattr(projection_module, "PAGE", 10)
    insert = EventTable.insert_decoded

    def slowly(self, columns, rows):
        time.sleep(0.03)
        insert(self, columns, rows)

    monkeypatch.setattr(EventTable, "insert_decoded", slowly)


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_read_models_rebuilt_alongside_the_insert_are_those_of_a_rebuild_after_it(
        live, target, into, tmp_path, slow_small_batches, jobs):
    ids = _fill(live.app, 9)
    live.app.update_customer(ids[2], {"risk_rating": "high"})
    live.app.erase_customer(ids[4], "data subject request")  # R5.4: the purge follows the rows
    _raise_alert(live.app, "1")
    create_backup(live, target)
    head = live.operations.log_head()

    result = restore_backup(live=live, target=target, into_url=into, jobs=jobs)
    assert result.position == result.rows == head
    restored = restored_instance(live, tmp_path, into, result.keys_into)
    try:
        alongside = read_model_digest(restored)
        assert alongside["rm_customers"][0] == 8 and alongside["alerts"][0] == 1
        assert alongside["rm_tracking"][0] == 1
        restored.operations.rebuild_read_models()  # one process, the whole log already there
        assert read_model_digest(restored) == alongside
        assert restored.app.find_customers("email", "c2@example.org")[0]["risk_rating"] == "high"
        assert restored.app.find_customers("email", "c4@example.org") == []
    finally:
        restored.close()


def test_a_restore_cut_at_a_position_rebuilds_alongside_up_to_that_position(
        live, target, into, tmp_path, slow_small_batches):
    _fill(live.app, 6)
    cut = live.operations.log_head()
    _fill(live.app, 3)  # after the cut: not restored
    create_backup(live, target)

    result = restore_backup(live=live, target=target, into_url=into, position=cut, jobs=2)
    assert result.position == result.rows == cut
    restored = restored_instance(live, tmp_path, into, result.keys_into)
    try:
        alongside = read_model_digest(restored)
        assert alongside["rm_customers"][0] == 6
        restored.operations.rebuild_read_models()
        assert read_model_digest(restored) == alongside
    finally:
        restored.close()


def _before_the_third_batch(monkeypatch, action):
    """`action()` (which may raise) just before the third batch of rows goes in;
    returns the insert it wraps."""
    insert = EventTable.insert_decoded
    batches = []

    def patched(self, columns, rows):
        batches.append(len(rows))
        if len(batches) == 3:
            action()
        insert(self, columns, rows)

    monkeypatch.setattr(EventTable, "insert_decoded", patched)
    return insert


def _fails_at_once_and_a_rerun_completes(live, target, into, monkeypatch, insert, expected, match) -> None:
    started = time.monotonic()
    with pytest.raises(expected, match=match):
        restore_backup(live=live, target=target, into_url=into, jobs=2)
    assert time.monotonic() - started < 30  # not waiting on workers that wait for rows
    assert multiprocessing.active_children() == []
    monkeypatch.setattr(EventTable, "insert_decoded", insert)
    again = restore_backup(live=live, target=target, into_url=into, jobs=2)
    assert again.started_over and again.rows == live.operations.log_head()


def test_a_restore_that_fails_while_inserting_stops_its_rebuild_workers(
        live, target, into, tmp_path, slow_small_batches, monkeypatch):
    """Fault: a segment found corrupt part-way (after the workers started): the restore
    fails at once with what was wrong, and no worker is left waiting for rows."""
    _fill(live.app, 12)  # 24 events and more: four batches of 7 at least
    create_backup(live, target)

    def corrupt():
        raise BackupCorrupt("000001.seg", "injected: corrupt part-way")

    insert = _before_the_third_batch(monkeypatch, corrupt)
    # A SIGTERM handler that only takes note, as `strongroom worker` installs (and as a
    # test that ran it in-process leaves behind): the forked workers must stop anyway.
    noted = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        _fails_at_once_and_a_rerun_completes(live, target, into, monkeypatch, insert, BackupCorrupt, "injected")
    finally:
        signal.signal(signal.SIGTERM, noted)


def test_a_rebuild_worker_killed_while_it_waits_for_rows_fails_the_restore_without_hanging(
        live, target, into, slow_small_batches, monkeypatch):
    """Fault: a worker is SIGKILLed (the OOM killer, say) while it waits for the next
    batch. The restore must end, saying which partition stopped, not wait for it for
    ever; running it again starts over and completes."""
    _fill(live.app, 12)
    create_backup(live, target)

    def kill_a_worker():
        victim = multiprocessing.active_children()[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(timeout=10)

    insert = _before_the_third_batch(monkeypatch, kill_a_worker)
    _fails_at_once_and_a_rerun_completes(live, target, into, monkeypatch, insert, RebuildInterrupted,
                                         "stopped \\(exit -9\\).*run the restore again")
