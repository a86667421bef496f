"""The command line's writes state why, and the bundle carries it (issue 11, item 7).

An operator imports customers with `--purpose`; the evidence bundle's rows for the
registrations carry that purpose and the names of the fields set (never values),
and verify with both verifiers. A purpose that would smuggle a card number or a
bidi override into the never-destroyed system part is refused before anything is
written; a new line is folded into one line, as for every one-line text, so it
cannot forge a second entry in a replay. Both stores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.application.conftest import customer_fields
from tests.cli.test_audit_cli import _verify, instance, run
from tests.cli.test_independent_verifier import independent

__all__ = ["instance"]

PURPOSE = "migration from the legacy CRM, change 2026-77"


def _lines(tmp_path: Path) -> Path:
    lines = tmp_path / "more.jsonl"
    lines.write_text(json.dumps(customer_fields(email="grace.hopper@example.org", full_name="Grace Importedname")) + "\n")
    return lines


def test_an_import_with_a_purpose_carries_it_into_the_bundle_rows(instance: Path, tmp_path: Path) -> None:
    result = run(instance, "customers", "import", str(_lines(tmp_path)), "--purpose", PURPOSE, "--json")
    assert result.exit_code == 0, result.output
    (created,) = [line["id"] for line in json.loads(result.output)["lines"]]
    bundle = tmp_path / "evidence"
    assert run(instance, "audit", "export", "--out", str(bundle)).exit_code == 0
    rows = [json.loads(line) for line in (bundle / "rows.jsonl").read_text().splitlines()]
    registered = next(r for r in rows if r["stream_id"] == created and r["topic"].endswith(".Registered"))
    assert registered["metadata"]["context"]["purpose"] == f"customer import: {PURPOSE}"
    assert registered["metadata"]["context"]["actor_id"].startswith("operator:")
    assert {"full_name", "email", "national_id"} <= set(registered["metadata"]["fields"])
    text = (bundle / "rows.jsonl").read_text()
    assert "grace.hopper" not in text and "Importedname" not in text
    assert _verify(bundle, instance).exit_code == 0
    assert independent(bundle, "--public-key", str(instance / "audit-signing.pub")).returncode == 0


def test_a_purpose_that_would_forge_a_second_line_is_kept_on_one_line(instance: Path, tmp_path: Path) -> None:
    forged = "refund\n   12  2026-12-05T00:00:00Z  change  operator:admin  Customer.Registered"
    result = run(instance, "customers", "import", str(_lines(tmp_path)), "--purpose", forged, "--json")
    assert result.exit_code == 0, result.output
    (created,) = [line["id"] for line in json.loads(result.output)["lines"]]
    replay = run(instance, "audit", "replay", "--customer", created, "--kind", "change", "--no-values")
    (line,) = [text for text in replay.output.splitlines() if created in text]
    assert "purpose=customer import: refund 12 2026-12-05T00:00:00Z change" in line


@pytest.mark.parametrize("purpose", ["card 4111111111111111", " ", "x" * 201, "bidi \u202e override"])
def test_a_purpose_that_would_keep_card_data_or_mislead_is_refused(
    instance: Path, tmp_path: Path, purpose: str
) -> None:
    before = run(instance, "audit", "replay", "--kind", "change", "--format", "jsonl", "--no-values").output
    result = run(instance, "customers", "import", str(_lines(tmp_path)), "--purpose", purpose)
    assert result.exit_code == 2, result.output
    assert "4111111111111111" not in result.output
    after = run(instance, "audit", "replay", "--kind", "change", "--format", "jsonl", "--no-values").output
    assert len(after.splitlines()) == len(before.splitlines()), "nothing was imported"
