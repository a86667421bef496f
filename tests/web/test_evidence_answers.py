"""An evidence bundle answers the auditor's questions (issue 11, item 7; R3.5, R6.3).

Who is actor `7f3c...`? The bundle's staff directory says: username, roles,
portfolios, status and MFA state *as they were at the window's end*, so a role
granted afterwards does not make an earlier window's bundle lie. Which fields did
that change touch, and why was it made? The change's row names the fields (never
their values, chained with the rest of its metadata) and carries the purpose the
client stated in `X-Purpose`. None of it puts a secret or a customer's value in
the bundle. Both stores.
"""

from __future__ import annotations

import hashlib
import json
import subprocess  # nosec B404 - runs the independent verifier, with fixed arguments
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from application.context import acting_as
from infrastructure.audit.bundle import MANIFEST_TAG, export_bundle, verify_bundle
from tests.web.customers_support import OPERATOR, customer_body
from tests.web.helpers import components, quick_login

PLANTED = ("ada.planted", "QQ123456C", "4111111111111111", "GB82WEST", "Planted Street", "Plantedname",
           "zoe.changed@example.org", "Test Staff")
VERIFIER = Path(__file__).resolve().parents[1] / "independent_verifier.py"
PURPOSE = "ticket 4471: customer asked to change their email"


@pytest.fixture
def app(app_factory: Any, database_url: str) -> Any:
    return app_factory(database_url=database_url, checkpoint_seconds=3600)


def _export(app: Any, out: Path, until: datetime | None = None) -> Path:
    built = components(app)
    with acting_as(OPERATOR):
        export_bundle(built.tamper_evidence, built.app, out, until=until, created_by="operator:tests")
    return out


def _directory(bundle: Path) -> dict[str, dict[str, Any]]:
    listed = json.loads((bundle / "reports" / "staff-directory.json").read_text())["actors"]
    return {entry["id"]: entry for entry in listed}


def _rows(bundle: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (bundle / "rows.jsonl").read_text().splitlines()]


def _grant_supervisor(app: Any, staff_id: str) -> None:
    built = components(app)
    member = built.identity.staff(staff_id)
    member.change_roles(grant=["supervisor"])
    with acting_as(OPERATOR):
        built.app._save(member)


@pytest.fixture
def changed(client: Any, app: Any) -> tuple[Any, str, datetime]:
    """An agent registers a customer and changes their email, stating why each time;
    then the window closes, and afterwards the agent is made a supervisor."""
    agent = quick_login(client, app, roles=["agent"], portfolios=["retail"])
    created = client.post("/api/v1/customers", json=customer_body(), headers=agent.with_purpose("onboarding"))
    assert created.status_code == 201, created.get_json()
    cid = created.get_json()["id"]
    done = client.patch(f"/api/v1/customers/{cid}", json={"email": "zoe.changed@example.org"},
                        headers={**agent.with_purpose(PURPOSE), "If-Match": '"1"'})
    assert done.status_code == 200, done.get_json()
    window_end = datetime.now(UTC)
    _grant_supervisor(app, agent.staff_id)
    return agent, cid, window_end


def test_the_directory_names_the_window_actors_with_their_roles_at_the_window_end(
    app: Any, changed: tuple[Any, str, datetime], tmp_path: Path
) -> None:
    agent, _, window_end = changed
    earlier = _directory(_export(app, tmp_path / "earlier", until=window_end))
    assert earlier[agent.staff_id]["username"] == agent.username
    assert earlier[agent.staff_id]["roles"] == ["agent"]  # the grant came after the window
    assert earlier[agent.staff_id]["portfolios"] == ["retail"]
    assert earlier[agent.staff_id]["mfa_enrolled"] is True
    assert earlier[agent.staff_id]["status"] == "active"
    assert earlier["operator:tests"]["kind"] == "operator"
    later = _directory(_export(app, tmp_path / "later"))
    assert later[agent.staff_id]["roles"] == ["agent", "supervisor"]
    actors = {str(((r["metadata"] or {}).get("context") or {}).get("actor_id"))
              for r in _rows(tmp_path / "earlier") if r["in_window"]} - {"None"}
    assert actors <= set(earlier), "every actor of the window is in the directory"


def test_the_bundle_holds_no_secret_and_no_customer_value(
    app: Any, changed: tuple[Any, str, datetime], tmp_path: Path
) -> None:
    agent, _, _ = changed
    bundle = _export(app, tmp_path / "evidence")
    text = "\n".join(p.read_text() for p in bundle.rglob("*") if p.is_file())
    member = components(app).identity.staff(agent.staff_id)
    for secret in (member.password_hash, member.totp_secret, *member.recovery_codes, agent.password):
        assert secret not in text
    for forbidden in ("$argon2", "password_hash", "totp_secret", "recovery_codes", "display_name", *PLANTED):
        assert forbidden not in text, forbidden


def test_a_change_row_names_the_fields_it_set_and_the_purpose_stated(
    app: Any, changed: tuple[Any, str, datetime], tmp_path: Path
) -> None:
    agent, cid, _ = changed
    bundle = _export(app, tmp_path / "evidence")
    contact = next(r for r in _rows(bundle) if r["stream_id"] == cid and r["topic"].endswith(".ContactChanged"))
    assert contact["metadata"]["fields"] == ["email", "phone"]
    assert contact["metadata"]["context"]["purpose"] == PURPOSE
    assert contact["metadata"]["context"]["actor_id"] == agent.staff_id
    registered = next(r for r in _rows(bundle) if r["stream_id"] == cid and r["topic"].endswith(".Registered"))
    assert {"email", "national_id", "cards", "bank_accounts"} <= set(registered["metadata"]["fields"])
    assert registered["metadata"]["context"]["purpose"] == "onboarding"


def test_the_bundle_with_its_directory_verifies_and_a_dropped_actor_is_found(
    app: Any, changed: tuple[Any, str, datetime], tmp_path: Path
) -> None:
    agent, _, _ = changed
    bundle = _export(app, tmp_path / "evidence")
    pem = components(app).tamper_evidence.signer.public_pem()
    (tmp_path / "audit-signing.pub").write_bytes(pem)
    assert verify_bundle(bundle, public_key_pem=pem).passed
    independent = [sys.executable, "-I", str(VERIFIER), str(bundle), "--public-key", str(tmp_path / "audit-signing.pub")]
    result = subprocess.run(independent, capture_output=True, text=True, timeout=120, check=False)  # nosec B603
    assert result.returncode == 0, result.stdout + result.stderr
    # An insider with the signing key hides who the agent was and signs again.
    path = bundle / "reports" / "staff-directory.json"
    directory = json.loads(path.read_text())
    directory["actors"] = [a for a in directory["actors"] if a["id"] != agent.staff_id]
    path.write_text(json.dumps(directory))
    _resign(app, bundle)
    report = verify_bundle(bundle, public_key_pem=pem)
    assert not report.passed and any("staff-directory.json does not name" in p.what for p in report.problems)
    result = subprocess.run(independent, capture_output=True, text=True, timeout=120, check=False)  # nosec B603
    assert result.returncode == 1 and "staff directory" in result.stdout, result.stdout


def _resign(app: Any, bundle: Path) -> None:
    """What an insider holding the signing key does after editing a file."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in manifest["files"]:
        data = (bundle / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    (bundle / "manifest.json").write_bytes(body)
    signer = components(app).tamper_evidence.signer
    (bundle / "manifest.sig").write_text(signer.sign(MANIFEST_TAG + body).hex() + "\n")


def test_field_names_rewritten_and_signed_again_break_the_chain(
    app: Any, changed: tuple[Any, str, datetime], tmp_path: Path
) -> None:
    """An insider claims the change touched the phone only, and signs the bundle again."""
    _, cid, _ = changed
    bundle = _export(app, tmp_path / "evidence")
    rows = _rows(bundle)
    contact = next(r for r in rows if r["stream_id"] == cid and r["topic"].endswith(".ContactChanged"))
    contact["metadata"]["fields"] = ["phone"]
    (bundle / "rows.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    _resign(app, bundle)
    report = verify_bundle(bundle, public_key_pem=components(app).tamper_evidence.signer.public_pem())
    assert not report.passed
    assert report.first_problem.position == contact["position"]
    assert "not what its row hash commits to" in report.first_problem.what
