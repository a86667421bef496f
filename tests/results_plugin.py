"""Each test's last result, written where `strongroom compliance evidence` reads it
(issue 14, item 4), and the `controls` markers checked against the catalogue.

After a run, `.test-results.json` in the repository root (gitignored; another file
with STRONGROOM_TEST_RESULTS, none when that is set empty) maps each node id that
ran to passed, failed or skipped. Runs merge: a targeted run updates the tests it
ran and leaves the others' last results as they were, each with its time. A test
that errs in setup or teardown counts as failed: the evidence it gives is no better.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from application.controls import BY_ID

RESULTS_FILE = ".test-results.json"
_outcomes: dict[str, str] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A marker naming a control the catalogue does not hold is a usage error, as an
    unregistered marker is under --strict-markers: a typo would prove nothing."""
    unknown = sorted({f"{item.nodeid}: {control_id!r}" for item in items for mark in item.iter_markers("controls")
                      for control_id in mark.args if control_id not in BY_ID})
    if unknown:
        raise pytest.UsageError("controls markers name controls that application/controls.py does not hold: "
                                + "; ".join(unknown))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped:
        _outcomes.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        _outcomes.setdefault(report.nodeid, "passed")


def results_path(config: pytest.Config) -> Path | None:
    chosen = os.environ.get("STRONGROOM_TEST_RESULTS")
    if chosen is not None:
        return Path(chosen) if chosen else None
    return Path(config.rootpath) / RESULTS_FILE


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = results_path(session.config)
    if path is None or not _outcomes:
        return
    try:
        tests = json.loads(path.read_text(encoding="utf-8")).get("tests", {})
    except (OSError, ValueError):
        tests = {}
    at = datetime.now(UTC).isoformat(timespec="seconds")
    tests.update({node: {"outcome": outcome, "at": at} for node, outcome in _outcomes.items()})
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"tests": dict(sorted(tests.items()))}, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)
