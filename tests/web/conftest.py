"""An instance folder and a Strongroom app over it, driven through Flask's client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from infrastructure.crypto.kek import LocalKek
from web import create_app
from web.app import close_app


def make_instance(tmp_path: Path) -> Path:
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    if not (instance / "kek.key").exists():
        LocalKek.create(instance / "kek.key")
    return instance


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    return make_instance(tmp_path)


@pytest.fixture
def app_factory(instance: Path, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Makes apps over the test's instance (SQLite unless told otherwise); closes them after."""
    made: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        config = {
            "instance": str(instance),
            "database_url": f"sqlite:///{tmp_path / 'x.sqlite'}",
            "blind_index_bits": 8,
            **overrides,
        }
        app = create_app(config)
        made.append(app)
        return app

    yield factory
    for app in made:
        close_app(app)


@pytest.fixture
def app(app_factory: Callable[..., Flask]) -> Flask:
    return app_factory()


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()
