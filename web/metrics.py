"""Prometheus metrics at `/metrics` (R7.2): requests and latency.

No log or read-model position is published here: /metrics needs no session, and
the event-log position moves with every access record, so a caller watching it
could tell whether a search of theirs wrote one record or two, which told "exists
out of scope" from "absent" (issue 10, item 1). The positions stay where
only an operator reads them: the database itself, and the command line on the host.

Labels never carry personal data: a request is labelled by its URL *rule*
(`/api/v1/customers/<id>`), never by its path or query string, and a request that
matched no rule is `<unmatched>`, so a scanner cannot grow the label set either.

Under `strongroom serve` each gunicorn worker counts its own requests into files in
PROMETHEUS_MULTIPROC_DIR, and any worker that is scraped adds them all up; the
variable must be set before `prometheus_client` is first imported, which is why
this module is imported only by the app factory, after the fork.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from web.openapi import Api, Blueprint

UNMATCHED = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

blueprint = Blueprint("metrics", __name__, description="Prometheus metrics.")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class RequestMetrics:
    """Request counts and latency for one app, in a registry of its own."""

    def __init__(self, components: Any, timeout: float) -> None:
        self.alerts = AlertCounts(components)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "strongroom_http_requests", "HTTP requests answered.",
            ["method", "endpoint", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "strongroom_http_request_duration_seconds", "Time to answer an HTTP request.",
            ["method", "endpoint"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "OTHER"
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(method, endpoint).observe(seconds)

    def stop(self) -> None:
        """Nothing to stop: the position gauges that read the database are gone."""

    def exposition_registry(self) -> CollectorRegistry:
        if multiprocess_dir():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = CollectorRegistry()
            registry.register(_Forward(self.registry))
        registry.register(self.alerts)
        return registry


class _Forward(Collector):
    """Exposes another registry's metrics inside a per-scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        return iter(self.source.collect())


# Alerts (issue 12, R3.6): counted from the alerts table when scraped, not per process,
# so every API process answers the same figures.
ALERT_SERIES_MAX = 200  # label sets beyond this are summed under rule_id="<other>"
ALERT_COUNTS_TTL = 15.0  # seconds a count is reused: bounds the queries a scraper can cause


class AlertCounts(Collector):
    """`strongroom_alerts{rule_id,severity,status}` and `strongroom_webhook_deliveries{status}`.

    Labels are rule ids (names a rule gives itself), the severity and status
    vocabularies and delivery states: never a person, an address or a customer. The
    figures are reused for `ALERT_COUNTS_TTL` seconds, so /metrics (which needs no
    session) cannot be used to hammer the database, and a prober watching it learns
    of an alert only some seconds later (docs/threat-model.md: scrape /metrics from
    the monitoring network). A store that does not answer leaves the series out."""

    def __init__(self, components: Any) -> None:
        self.table = getattr(components, "alert_table", None)
        self.webhooks = getattr(components, "webhooks", None)
        self._cached: tuple[float, list[tuple[str, str, str, int]], dict[str, int]] | None = None

    def _counts(self) -> tuple[list[tuple[str, str, str, int]], dict[str, int]]:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < ALERT_COUNTS_TTL:
            return self._cached[1], self._cached[2]
        alerts = self.table.counts() if self.table is not None else []
        deliveries = self.webhooks.counts() if self.webhooks is not None else {}
        self._cached = (now, alerts, deliveries)
        return alerts, deliveries

    def collect(self) -> Iterator[Any]:
        try:
            alerts, deliveries = self._counts()
        except Exception:
            return  # the database is away: /readyz says so; /metrics still answers
        family = GaugeMetricFamily("strongroom_alerts", "Alerts in the alerts table, by rule, severity and status.",
                                   labels=["rule_id", "severity", "status"])
        shown: dict[tuple[str, str, str], int] = {}
        for rule_id, severity, status, count in alerts:
            key = (rule_id, severity, status) if len(shown) < ALERT_SERIES_MAX else ("<other>", severity, status)
            shown[key] = shown.get(key, 0) + count
        for labels, count in shown.items():
            family.add_metric(list(labels), count)
        yield family
        webhook = GaugeMetricFamily("strongroom_webhook_deliveries", "Webhook deliveries of alerts, by state.",
                                    labels=["status"])
        for status in ("pending", "delivered", "dead"):
            webhook.add_metric([status], deliveries.get(status, 0))
        yield webhook


def endpoint_label() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED


def start_timer() -> None:
    g.started = time.perf_counter()


def elapsed_seconds() -> float:
    started = g.get("started")
    return 0.0 if started is None else time.perf_counter() - started


@blueprint.get("/metrics")
@blueprint.public
@blueprint.response(200, {"type": "string"}, content_type="text/plain",
                    description="Prometheus text exposition format (or OpenMetrics, by Accept).")
def metrics() -> Response:
    """Prometheus metrics; labels carry URL rules, never paths, queries or personal data."""
    recorder: RequestMetrics = current_app.extensions["strongroom.metrics"]
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(recorder.exposition_registry()), content_type=content_type)


def install(app: Flask, api: Api, components: Any, timeout: float) -> RequestMetrics:
    recorder = RequestMetrics(components, timeout)
    app.extensions["strongroom.metrics"] = recorder
    api.register_blueprint(blueprint)
    return recorder
