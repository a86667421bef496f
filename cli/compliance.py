"""`strongroom compliance`: the record of processing activities (R5.1, GDPR Art. 30),
the evidence matrix of the controls the product claims, the software bill of
materials and the vulnerability check (issue 14, items 4 and 5; PCI DSS 6.3.2, 6.3.3)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cli.context import EXIT_CHECK_FAILED
from domain.catalogue import FIELDS


@click.group("compliance")
def compliance_group() -> None:
    """Privacy and compliance records."""


@compliance_group.command("inventory")
@click.option("--json", "as_json", is_flag=True)
def inventory_command(as_json: bool) -> None:
    """The record of processing activities (GDPR Art. 30) from the field catalogue."""
    rows = [
        {"field": f.name, "classification": str(f.classification), "purpose": f.purpose,
         "legal_basis": f.legal_basis, "retention": f.retention, "key": str(f.key),
         "blind_index": f.searchable}
        for f in FIELDS
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Record of processing activities (GDPR Art. 30)")
    for column in ("field", "classification", "purpose", "legal basis", "retention", "key"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["field"], row["classification"], row["purpose"], row["legal_basis"],
                      row["retention"], row["key"])
    Console(width=200).print(table)


@compliance_group.command("evidence")
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md", show_default=True)
@click.option("--tests", "tests_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("tests"),
              show_default=True, help="The test folder whose `controls` markers name the controls.")
@click.option("--results", "results_file", type=click.Path(dir_okay=False, path_type=Path),
              default=Path(".test-results.json"), show_default=True,
              help="Each test's last result, written by the test suite (tests/results_plugin.py).")
@click.option("--no-results", is_flag=True, help="Leave results out (docs/compliance-matrix.md is made so).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of standard output.")
@click.option("--check", is_flag=True, help="Exit 1 when a control claimed as covered has no test, or a "
              "marker names no known control.")
@click.option("--require-passed", is_flag=True, help="Exit 1 unless every test of every covered control passed "
              "in the last run.")
def evidence_command(fmt: str, tests_dir: Path, results_file: Path, no_results: bool, out: Path | None,
                     check: bool, require_passed: bool) -> None:
    """Each control claimed (PCI DSS, GDPR, CCPA, OWASP ASVS) with its requirement, code and tests."""
    from infrastructure import compliance_matrix as matrix

    if not tests_dir.is_dir():
        raise click.UsageError(f"no test folder at {tests_dir}: run from the repository or give --tests")
    marked = matrix.scan_tests(tests_dir.resolve().parent, tests_dir.resolve())
    results = None if no_results else (matrix.load_results(results_file) or {})
    rows = matrix.build(marked, results)
    found = matrix.problems(marked)
    if fmt == "json":
        text = json.dumps({"controls": rows, "problems": found,
                           "results": None if no_results else str(results_file)}, indent=2) + "\n"
    else:
        text = matrix.markdown(rows, with_results=not no_results)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
    failed = list(found) if check else []
    if require_passed:
        failed += [f"not proven by the last run: {line}" for line in matrix.unproven(rows)]
    for line in failed:
        click.echo(line, err=True)
    if failed:
        sys.exit(EXIT_CHECK_FAILED)


@compliance_group.command("sbom")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of standard output.")
def sbom_command(out: Path | None) -> None:
    """A CycloneDX bill of materials (JSON) of the product and every installed package (PCI DSS 6.3.2)."""
    from infrastructure.software_inventory import sbom, write_sbom

    if out is None:
        click.echo(json.dumps(sbom(), indent=2, sort_keys=True))
        return
    count = write_sbom(out)
    click.echo(f"wrote {out}: {count} components", err=True)


EXIT_NOT_CHECKED = 3


@compliance_group.command("vulnerabilities")
@click.option("--pip-audit", "pip_audit", help="The pip-audit to run (default: STRONGROOM_PIP_AUDIT, "
              ".venv-tools/pip-audit, or PATH).")
@click.option("--service", type=click.Choice(["pypi", "osv"]), default="pypi", show_default=True,
              help="The advisory source pip-audit asks.")
@click.option("--osv-url", help="Another OSV API (a mirror) for --service osv.")
@click.option("--timeout", type=click.IntRange(1, 300), default=15, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def vulnerabilities_command(pip_audit: str | None, service: str, osv_url: str | None, timeout: int,
                            as_json: bool) -> None:
    """Known vulnerabilities in the installed packages (PCI DSS 6.3.3). Exit 0: every
    package checked, none known; 1: vulnerabilities found; 3: NOT CHECKED (no advisory
    source reachable, pip-audit missing, or a package not looked up) - never a silent pass."""
    from infrastructure.vulnerability_check import CHECKED, audit, find_pip_audit

    report = audit(find_pip_audit(pip_audit), service=service, osv_url=osv_url, timeout=timeout)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        for vuln in report.vulnerable:
            fixed = ", ".join(vuln["fix_versions"]) or "no fixed release yet"
            click.echo(f"VULNERABLE  {vuln['package']} {vuln['version']}: {vuln['id']} (fixed in {fixed})")
        if report.status == CHECKED:
            click.echo(f"checked: {report.audited} packages against {service}; "
                       f"{len(report.vulnerable)} known vulnerabilities")
        else:
            click.echo(f"NOT CHECKED against {service}: {report.reason}")
            for line in report.unaudited[:10]:
                click.echo(f"  {line}")
            if len(report.unaudited) > 10:
                click.echo(f"  ... and {len(report.unaudited) - 10} more")
    if report.vulnerable:
        sys.exit(EXIT_CHECK_FAILED)
    if report.status != CHECKED:
        sys.exit(EXIT_NOT_CHECKED)
