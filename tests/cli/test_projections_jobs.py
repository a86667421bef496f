"""`strongroom projections rebuild --jobs P` (issue 15): the operator's parallel rebuild,
through the real command line, on the embedded store."""

from __future__ import annotations

from click.testing import CliRunner

from cli.main import main
from tests.cli.test_backup_cli import _ids, customer_line


def run(instance, *args):
    return CliRunner().invoke(main, ["--instance", str(instance), *args])


def test_rebuild_with_two_jobs_projects_every_customer_and_refuses_zero_jobs(tmp_path):
    instance = tmp_path / "instance"
    assert run(instance, "init").exit_code == 0
    lines = tmp_path / "customers.jsonl"
    lines.write_text("\n".join(customer_line(n) for n in range(6)) + "\n")
    assert run(instance, "customers", "import", str(lines), "--portfolio", "retail").exit_code == 0
    one = run(instance, "projections", "rebuild", "--jobs", "1")
    assert one.exit_code == 0, one.output
    two = run(instance, "projections", "rebuild", "--jobs", "2")
    assert two.exit_code == 0, two.output
    assert two.output == one.output  # same events, same position
    assert len(_ids(instance)) == 6  # listed from the rebuilt read model
    refused = run(instance, "projections", "rebuild", "--jobs", "0")
    assert refused.exit_code == 2 and "--jobs" in refused.output
