"""The compliance evidence matrix (issue 14, item 4) is honest and in step.

A control claimed as covered with no test proving it fails here, in every CI run;
so does a marker naming a control the catalogue does not hold, a control listed as
not covered that tests claim to prove, a module the catalogue names that is not
there, and a committed docs/compliance-matrix.md that the catalogue and markers
would no longer produce. The matrix's results are a real run's, through the real
results plugin in a pytest process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess  # nosec B404 - runs pytest itself, with fixed arguments
import sys
from pathlib import Path

from click.testing import CliRunner

from application.controls import BY_ID, CONTROLS, Control, Coverage, Framework
from cli.main import main
from infrastructure import compliance_matrix as matrix

ROOT = Path(__file__).resolve().parents[1]


def test_every_control_claimed_as_covered_is_proved_by_a_test() -> None:
    marked = matrix.scan_tests(ROOT, ROOT / "tests")
    assert matrix.problems(marked) == []
    covered = [c for c in CONTROLS if c.status is Coverage.COVERED]
    by_control = matrix.tests_by_control(marked)
    assert len(covered) >= 40 and all(by_control.get(c.id) for c in covered)
    # What the product does not do is listed, not claimed: nothing disables a dormant
    # account, no request limits the use of sensitive data, no test proves the "sold or
    # shared" answer.
    for control_id in ("PCI-DSS-8.2.6", "CCPA-1798.115", "CCPA-1798.121"):
        assert BY_ID[control_id].status is Coverage.NOT_YET and control_id not in by_control
    # Built since: training, recertification, monitoring and the data-subject rights.
    for control_id in ("PCI-DSS-12.6.1", "PCI-DSS-12.6.3", "PCI-DSS-7.2.4", "PCI-DSS-10.4.1.1", "GDPR-15",
                       "GDPR-16", "GDPR-18", "GDPR-20", "GDPR-21", "CCPA-1798.100", "CCPA-1798.130"):
        assert BY_ID[control_id].status is Coverage.COVERED and by_control[control_id]


def test_the_check_fails_for_a_claim_without_a_test_and_for_a_marker_without_a_control() -> None:
    claimed = Control("PCI-DSS-99.1", Framework.PCI_DSS, "a claim", ("R1.1",), ("domain/values.py",))
    pending = Control("GDPR-99", Framework.GDPR, "pending", ("R5.3",), (), Coverage.NOT_YET)
    marked = {"tests/x/test_a.py::test_a": ["GDPR-99"], "tests/x/test_b.py::test_b": ["PCI-DSS-3.4.2"]}
    found = matrix.problems(marked, [claimed, pending])
    assert any(p.startswith("PCI-DSS-99.1 is claimed as covered but no test") for p in found)
    assert any(p.startswith("GDPR-99 is listed as not yet covered but 1 test(s)") for p in found)
    assert any("'PCI-DSS-3.4.2', which is not in the control catalogue" in p for p in found)
    assert len(found) == 3


def test_the_command_line_check_exits_1_when_a_covered_control_lost_its_tests(tmp_path: Path) -> None:
    """The CI step: a test folder where the 8.3.4 lockout tests lost their markers
    (or were deleted) makes `compliance evidence --check` fail, naming the control."""
    tests = tmp_path / "tests"
    for source in (ROOT / "tests").rglob("test_*.py"):
        target = tests / source.relative_to(ROOT / "tests")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text().replace('"PCI-DSS-8.3.4"', '"ASVS-V6"'))
    result = CliRunner().invoke(main, ["compliance", "evidence", "--check", "--no-results", "--tests", str(tests)])
    assert result.exit_code == 1
    assert "PCI-DSS-8.3.4 is claimed as covered but no test is marked with it" in result.output
    intact = CliRunner().invoke(main, ["compliance", "evidence", "--check", "--no-results",
                                       "--tests", str(ROOT / "tests")])
    assert intact.exit_code == 0, intact.output


def test_the_markers_read_from_the_source_are_the_ones_pytest_collects() -> None:
    marked = matrix.scan_tests(ROOT, ROOT / "tests")
    collected = subprocess.run(  # nosec B603 - our interpreter, pytest, fixed arguments
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", "controls", "tests"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "STRONGROOM_TEST_RESULTS": ""},
    )
    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    nodes = {line.split("[")[0] for line in collected.stdout.splitlines() if "::" in line}
    assert nodes == set(marked)


def test_every_module_the_catalogue_names_exists() -> None:
    missing = [f"{c.id}: {module}" for c in CONTROLS for module in c.code if not (ROOT / module).is_file()]
    assert missing == []
    assert all(c.requirements or c.status is Coverage.OUTSIDE for c in CONTROLS)
    # A covered control names where it is built; one not built yet names nothing.
    assert all(bool(c.code) == (c.status is Coverage.COVERED) for c in CONTROLS if c.status is not Coverage.OUTSIDE)


def test_the_committed_matrix_is_the_one_the_catalogue_and_markers_make() -> None:
    result = CliRunner().invoke(main, ["compliance", "evidence", "--format", "md", "--no-results",
                                       "--tests", str(ROOT / "tests")])
    assert result.exit_code == 0, result.output
    committed = (ROOT / "docs" / "compliance-matrix.md").read_text()
    assert committed == result.output, (
        "docs/compliance-matrix.md is out of step: run `strongroom compliance evidence --no-results "
        "--out docs/compliance-matrix.md`")


DEMO = '''
import pytest


@pytest.mark.controls("GDPR-30")
def test_passes():
    assert True


@pytest.mark.controls("GDPR-32")
def test_fails():
    assert False


@pytest.mark.controls("GDPR-17")
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_one_case_fails(store):
    assert store == "sqlite"


@pytest.mark.controls("GDPR-25")
def test_not_selected():
    assert True
'''


def _pytest(folder: Path, results: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # nosec B603 - our interpreter, pytest, fixed arguments
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.results_plugin", *args],
        cwd=folder, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), "STRONGROOM_TEST_RESULTS": str(results)},
    )


def _rows(tests: Path, results: Path, *extra: str) -> dict[str, list[dict[str, str]]]:
    result = CliRunner().invoke(main, ["compliance", "evidence", "--format", "json", "--tests", str(tests),
                                       "--results", str(results), *extra])
    return {row["id"]: row["tests"] for row in json.loads(result.output)["controls"]}


def test_a_run_writes_each_tests_last_result_and_the_matrix_shows_it(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_demo.py").write_text(DEMO)
    results = tmp_path / "results.json"
    before = _rows(tmp_path / "tests", results)
    assert before["GDPR-30"] == [{"test": "tests/test_demo.py::test_passes", "result": "not run"}]

    ran = _pytest(tmp_path, results, "tests", "-k", "not test_not_selected")
    assert ran.returncode == 1, ran.stdout
    rows = _rows(tmp_path / "tests", results)
    assert rows["GDPR-30"][0]["result"] == "passed"
    assert rows["GDPR-32"][0]["result"] == "failed"
    assert rows["GDPR-17"][0]["result"] == "failed"  # one case of two failed
    assert rows["GDPR-25"][0]["result"] == "not run"

    # A later targeted run updates what it ran and keeps the rest.
    assert _pytest(tmp_path, results, "tests", "-k", "test_not_selected").returncode == 0
    rows = _rows(tmp_path / "tests", results)
    assert rows["GDPR-25"][0]["result"] == "passed" and rows["GDPR-32"][0]["result"] == "failed"
    unproven = CliRunner().invoke(main, ["compliance", "evidence", "--tests", str(tmp_path / "tests"),
                                         "--results", str(results), "--require-passed"])
    assert unproven.exit_code == 1
    assert "GDPR-32: tests/test_demo.py::test_fails failed" in unproven.output
    assert "`tests/test_demo.py::test_passes` **passed**" in unproven.output


def test_a_marker_naming_an_unknown_control_stops_the_run(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_typo.py").write_text(
        'import pytest\n\n\n@pytest.mark.controls("PCI-DSS-3.5.9")\ndef test_x():\n    assert True\n')
    results = tmp_path / "results.json"
    ran = _pytest(tmp_path, results, "tests")
    assert ran.returncode == 4, ran.stdout + ran.stderr  # pytest's usage error
    assert "PCI-DSS-3.5.9" in ran.stderr and not results.exists()
