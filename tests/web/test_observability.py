"""Metrics and request logs: useful to an operator, useless to someone hunting for personal data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from application.context import RequestContext, acting_as
from tests.application.conftest import customer_fields
from web import auth

PLANTED_EMAIL = "planted@example.org"
PLANTED_ID = "planted-customer-4711"


@pytest.fixture
def app(app_factory, monkeypatch):
    # A made-up route: what is tested is what metrics and logs carry, not sign-in.
    monkeypatch.setattr(auth, "PUBLIC_RULES", auth.PUBLIC_RULES | {"/api/v1/things/<thing_id>"})
    app = app_factory()

    @app.get("/api/v1/things/<thing_id>")
    def thing(thing_id):
        return {"id": thing_id}

    return app


def samples(client, name: str) -> list:
    text = client.get("/metrics").get_data(as_text=True)
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def request_lines(captured: str) -> list[dict]:
    lines = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "strongroom.request"]


def test_requests_are_counted_by_method_rule_and_status(client):
    for _ in range(3):
        client.get("/healthz")
    client.get("/api/v1/things/a1")
    client.get("/api/v1/things/b2")
    client.get("/nowhere")

    counts = {(s.labels["method"], s.labels["endpoint"], s.labels["status"]): s.value
              for s in samples(client, "strongroom_http_requests_total")}
    assert counts[("GET", "/healthz", "200")] == 3
    assert counts[("GET", "/api/v1/things/<thing_id>", "200")] == 2  # one series for any id
    assert counts[("GET", "<unmatched>", "404")] == 1
    latency = samples(client, "strongroom_http_request_duration_seconds_count")
    assert any(s.labels["endpoint"] == "/healthz" and s.value == 3 for s in latency)


@pytest.mark.controls("ASVS-V14")
def test_metrics_and_logs_carry_no_query_strings_paths_or_personal_data(client, capsys):
    client.get(f"/healthz?email={PLANTED_EMAIL}")
    client.get(f"/api/v1/things/{PLANTED_ID}?email={PLANTED_EMAIL}")
    client.get(f"/api/v1/customers/{PLANTED_EMAIL}")  # an unmatched path with a value in it
    client.post(f"/api/v1/customers?email={PLANTED_EMAIL}", json={"email": PLANTED_EMAIL},
                headers={"Authorization": "Bearer planted-token-0123456789"})
    text = client.get("/metrics").get_data(as_text=True)
    logged = capsys.readouterr().err

    for planted in (PLANTED_EMAIL, "planted", "email=", "planted-token"):
        assert planted not in text
        assert planted not in logged
    assert 'endpoint="/api/v1/things/<thing_id>"' in text


def test_methods_outside_http_s_vocabulary_share_one_label(client):
    client.open("/healthz", method="PLANTEDMETHOD")
    text = client.get("/metrics").get_data(as_text=True)
    assert "PLANTEDMETHOD" not in text
    assert 'method="OTHER"' in text


def test_no_log_or_read_model_position_is_published_without_a_session(app, client):
    """The log position moves with every access record: public, it told whether a
    search wrote one record or two, "exists out of scope" from "absent" (issue 10, item 1)."""
    built = app.extensions["strongroom"]
    with acting_as(RequestContext(actor_id="operator:test", via="cli", purpose="tests")):
        built.app.register_customer(customer_fields())
    text = client.get("/metrics").get_data(as_text=True)
    assert "position" not in text
    assert not samples(client, "strongroom_event_log_position")


def test_prometheus_can_ask_for_openmetrics(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.content_type.startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


@pytest.mark.controls("ASVS-V16")
def test_each_request_is_one_json_log_line_with_its_id_and_rule(client, capsys):
    capsys.readouterr()
    response = client.get(f"/api/v1/things/t-1?email={PLANTED_EMAIL}", headers={"X-Request-Id": "trace-0000-0001"},
                          environ_base={"REMOTE_ADDR": "192.0.2.7"})
    lines = request_lines(capsys.readouterr().err)
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "trace-0000-0001" == response.headers["X-Request-Id"]
    assert line["method"] == "GET"
    assert line["rule"] == "/api/v1/things/<thing_id>"
    assert line["status"] == 200
    assert line["remote_addr"] == "192.0.2.7"
    assert line["level"] == "info"
    assert isinstance(line["duration_ms"], float)
    assert line["time"].endswith("+00:00")
    assert PLANTED_EMAIL not in json.dumps(line)


def test_requests_refused_early_are_logged_too(client, capsys):
    capsys.readouterr()
    client.post("/api/v1/things/x", data=b"x" * (2 * 1024 * 1024))
    lines = request_lines(capsys.readouterr().err)
    assert [line["status"] for line in lines] == [413]
    assert lines[0]["request_id"]


def test_workers_add_up_their_counts_when_they_share_a_metrics_folder(tmp_path: Path, instance: Path):
    # What `strongroom serve` does: each worker process counts into a shared folder
    # and whichever worker is scraped reports the sum.
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    script = textwrap.dedent(f"""
        import sys
        from web import create_app
        app = create_app({{"instance": {str(instance)!r}, "database_url": "sqlite:///{tmp_path / 'x.sqlite'}"}})
        client = app.test_client()
        if sys.argv[1] == "count":
            for _ in range(3):
                assert client.get("/healthz").status_code == 200
        else:
            print(client.get("/metrics").get_data(as_text=True))
    """)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    root = Path(__file__).resolve().parents[2]
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", script, "count"], env=env, cwd=root,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    scraped = subprocess.run([sys.executable, "-c", script, "scrape"], env=env, cwd=root,
                             capture_output=True, text=True, timeout=120)
    assert scraped.returncode == 0, scraped.stderr
    counts = [s for family in text_string_to_metric_families(scraped.stdout) for s in family.samples
              if s.name == "strongroom_http_requests_total" and s.labels["endpoint"] == "/healthz"]
    assert sum(s.value for s in counts) == 6
