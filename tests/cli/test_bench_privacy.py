"""`strongroom bench --suite privacy`: both privacy figures (issue 13), each beside its
baseline, on both stores, from one run of the command.

* `access_export`: one data-subject access export (1,000 events, 10,000 access
  records) beside reading the same rows raw (R5.3);
* `retention_run`: the due customers erased per second by `retention run` beside
  destroying the same keys directly (R5.5). A tiny population here: this checks that
  the run erases exactly the due customers (1 in 10) and is timed against its
  baseline, not how fast.

Both used to be registered apart in benchmarks/runner.py, and the second overwrote
the first's figures: this test fails if either figure is missing on either store.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli.main import main
from tests.conftest import PG_ADMIN_URL


def test_the_privacy_suite_reports_the_export_and_the_retention_run_on_both_stores(tmp_path) -> None:
    result = CliRunner().invoke(main, [
        "--instance", str(tmp_path / "instance"), "bench", "--suite", "privacy", "--json", "--store", "both",
        "--pg-url", PG_ADMIN_URL, "--repeats", "1", "--retention-customers", "60",
    ])
    assert result.exit_code == 0, result.output
    suite = json.loads(result.stdout)["privacy"]
    assert set(suite) == {"sqlite", "postgres"}
    for store, figures in suite.items():
        assert set(figures) == {"access_export", "retention_run"}, store
        export = figures["access_export"]
        assert "1,000 events, 10,000 access records" in export["label"]
        assert export["unit"] == "s" and export["value"] > export["baseline"] > 0
        assert export["ratio"] == export["baseline"] / export["value"]
        retention = figures["retention_run"]
        assert retention["label"] == "retention run: due customers erased (6 of 60)"
        assert retention["unit"] == "customers/s" and retention["value"] > 0 and retention["baseline"] > 0
        assert retention["ratio"] == retention["value"] / retention["baseline"]
        assert retention["goal"]
    assert "postgres: retention run over 60 customers, 1 in 10 due" in result.stderr
    assert not (tmp_path / "instance").exists()  # never the operator's instance
