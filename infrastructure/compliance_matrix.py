"""The compliance evidence matrix (issue 14, item 4): control -> SPEC requirement ->
code -> the tests that prove it, with each test's last result.

Which test proves which control is read from the tests themselves: the
`@pytest.mark.controls(...)` decorators (or a module's `pytestmark`), found by
reading the test files' syntax trees, so building the matrix runs no test and
imports none. Results come from the file the test suite's results plugin writes
(tests/results_plugin.py: node id -> passed | failed | skipped); a test with no
result there is "not run", never assumed to pass.
"""

from __future__ import annotations

import ast
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from application.controls import CONTROLS, Control, Coverage

MARKER = "controls"
NOT_RUN = "not run"


def _marker_ids(node: ast.expr) -> list[str] | None:
    """The ids of a `pytest.mark.controls("A", "B")` expression, or None if it is not one."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == MARKER):
        return None
    owner = node.func.value
    if not (isinstance(owner, ast.Attribute) and owner.attr == "mark"):
        return None
    return [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]


def _module_marks(tree: ast.Module) -> list[str]:
    ids: list[str] = []
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "pytestmark" for target in statement.targets
        ):
            values = statement.value.elts if isinstance(statement.value, (ast.List, ast.Tuple)) else [statement.value]
            for value in values:
                ids += _marker_ids(value) or []
    return ids


def _decorated(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> list[str]:
    ids: list[str] = []
    for decorator in node.decorator_list:
        ids += _marker_ids(decorator) or []
    return ids


def scan_tests(root: Path, tests: Path) -> dict[str, list[str]]:
    """test id (`tests/x/test_y.py::test_z`, relative to `root`) -> the control ids it names."""
    found: dict[str, list[str]] = {}
    for path in sorted(tests.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module = path.relative_to(root).as_posix()
        everywhere = _module_marks(tree)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                ids = everywhere + _decorated(node)
                if ids:
                    found[f"{module}::{node.name}"] = ids
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                on_class = everywhere + _decorated(node)
                for member in node.body:
                    if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and member.name.startswith("test_"):
                        ids = on_class + _decorated(member)
                        if ids:
                            found[f"{module}::{node.name}::{member.name}"] = ids
    return found


def tests_by_control(marked: Mapping[str, list[str]]) -> dict[str, list[str]]:
    by_control: dict[str, list[str]] = defaultdict(list)
    for test, ids in marked.items():
        for control_id in dict.fromkeys(ids):
            by_control[control_id].append(test)
    return {control_id: sorted(tests) for control_id, tests in by_control.items()}


def problems(marked: Mapping[str, list[str]], controls: Iterable[Control] = CONTROLS) -> list[str]:
    """What makes the matrix a false claim: a covered control no test proves, a marker
    naming no known control, a control said to be uncovered that tests claim to prove."""
    catalogue = {control.id: control for control in controls}
    by_control = tests_by_control(marked)
    found = []
    for control in catalogue.values():
        tests = by_control.get(control.id, [])
        if control.status is Coverage.COVERED and not tests:
            found.append(f"{control.id} is claimed as covered but no test is marked with it")
        if control.status is not Coverage.COVERED and tests:
            found.append(f"{control.id} is listed as {control.status} but {len(tests)} test(s) are marked "
                         "with it: say it is covered, or take the marker off")
    for test, ids in sorted(marked.items()):
        for control_id in ids:
            if control_id not in catalogue:
                found.append(f"{test} names {control_id!r}, which is not in the control catalogue")
    return found


def load_results(path: Path) -> dict[str, str] | None:
    """node id -> outcome from the results file, or None when there is none."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return {node: entry["outcome"] for node, entry in data.get("tests", {}).items()}


def result_of(test: str, results: Mapping[str, str]) -> str:
    """A test's last result, over all its parametrised cases: failed if any failed,
    passed if every one that ran passed, skipped if all were skipped, else not run."""
    outcomes = [outcome for node, outcome in results.items() if node == test or node.startswith(test + "[")]
    if not outcomes:
        return NOT_RUN
    if "failed" in outcomes:
        return "failed"
    if "passed" in outcomes:
        return "passed"
    return "skipped"


def build(marked: Mapping[str, list[str]], results: Mapping[str, str] | None,
          controls: Iterable[Control] = CONTROLS) -> list[dict[str, Any]]:
    """One row per control, in catalogue order."""
    by_control = tests_by_control(marked)
    rows = []
    for control in controls:
        tests = [{"test": test, **({} if results is None else {"result": result_of(test, results)})}
                 for test in by_control.get(control.id, [])]
        rows.append({
            "id": control.id, "framework": str(control.framework), "title": control.title,
            "status": str(control.status), "requirements": list(control.requirements),
            "code": list(control.code), "note": control.note, "tests": tests,
        })
    return rows


def unproven(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Covered controls whose tests did not all pass in the last run (failed or not run)."""
    return [f"{row['id']}: {test['test']} {test['result']}" for row in rows if row["status"] == str(Coverage.COVERED)
            for test in row["tests"] if test.get("result") != "passed"]


def markdown(rows: list[dict[str, Any]], with_results: bool) -> str:
    lines = [
        "# Compliance evidence matrix",
        "",
        "Generated by `strongroom compliance evidence --format md --no-results` from the control",
        "catalogue (`application/controls.py`) and the tests' `@pytest.mark.controls(...)` markers;",
        "do not edit by hand. Run `strongroom compliance evidence` after the test suite to see each",
        "test's last result. Status: *covered* (the tests listed fail without it), *not yet covered*",
        "(being built, no test claimed), *outside the product* (the host's or the business's part).",
        "",
    ]
    for framework in dict.fromkeys(row["framework"] for row in rows):
        lines += [f"## {framework}", "", "| control | title | status | requirements | code | tests |",
                  "|---|---|---|---|---|---|"]
        for row in (r for r in rows if r["framework"] == framework):
            tests = "<br>".join(
                f"`{t['test']}`" + (f" **{t['result']}**" if with_results else "") for t in row["tests"]
            ) or "—"
            status = row["status"] + (f": {row['note']}" if row["note"] else "")
            code = ", ".join(f"`{module}`" for module in row["code"]) or "—"
            lines.append(f"| {row['id']} | {row['title']} | {status} | {', '.join(row['requirements']) or '—'} "
                         f"| {code} | {tests} |")
        lines.append("")
    counts = {status: sum(1 for row in rows if row["status"] == str(status)) for status in Coverage}
    lines.append("Totals: " + ", ".join(f"{count} {status}" for status, count in counts.items()) + ".")
    return "\n".join(lines) + "\n"
