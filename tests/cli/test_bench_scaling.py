"""`strongroom bench --suite scaling` (issue 15, items 7 and 8): the chain's ceiling at
1 to 16 clients and email lookup at `--customers` rows, each beside its baseline, on
PostgreSQL; and the COPY fill behind the lookup writes rows the product can read,
under keys the product holds (not a table of look-alikes)."""

from __future__ import annotations

import json
import tempfile

from click.testing import CliRunner

from application.errors import SubjectErased
from benchmarks.scaling import CLIENTS, copy_fill
from benchmarks.scratch import Scratch
from benchmarks.synthetic import Population
from cli.main import main
from tests.conftest import PG_ADMIN_URL


def test_scaling_suite_prints_writes_per_concurrency_and_lookup_at_n_beside_baselines(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    instance = tmp_path / "instance"

    result = CliRunner().invoke(main, [
        "--instance", str(instance), "bench", "--quick", "--json", "--suite", "scaling", "--store", "postgres",
        "--pg-url", PG_ADMIN_URL, "--customers", "2000", "--repeats", "1", "--chain-writes", "32",
        "--lookups", "50",
    ])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    figures = report["scaling"]
    expected = {*(f"chain_{c}" for c in CLIENTS), *(f"chain_lock_only_{c}" for c in CLIENTS),
                "lookup_at_n_median", "lookup_at_n_p99"}
    assert set(figures) == expected
    for name, figure in figures.items():
        assert figure["value"] > 0 and figure["baseline"] > 0 and figure["ratio"] > 0, name
    assert figures["chain_16"]["unit"] == "writes/s" and "16 clients" in figures["chain_16"]["label"]
    assert "no chain" in figures["chain_1"]["baseline_is"]
    p99 = figures["lookup_at_n_p99"]
    assert "2,000 customers" in p99["label"] and p99["unit"] == "ms" and p99["goal"] == "< 5 ms"
    assert "customer_id = ?" in p99["baseline_is"]  # the primary-key lookup beside it
    setup = report["setup"]["scaling"]
    assert setup["customers"] == 2000 and setup["fill_seconds"] > 0
    assert setup["data_keys"]["active_profile"] == 2000  # each customer's own key, in the key store
    assert report["sizes"]["scaling"] == {"customers": 2000, "writes": 32}
    assert not instance.exists()
    assert list(scratch.iterdir()) == []


def test_copy_filled_customers_are_found_and_shredded_through_the_product_like_projected_ones(tmp_path,
                                                                                               monkeypatch):
    """The fill must not flatter the lookup with rows the product could not have
    written: each one opens under its own data key from the key store (cold cache),
    is found by every blind-indexed field, and is gone once its keys are destroyed."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    scratch = Scratch("postgres", PG_ADMIN_URL)
    try:
        built = scratch.components(blind_index_bits=8, bulk_load=True)
        population = Population()
        ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(1, 41)]
        copy_fill(built, population, ids, progress=lambda _: None)

        built.keyring.forget_cached()  # keys come from the store, not from the fill's memory
        assert built.keyring.counts()["active_profile"] == len(ids)
        for n in (0, 17, 39):
            for field, value in (("email", population.email(n)), ("phone", population.phone(n)),
                                 ("national_id", population.national_id(n)), ("pan", population.pan(n))):
                found = built.app.find_customers(field, value)
                assert [record["id"] for record in found] == [ids[n]], field
            record = found[0]
            assert (record["full_name"], record["email"]) == (f"Bench Customer {n}", population.email(n))
            assert record["cards"][0]["last4"] == population.pan(n)[-4:]

        built.keyring.destroy(ids[17], ["profile", "kyc"])
        built.keyring.forget_cached()
        assert built.app.find_customers("email", population.email(17)) == []
        try:
            built.directory.get(ids[17])
        except SubjectErased:
            pass
        else:
            raise AssertionError("a shredded customer's bulk-filled row still opened")
    finally:
        assert scratch.close() == []
