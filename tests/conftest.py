"""Shared fixtures: a throwaway PostgreSQL database per test that asks for one.

PostgreSQL is a real server (127.0.0.1:5432 here and in CI; `scripts/test` starts a
throwaway cluster elsewhere). A test that needs it never skips: an unreachable
server fails the test, because a skipped database test proves nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from tests.smtp import Mailbox, loopback_smtp
# Each test's last result for `strongroom compliance evidence`, and the controls
# markers checked against the catalogue (issue 14, item 4): hooks found by name here.
from tests.results_plugin import (  # noqa: F401
    pytest_collection_modifyitems,
    pytest_runtest_logreport,
    pytest_sessionfinish,
)

PG_ADMIN_URL = os.environ.get(
    "STRONGROOM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _database_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a new, empty PostgreSQL database, dropped after the test."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(scope="module")
def module_pg_url() -> Iterator[str]:
    """Like `pg_url`, for a whole module (one real server per store, several attacks)."""
    with fresh_pg_database() as url:
        yield url


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for the duration (also for module-scoped fixtures)."""
    name = f"sr_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _database_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """The same test against the embedded store and against PostgreSQL (STYLE 12)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'strongroom.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    """A real SMTP server on loopback that keeps what it receives (R2.9 activation codes)."""
    with loopback_smtp() as mailbox:
        yield mailbox


@pytest.fixture(scope="module")
def smtp_module() -> Iterator[Mailbox]:
    """The same, shared by a test module (its real server is started once)."""
    with loopback_smtp() as mailbox:
        yield mailbox


class SoftHsm:
    """A throwaway SoftHSM2: its own config and token folder; tokens made on demand."""

    def __init__(self, folder, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        (folder / "tokens").mkdir(parents=True)
        conf = folder / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n"
                        "log.level = ERROR\nslots.removable = false\n")
        # Read by the module in this process and by every subprocess a test starts.
        monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
        self.module = "/usr/lib/softhsm/libsofthsm2.so"

    def init_tokens(self, *labels: str, pin: str = "1234-token-pin") -> str:
        """Initialise tokens (all before any is used), then make the module see them."""
        import subprocess

        import pkcs11

        from infrastructure.crypto.pkcs11_token import forget_sessions

        for label in labels:
            subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,  # nosec B603 B607
                            "--pin", pin, "--so-pin", "5678-so-pin"], check=True, capture_output=True)
        # The module reads its config and lists its tokens when initialised: the
        # library object is shared by the whole test process, so start it afresh.
        pkcs11.lib(self.module).reinitialize()
        forget_sessions()
        return pin


@pytest.fixture
def softhsm(tmp_path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    """A real SoftHSM2 (Debian's softhsm2, installed by scripts/test-services). Never
    skipped: without it the key-provider tests fail, with the command to fix it."""
    import shutil
    from pathlib import Path

    if shutil.which("softhsm2-util") is None or not Path("/usr/lib/softhsm/libsofthsm2.so").exists():
        pytest.fail("SoftHSM2 is not installed: apt-get install softhsm2 (scripts/test-services does it)")
    return SoftHsm(tmp_path / "softhsm", monkeypatch)
