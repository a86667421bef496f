"""Every read leaves a record, whoever reads (issue 11, item 5; R3.2, R2.10).

An operator reads customers at the command line (`customers show`, `customers find`);
an auditor then replays that customer with `audit replay --customer` and finds who read,
from which host, why, and which fields. Without a stated `--purpose` nothing personal
is printed and the command stops with exit 2. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from tests.application.conftest import customer_fields

OPERATOR = f"operator:{getpass.getuser()}@{socket.gethostname()}"
EMAIL = "ada.reads@example.org"


def run(instance: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--instance", str(instance), *args], catch_exceptions=False)


@pytest.fixture
def instance(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`strongroom init`, then one customer imported through the command line."""
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", database_url)
    monkeypatch.setenv("STRONGROOM_CHECKPOINT_SECONDS", "3600")
    folder = tmp_path / "instance"
    assert run(folder, "init", "--json").exit_code == 0
    lines = tmp_path / "customers.jsonl"
    lines.write_text(json.dumps(customer_fields(email=EMAIL, full_name="Ada Readsperson")) + "\n")
    assert run(folder, "customers", "import", str(lines), "--json").exit_code == 0
    yield folder


def _only_id(instance: Path) -> str:
    changes = run(instance, "audit", "replay", "--kind", "change", "--format", "jsonl").output
    (customer_id,) = {e["stream_id"] for e in map(json.loads, changes.splitlines())
                      if e["event"] == "Customer.Registered"}
    return str(customer_id)


def _operator_reads(instance: Path, customer: str | None = None) -> list[dict]:
    """The operator's customer reads in the trail (not their replays of it), as JSON lines."""
    args = ["--customer", customer] if customer else []
    replay = run(instance, "audit", "replay", "--kind", "access", "--format", "jsonl", *args)
    assert replay.exit_code == 0, replay.output
    return [e for e in map(json.loads, replay.output.splitlines())
            if e["actor_id"] == OPERATOR and e["event"] != "audit_read"]


@pytest.mark.controls("PCI-DSS-8.6.1")
def test_show_and_find_are_recorded_with_the_operator_the_purpose_and_the_fields(instance: Path) -> None:
    customer_id = _only_id(instance)
    found = run(instance, "customers", "find", "--email", EMAIL, "--purpose", "KYC review 2026-118")
    assert found.exit_code == 0, found.output
    assert found.output.split() == [customer_id]
    shown = run(instance, "customers", "show", customer_id, "--purpose", "customer complaint 88")
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.output)
    assert record["email"] == EMAIL and record["full_name"] == "Ada Readsperson"  # the operator sees values

    search, reveal = _operator_reads(instance, customer_id)
    assert search["event"] == "search" and search["outcome"] == "allowed" and search["via"] == "cli"
    assert search["purpose"] == "KYC review 2026-118" and search["customer_ids"] == [customer_id]
    assert search["details"]["by"] == "email" and search["details"]["count"] == "1"
    assert reveal["event"] == "reveal" and reveal["outcome"] == "allowed" and reveal["via"] == "cli"
    assert reveal["purpose"] == "customer complaint 88" and reveal["customer_ids"] == [customer_id]
    assert reveal["fields"] == sorted(record)  # exactly the fields printed
    assert {"email", "full_name", "national_id", "bank_accounts"} <= set(reveal["fields"])
    # The record names fields, never their values.
    assert EMAIL not in json.dumps([search, reveal]) and "Readsperson" not in json.dumps([search, reveal])


def test_a_search_that_matches_nothing_still_leaves_a_record(instance: Path) -> None:
    found = run(instance, "customers", "find", "--national-id", "AB 123456 C", "--purpose", "fraud check 5")
    assert found.exit_code == 0 and found.output == ""
    (search,) = _operator_reads(instance)
    assert search["event"] == "search" and search["customer_ids"] == [] and search["fields"] == []
    assert search["purpose"] == "fraud check 5" and search["details"]["count"] == "0"


def test_an_absent_id_is_recorded_as_not_found(instance: Path) -> None:
    absent = "00000000-0000-4000-8000-000000000000"
    shown = run(instance, "customers", "show", absent, "--purpose", "ticket 9")
    assert shown.exit_code == 1
    (denied,) = _operator_reads(instance)
    assert denied["event"] == "denied" and denied["outcome"] == "not_found" and denied["customer_ids"] == [absent]


@pytest.mark.parametrize("command", [
    ["customers", "show", "{id}"],
    ["customers", "find", "--email", EMAIL],
])
def test_without_a_purpose_nothing_is_printed_and_nothing_read(instance: Path, command: list[str]) -> None:
    customer_id = _only_id(instance)
    result = run(instance, *[part.format(id=customer_id) for part in command])
    assert result.exit_code == 2 and "--purpose" in result.output
    assert EMAIL not in result.output and customer_id not in result.output
    assert _operator_reads(instance) == []


@pytest.mark.parametrize("purpose, refused", [
    ("", "printable"),
    ("   ", "printable"),
    ("refund\u202eevil", "printable"),  # a bidi override would make the auditor read another reason
    ("line one\nline two", "printable"),  # a second, forged line under the table's entry
    ("card 4111 1111 1111 1111", "card data"),  # PCI DSS 3.4: no PAN in free text
    ("x" * 201, "printable"),
])
def test_a_hostile_purpose_is_refused_before_anything_is_read(instance: Path, purpose: str, refused: str) -> None:
    customer_id = _only_id(instance)
    result = run(instance, "customers", "show", customer_id, "--purpose", purpose)
    assert result.exit_code == 2 and refused in result.output
    assert EMAIL not in result.output and "4111" not in result.output
    assert _operator_reads(instance) == []


def test_replay_shows_values_only_for_a_stated_purpose(instance: Path) -> None:
    customer_id = _only_id(instance)
    plain = run(instance, "audit", "replay", "--customer", customer_id, "--format", "jsonl")
    assert plain.exit_code == 0 and EMAIL not in plain.output
    assert all("values" not in json.loads(line) for line in plain.output.splitlines())
    refused = run(instance, "audit", "replay", "--customer", customer_id, "--values")
    assert refused.exit_code == 2 and "--purpose" in refused.output and EMAIL not in refused.output
    stated = run(instance, "audit", "replay", "--customer", customer_id, "--format", "jsonl",
                 "--purpose", "regulator request 3")
    assert stated.exit_code == 0 and EMAIL in stated.output
    # Each replay is itself a read of the trail, recorded with the purpose when given.
    reads = run(instance, "audit", "replay", "--actor", OPERATOR, "--kind", "access", "--format", "jsonl").output
    replays = [e for e in map(json.loads, reads.splitlines()) if e["event"] == "audit_read"]
    assert any(e["purpose"] == "regulator request 3" and e["details"]["values"] == "true"
               and e["customer_ids"] == [customer_id] for e in replays)


@pytest.mark.controls("PCI-DSS-10.2.1.3")
def test_an_export_is_recorded_as_a_read_of_the_trail(instance: Path, tmp_path: Path) -> None:
    exported = run(instance, "audit", "export", "--out", str(tmp_path / "bundle"), "--json")
    assert exported.exit_code == 0, exported.output
    reads = run(instance, "audit", "replay", "--actor", OPERATOR, "--kind", "access", "--format", "jsonl").output
    (export,) = [e for e in map(json.loads, reads.splitlines()) if e["details"].get("operation") == "audit:export"]
    assert export["event"] == "audit_read" and export["via"] == "cli" and export["purpose"] == "audit export"
    assert export["details"]["rows"] == str(json.loads(exported.output)["window_rows"])
