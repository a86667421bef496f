"""`strongroom bench --suite rebuild` (issue 15 item 2): the secured rebuild beside the
same projection over unprotected events, and --jobs 2 beside --jobs 1, on both stores.
Speeds are never asserted (the machine is shared): the figures and baselines are."""

from __future__ import annotations

import json
import tempfile

from click.testing import CliRunner

from cli.main import main
from tests.conftest import PG_ADMIN_URL


def test_bench_rebuild_suite_reports_both_figures_beside_their_baselines(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    instance = tmp_path / "instance"

    result = CliRunner().invoke(main, [
        "--instance", str(instance), "bench", "--quick", "--json", "--store", "both",
        "--suite", "rebuild", "--pg-url", PG_ADMIN_URL, "--customers", "10", "--repeats", "1",
    ])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for store in ("sqlite", "postgres"):
        figures = report["rebuild"][store]
        assert set(figures) == {"rebuild_vs_unprotected", "rebuild_parallel", "rebuild_parallel_cpu", "machine_parallel"}
        for name, figure in figures.items():
            assert figure["value"] > 0 and figure["baseline"] > 0 and figure["ratio"] > 0, name
            assert figure["unit"] in ("events/s", "events/CPU-s", "opens/s") and figure["baseline_is"], name
        assert figures["rebuild_vs_unprotected"]["goal"] == "ratio >= 0.5"
        assert figures["rebuild_parallel"]["goal"] == "ratio >= 1.7"
        assert "800 events" in figures["rebuild_parallel"]["label"]  # 8 x 10 customers of 10 events
        assert "ceiling" in figures["machine_parallel"]["baseline_is"]
    assert not instance.exists()
    assert list(scratch.iterdir()) == []
