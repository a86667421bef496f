"""`strongroom bench --suite privacy`: the access-export figure beside its raw-read baseline (issue 13)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli.main import main
from tests.conftest import PG_ADMIN_URL


def test_the_privacy_suite_times_an_access_export_beside_reading_the_same_rows_raw(tmp_path) -> None:
    result = CliRunner().invoke(main, [
        "--instance", str(tmp_path / "instance"), "bench", "--suite", "privacy", "--json", "--store", "sqlite",
        "--pg-url", PG_ADMIN_URL, "--repeats", "1",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["privacy"]["sqlite"]
    figure = report["access_export"]
    assert "1,000 events, 10,000 access records" in figure["label"]
    assert figure["unit"] == "s" and figure["value"] > figure["baseline"] > 0
    assert figure["ratio"] == figure["baseline"] / figure["value"]
    assert not (tmp_path / "instance").exists()  # never the operator's instance
