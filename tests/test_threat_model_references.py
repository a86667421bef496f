"""Every test docs/threat-model.md names exists (issue 10: "put the attack list with
the test that stops each in docs/threat-model.md"): a renamed or deleted test would
otherwise leave the document claiming a proof that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]]*\])?`")


def test_every_test_the_threat_model_names_exists() -> None:
    document = (ROOT / "docs" / "threat-model.md").read_text()
    references = REFERENCE.findall(document)
    assert len(references) >= 40, "the threat model names fewer tests than it should"
    missing = []
    for path, name in references:
        file = ROOT / path
        if not file.is_file() or not re.search(rf"^\s*(async\s+)?def {name}\(", file.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert missing == []
