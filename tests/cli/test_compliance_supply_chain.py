"""Keeping patched (issue 14, item 5; PCI DSS 6.3.2, 6.3.3; R7.5): the bill of
materials, the pins `doctor` compares, and a vulnerability check that never passes
in silence.

The advisory source in these tests is a real HTTP server on loopback speaking the
OSV query API, and pip-audit is the real program from .venv-tools/pip-audit.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from packaging.utils import canonicalize_name

from cli.main import main
from tests.cli.test_audit_cli import _resign, _verify, instance, run
from tests.cli.test_independent_verifier import independent

__all__ = ["instance"]

ROOT = Path(__file__).resolve().parents[2]
PIP_AUDIT = ROOT / ".venv-tools" / "pip-audit" / "bin" / "pip-audit"


def _installed() -> set[tuple[str, str]]:
    """(canonical name, version) of every distribution, the first on sys.path winning."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        found.setdefault(canonicalize_name(dist.metadata["Name"]), dist.version)
    return set(found.items())


def _listed(bom: dict[str, Any]) -> set[tuple[str, str]]:
    subject = bom["metadata"]["component"]
    return {(canonicalize_name(c["name"]), c["version"]) for c in [subject, *bom["components"]]}


@pytest.mark.controls("PCI-DSS-6.3.2", "ASVS-V15")
def test_the_sbom_lists_every_installed_package_with_its_version(tmp_path: Path) -> None:
    out = tmp_path / "sbom.cdx.json"
    result = CliRunner().invoke(main, ["compliance", "sbom", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    bom = json.loads(out.read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    assert bom["metadata"]["component"]["name"] == "strongroom"
    assert _listed(bom) == _installed()
    flask = next(c for c in bom["components"] if canonicalize_name(c["name"]) == "flask")
    assert flask["purl"] == f"pkg:pypi/flask@{metadata.version('flask')}"
    # Standard output carries the same document.
    printed = CliRunner().invoke(main, ["compliance", "sbom"], catch_exceptions=False)
    assert _listed(json.loads(printed.output)) == _installed()


@pytest.mark.controls("PCI-DSS-6.3.2")
def test_an_evidence_bundle_carries_the_sbom_under_its_signature(instance: Path, tmp_path: Path) -> None:
    """Attack: an insider edits the bundle's bill of materials to hide a package at a
    vulnerable version. The manifest signature covers it, so both verifiers refuse."""
    bundle = tmp_path / "evidence"
    assert run(instance, "audit", "export", "--out", str(bundle)).exit_code == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert "sbom.cdx.json" in manifest["files"]
    assert _listed(json.loads((bundle / "sbom.cdx.json").read_text())) == _installed()
    pin = ("--public-key", str(instance / "audit-signing.pub"))
    assert _verify(bundle, instance).exit_code == 0 and independent(bundle, *pin).returncode == 0

    bom = json.loads((bundle / "sbom.cdx.json").read_text())
    bom["components"] = [c for c in bom["components"] if canonicalize_name(c["name"]) != "cryptography"]
    (bundle / "sbom.cdx.json").write_text(json.dumps(bom))
    refused = _verify(bundle, instance)
    assert refused.exit_code == 1 and "sbom.cdx.json does not match its SHA-256" in refused.output
    assert independent(bundle, *pin).returncode == 1

    # Re-signed by someone with the audit key, a file that is no bill of materials still fails.
    (bundle / "sbom.cdx.json").write_text(json.dumps({"bomFormat": "something else"}))
    _resign(bundle, instance)
    refused = _verify(bundle, instance)
    assert refused.exit_code == 1 and "not a CycloneDX document" in refused.output
    assert "not a CycloneDX document" in independent(bundle, *pin).stdout


def _doctor(instance: Path, constraints: Path) -> tuple[int, dict[str, Any]]:
    result = run(instance, "doctor", "--json", "--constraints", str(constraints))
    rows = json.loads(result.output)
    return result.exit_code, next(r for r in rows if r["check"].startswith("installed packages are the pinned"))


@pytest.mark.controls("PCI-DSS-6.3.3", "ASVS-V13")
def test_doctor_warns_of_a_drifted_pin_in_development_and_refuses_it_in_production(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    assert run(instance, "init").exit_code == 0
    pinned = (ROOT / "constraints.txt").read_text()
    code, row = _doctor(instance, ROOT / "constraints.txt")
    assert code == 0 and row["passed"] is True

    drifted = tmp_path / "constraints.txt"
    drifted.write_text(pinned.replace(f"Flask=={metadata.version('flask')}\n", "Flask==0.12.2\n")
                       .replace(f"PyOTP=={metadata.version('pyotp')}\n", ""))
    assert drifted.read_text() != pinned
    code, row = _doctor(instance, drifted)
    assert code == 0 and row["passed"] is False and row["severity"] == "warning"
    assert f"Flask is {metadata.version('flask')}, pinned 0.12.2" in row["detail"]
    assert "PyOTP" in row["detail"] and "not pinned" in row["detail"]
    text = run(instance, "doctor", "--constraints", str(drifted)).output
    assert "WARN  installed packages are the pinned versions" in text

    config = json.loads((instance / "strongroom.json").read_text())
    (instance / "strongroom.json").write_text(json.dumps({**config, "environment": "production",
                                                          "allow_local_kek": True}))
    code, row = _doctor(instance, drifted)
    assert code == 1 and row["passed"] is False and "severity" not in row
    assert _doctor(instance, ROOT / "constraints.txt")[0] == 0


# -- the vulnerability check -------------------------------------------------------------


class _Advisories(BaseHTTPRequestHandler):
    """An OSV query endpoint: POST {"package": {"name", "ecosystem"}, "version"}."""

    vulnerable: dict[str, str] = {}

    def do_POST(self) -> None:  # noqa: N802 - the http.server spelling
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.asked.append(query["package"]["name"])  # type: ignore[attr-defined]
        advisory = self.server.vulnerable.get(query["package"]["name"])  # type: ignore[attr-defined]
        body: dict[str, Any] = {}
        if advisory is not None:
            body = {"vulns": [{"id": advisory, "summary": "a test advisory", "aliases": [],
                               "affected": [{"package": {"name": query["package"]["name"], "ecosystem": "PyPI"},
                                             "ranges": [{"type": "ECOSYSTEM",
                                                         "events": [{"introduced": "0"}, {"fixed": "999.0"}]}]}]}]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def advisories() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Advisories)
    server.asked = []  # type: ignore[attr-defined]
    server.vulnerable = {}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _check(*args: str) -> Any:
    if not PIP_AUDIT.is_file():
        pytest.fail(f"pip-audit is not installed at {PIP_AUDIT}: run scripts/setup")
    return CliRunner().invoke(main, ["compliance", "vulnerabilities", "--pip-audit", str(PIP_AUDIT),
                                     "--timeout", "5", *args], catch_exceptions=False)


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1/query"


@pytest.mark.controls("PCI-DSS-6.3.3", "ASVS-V15")
def test_an_unreachable_advisory_source_says_not_checked_never_a_pass(advisories: ThreadingHTTPServer) -> None:
    closed = _url(advisories)
    advisories.shutdown()
    advisories.server_close()  # nothing listens there now: connection refused
    result = _check("--service", "osv", "--osv-url", closed)
    assert result.exit_code == 3, result.output
    assert "NOT CHECKED against osv" in result.output and "checked:" not in result.output


@pytest.mark.controls("PCI-DSS-6.3.3")
def test_without_pip_audit_the_answer_is_not_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .venv-tools here
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("STRONGROOM_PIP_AUDIT", raising=False)
    for args in ([], ["--pip-audit", str(tmp_path / "no-such-pip-audit")]):
        result = CliRunner().invoke(main, ["compliance", "vulnerabilities", "--json", *args], catch_exceptions=False)
        assert result.exit_code == 3, result.output
        report = json.loads(result.output)
        assert report["status"] == "not checked" and "pip-audit is not installed" in report["reason"]


@pytest.mark.controls("PCI-DSS-6.3.3", "ASVS-V15")
def test_a_reachable_source_checks_every_package_and_names_a_vulnerable_one(advisories: ThreadingHTTPServer) -> None:
    result = _check("--service", "osv", "--osv-url", _url(advisories), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    expected = {name for name, _ in _installed()} - {"strongroom"}
    assert report["status"] == "checked" and report["audited"] == len(expected)
    assert {canonicalize_name(name) for name in advisories.asked} == expected  # type: ignore[attr-defined]

    advisories.vulnerable = {"flask": "GHSA-test-0001"}  # type: ignore[attr-defined]
    result = _check("--service", "osv", "--osv-url", _url(advisories))
    assert result.exit_code == 1, result.output
    assert f"VULNERABLE  flask {metadata.version('flask')}: GHSA-test-0001 (fixed in 999.0)" in result.output
