"""`strongroom doctor` (R7.1) and `compliance inventory` (R5.1)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli.main import main
from domain.catalogue import FIELDS


def run(instance, *args):
    return CliRunner().invoke(main, ["--instance", str(instance), *args], catch_exceptions=False)


def test_doctor_passes_a_fresh_development_instance(tmp_path):
    instance = tmp_path / "instance"
    assert run(instance, "init").exit_code == 0
    result = run(instance, "doctor", "--json")
    assert result.exit_code == 0, result.output
    assert all(check["passed"] for check in json.loads(result.output))


@pytest.mark.controls("ASVS-V13")
def test_doctor_refuses_production_with_a_development_kek(tmp_path):
    instance = tmp_path / "instance"
    assert run(instance, "init").exit_code == 0
    config = json.loads((instance / "strongroom.json").read_text())
    (instance / "strongroom.json").write_text(json.dumps({**config, "environment": "production"}))
    result = run(instance, "doctor", "--json")
    assert result.exit_code == 1
    failed = [c["check"] for c in json.loads(result.output) if not c["passed"]]
    assert failed == ["production does not use a development (local file) KEK"]


def test_doctor_lets_production_use_a_local_kek_only_when_allowed_explicitly(tmp_path, monkeypatch):
    """Attack named: a shell user copies kek.key; production must say it accepts that."""
    instance = tmp_path / "instance"
    assert run(instance, "init").exit_code == 0
    config = json.loads((instance / "strongroom.json").read_text())
    (instance / "strongroom.json").write_text(json.dumps({**config, "environment": "production",
                                                          "allow_local_kek": True}))
    result = run(instance, "doctor", "--json")
    assert result.exit_code == 0, result.output
    local = next(c for c in json.loads(result.output) if c["check"].startswith("production does not use"))
    assert local["passed"] and "allow_local_kek" in local["detail"]

    monkeypatch.setenv("STRONGROOM_ALLOW_LOCAL_KEK", "false")  # the environment overrides the file
    assert run(instance, "doctor", "--json").exit_code == 1


def test_doctor_refuses_a_kek_file_others_can_read_and_missing_tls(tmp_path):
    instance = tmp_path / "instance"
    assert run(instance, "init").exit_code == 0
    (instance / "kek.key").chmod(0o644)
    (instance / "tls" / "cert.pem").unlink()
    result = run(instance, "doctor", "--json")
    assert result.exit_code == 1
    failed = {c["check"] for c in json.loads(result.output) if not c["passed"]}
    assert {"KEK file readable by its owner only", "TLS certificate and key present"} <= failed


@pytest.mark.controls("GDPR-5.1.e", "GDPR-30")
def test_inventory_lists_every_catalogued_field_with_its_legal_basis(tmp_path):
    result = run(tmp_path / "none", "compliance", "inventory", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert {r["field"] for r in rows} == {f.name for f in FIELDS}
    national_id = next(r for r in rows if r["field"] == "national_id")
    assert national_id["key"] == "kyc" and national_id["blind_index"] and "AML" in national_id["legal_basis"]


def test_rebuild_to_a_time_reads_it_as_utc_and_refuses_what_is_not_a_time(tmp_path):
    instance = tmp_path / "instance"
    assert run(instance, "init").exit_code == 0
    before_anything = run(instance, "projections", "rebuild", "--to", "2020-01-01T00:00:00")  # naive: UTC
    assert before_anything.exit_code == 0, before_anything.output
    assert "from 0 events (position 0)" in before_anything.output
    assert "position 0" not in run(instance, "projections", "rebuild", "--to", "2999-01-01T00:00:00+02:00").output
    not_a_time = run(instance, "projections", "rebuild", "--to", "yesterday")
    assert not_a_time.exit_code == 2 and "ISO-8601" in not_a_time.output
    both = run(instance, "projections", "rebuild", "--to", "2020-01-01", "--position", "1")
    assert both.exit_code == 2 and "not both" in both.output
