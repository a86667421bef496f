"""The "same work unprotected" baseline (issue 15, item 1) is honest and unreachable.

Honest: it really stores the same customer in clear (event and read-model row), so
the ratio measures the cipher, blind indexes and chain, not some shortcut. Unreachable:
an operator cannot switch a real instance's protection off through any setting,
whether in `strongroom.json`, the environment or the overrides (the attack: a
misconfiguration or a hostile config edit that quietly stores customers in clear).
"""

from __future__ import annotations

import json
from dataclasses import fields
from uuid import UUID

import pytest

from application.context import RequestContext, acting_as
from benchmarks.synthetic import Population
from benchmarks.unprotected import unprotected_instance
from infrastructure.composition import ConfigurationError, Settings, build
from infrastructure.crypto.envelope import SubjectMapper
from infrastructure.crypto.kek import LocalKek

SWITCHES = ("unprotected", "protection", "cipher", "encryption", "blind_index", "chain", "plaintext")


@pytest.mark.parametrize("name", SWITCHES)
def test_no_setting_switches_protection_off(tmp_path, monkeypatch, name):
    assert not [f.name for f in fields(Settings) if name in f.name and f.name != "blind_index_bits"]
    with pytest.raises(ConfigurationError, match="unknown setting"):
        Settings.load(tmp_path, overrides={name: True})
    (tmp_path / "strongroom.json").write_text(json.dumps({name: True}))
    with pytest.raises(ConfigurationError, match="unknown setting"):
        Settings.load(tmp_path)
    (tmp_path / "strongroom.json").unlink()
    # The environment is read for known names only: this one changes nothing, and the
    # instance built from these settings still seals every event.
    monkeypatch.setenv(f"STRONGROOM_{name.upper()}", "1")
    settings = Settings.load(tmp_path)
    built = build(settings, kek=LocalKek.create(tmp_path / "kek.key"))
    try:
        assert isinstance(built.app.mapper, SubjectMapper)
    finally:
        built.close()


def test_the_unprotected_baseline_stores_the_same_customer_in_clear(database_url):
    record_fields = Population("cafe0001").fields(7)
    bare = unprotected_instance(database_url, {})
    try:
        with acting_as(RequestContext(actor_id="operator:bench", via="cli")):
            record = bare.app.register_customer(record_fields)
        stored = bare.app.recorder.select_events(UUID(record["id"]))
        assert len(stored) == 1 and record_fields["email"].encode() in bytes(stored[0].state)
        assert bare.directory.get(record["id"])["email"] == record_fields["email"]
        assert bare.directory.counts()["rm_customers"] == 1
        with bare.events_db.transaction(write=False) as cur:
            cur.execute("SELECT email FROM rm_customers WHERE email = ?",
                        (json.dumps(record_fields["email"]).encode(),))
            assert cur.fetchone() is not None  # the plain index's column holds the clear value
    finally:
        bare.close()


def test_bench_prints_the_unprotected_figure_and_the_breakdown_table(tmp_path, monkeypatch):
    import tempfile

    from click.testing import CliRunner

    from cli.main import main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(main, [
        "--instance", str(tmp_path / "instance"), "bench", "--quick", "--store", "sqlite",
        "--customers", "12", "--repeats", "1", "--lookup-rows", "300", "--lookups", "20", "--absent", "5",
    ])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "secured write vs the same work unprotected" in out and "ratio >= 0.7" in out
    assert "write (unprotected): the same register_customer" in out
    assert "sqlite: where a secured write's time goes" in out
    for stage in ("key store commit(s)", "sealing (events)", "blind indexes", "events insert and commit"):
        assert stage in out


def test_every_stage_a_secured_write_pays_is_charged_in_the_breakdown(database_url):
    """The breakdown names functions by name: one renamed or added (the directory's
    `seal_row`, say) would leave its stage at 0 ms and its cost in "other" unnoticed."""
    from benchmarks.scratch import Scratch
    from benchmarks.write_breakdown import measure_breakdown
    from tests.conftest import PG_ADMIN_URL

    store = "sqlite" if database_url.startswith("sqlite") else "postgres"
    scratch = Scratch(store, PG_ADMIN_URL)
    try:
        rows = {row["stage"]: row["ms_per_write"] for row in measure_breakdown(scratch, 5, lambda _message: None)}
    finally:
        scratch.close()
    paid = ["sealing (events)", "read-model sealing", "blind indexes", "read-model rows (SQL)",
            "events insert and commit"]
    if store == "sqlite":
        paid.append("chain hashing (SQLite: Python; PostgreSQL: in the server)")
    assert all(rows[stage] > 0 for stage in paid), rows
