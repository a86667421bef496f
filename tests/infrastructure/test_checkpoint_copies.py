"""The checkpoint folder copy under faults (R3.3): retried, never claimed, made later.

The fault is real: `checkpoint_dir` lies below a regular file, so every mkdir and
open there fails with NotADirectoryError, even for root; removing the file repairs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from application.context import acting_as
from infrastructure.audit.checkpoints import copy_name
from infrastructure.composition import Components
from tests.application.conftest import OPERATOR, make_components


def _until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.05)


def _write_a_row(built: Components) -> int:
    with acting_as(OPERATOR):
        built.app.access_log.record(kind="view", customer_ids=[], fields=[])
    head = built.app.recorder.chain_head()
    assert head is not None
    return int(head[0])


def _signed_at(built: Components, position: int) -> bool:
    latest = built.tamper_evidence.store.latest_in_database()
    return latest is not None and latest.position >= position


def test_the_checkpointer_retries_a_failed_copy_by_itself_and_after_the_next_commit(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault: checkpoint_dir below a regular file while the background checkpointer signs; then repaired."""
    blocker = tmp_path / "backup-mount"
    blocker.write_text("not a folder")
    folder = blocker / "checkpoints"
    built = make_components(tmp_path, database_url, checkpoint_dir=str(folder), checkpoint_rows=1,
                            checkpoint_copy_grace_seconds=0)
    try:
        with caplog.at_level(logging.ERROR, logger="infrastructure.audit.checkpoints"):
            first = _write_a_row(built)
            _until(lambda: _signed_at(built, first))  # the row is signed though the copy fails
            _until(lambda: "NotADirectoryError" in caplog.text)
        assert f"checkpoint copy to {folder} failed (NotADirectoryError) after 3 attempts" in caplog.text
        report = built.tamper_evidence.verify()
        assert report.intact and not report.passed and first in report.copies_missing

        # Repaired, with no new commit: the thread retries the missing copy on its own.
        blocker.unlink()
        _until(lambda: (folder / copy_name(first)).exists())
        # And the next commit's checkpoint is copied at once.
        second = _write_a_row(built)
        _until(lambda: (folder / copy_name(second)).exists())
        store = built.tamper_evidence.store
        assert all(store.copy_matches(c) for c in store.in_database())
        assert built.tamper_evidence.verify().passed
    finally:
        built.close()


def test_a_copy_that_differs_is_never_overwritten_nor_called_copied(tmp_path: Path, database_url: str) -> None:
    """Fault: the copy in the folder was changed (one hex digit of its head hash)."""
    built = make_components(tmp_path, database_url, checkpoint_seconds=3600)
    try:
        _write_a_row(built)
        run = built.tamper_evidence.checkpoint_run()
        assert run.checkpoint is not None and run.copied
        path = built.settings.checkpoint_dir / copy_name(run.checkpoint.position)
        text = path.read_text()
        digit = text.index('"head_hash": "') + len('"head_hash": "')
        path.write_text(text[:digit] + ("1" if text[digit] == "0" else "0") + text[digit + 1:])
        again = built.tamper_evidence.checkpoint_run()
        assert again.copies.complete and not again.copied  # nothing missing, but no claim either
        assert path.read_text() != text
        assert not built.tamper_evidence.verify().intact
    finally:
        built.close()


def test_one_process_stores_its_checkpoints_in_the_order_of_their_positions(
    tmp_path: Path, database_url: str
) -> None:
    """R3.3: the background thread and a caller signing at once. The one that read the
    older head, if slower, must not store it after the newer one: a backup taken in
    between would never carry it (a restore's checkpoint count then came up short)."""
    built = make_components(tmp_path, database_url, checkpoint_seconds=3600)
    try:
        _write_a_row(built)
        checkpointer = built.tamper_evidence.checkpointer
        checkpointer.every_rows = 10**9
        checkpointer.sign()  # signed now; the thread has nothing due for an hour
        real_verify = checkpointer._verify_up_to
        first_in, release = threading.Event(), threading.Event()

        def slow_first(position: int) -> None:
            if not first_in.is_set():
                first_in.set()
                release.wait(5)
            real_verify(position)

        checkpointer._verify_up_to = slow_first  # type: ignore[method-assign]
        older = _write_a_row(built)
        slow = threading.Thread(target=checkpointer.sign)
        slow.start()
        assert first_in.wait(5)
        newer = _write_a_row(built)
        fast = threading.Thread(target=checkpointer.sign)
        fast.start()
        fast.join(0.5)  # without one signature at a time, the newer head is stored here
        release.set()
        slow.join(5)
        fast.join(5)

        stored = built.tamper_evidence.store.in_database()
        assert {older, newer} <= {c.position for c in stored}
        assert [c.signed_at_us for c in stored] == sorted(c.signed_at_us for c in stored)
    finally:
        built.close()
