"""The HTTP side: the app factory, the flask-smorest blueprints and their schemas,
authentication and the one error table. The command line is its sibling, `cli/`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Strongroom API (see `web.app.create_app`).

    Imported late so that loading `web` (as `strongroom serve` does) loads neither
    Flask nor the metrics client: `strongroom serve` must set the metrics mode
    before prometheus_client is first imported, and `strongroom --help` stays quick.
    """
    from web.app import create_app as factory

    return factory(config)


__all__ = ["create_app"]
