"""The repository stands alone (R7.7): nothing in it reads the specification or any
file outside the repository, at run time or at test time.

A fresh clone must test the same as this checkout, whatever lies beside it. The
attack it stops is a quiet one: a test that passes here only because a file from
outside the repository happens to be on this machine.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A reference to the steering folder or its documents, or a relative path that climbs
# out of the repository.
OUTSIDE = re.compile(r"""\.\./shared|["']shared["']|SPEC\.md|STYLE\.md|["']\.\./\.\.""")
PARENTS = re.compile(r"Path\(__file__\)\.resolve\(\)\.parents\[(\d+)\]")


def _tracked_sources() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py", "scripts/*", ".ci/*"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def test_no_source_names_a_file_outside_the_repository():
    offenders = []
    for path in _tracked_sources():
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_no_source_climbs_above_the_repository_root():
    offenders = []
    for path in _tracked_sources():
        depth = len(path.relative_to(ROOT).parts) - 1  # parents[depth] is the root
        for match in PARENTS.finditer(path.read_text(errors="replace")):
            if int(match.group(1)) > depth:
                offenders.append(f"{path.relative_to(ROOT)}: parents[{match.group(1)}]")
    assert offenders == []
