"""A real SMTP server on loopback (aiosmtpd) that keeps every message it receives:
where activation codes go in tests (R2.9). Fixtures `smtp` (one per test) and
`smtp_module` (one per test module, for the end-to-end servers) live in
tests/conftest.py; both give a `Mailbox`.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

CODE = re.compile(r"Activation code: ([0-9a-f]{8}(?:-[0-9a-f]{8}){3})")


@dataclass
class Mailbox:
    """The messages the loopback server received, and how to reach it."""

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def settings(self) -> dict[str, Any]:
        """The settings that point Strongroom's activation channel here."""
        return {"smtp_host": self.host, "smtp_port": self.port, "smtp_sender": "strongroom@bank.example"}

    @property
    def env(self) -> dict[str, str]:
        """The same, as environment variables for `strongroom serve`."""
        return {f"STRONGROOM_{k.upper()}": str(v) for k, v in self.settings.items()}

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if address in m.get_all("To", [])]

    def code_for(self, address: str, *, timeout: float = 5.0) -> str:
        """The activation code in the latest message to `address` (waits for it)."""
        deadline = time.monotonic() + timeout
        while True:
            received = self.to(address)
            if received:
                found = CODE.search(received[-1].get_content())
                assert found, "an activation message without a code"
                return found.group(1)
            if time.monotonic() > deadline:
                raise AssertionError(f"no message to {address} within {timeout} s")
            time.sleep(0.05)

    def everything(self) -> str:
        """Every message, headers and bodies, as one text (to look for what must not leak)."""
        with self.lock:
            return "\n".join(m.as_string() for m in self.messages)


class _Keeper:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.mailbox.lock:
            self.mailbox.messages.append(parsed)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def loopback_smtp(*, starttls: tuple[Path, Path] | None = None) -> Iterator[Mailbox]:
    """An SMTP server on 127.0.0.1 for the duration; with `starttls` (certificate, key)
    it refuses mail until the client has switched to TLS."""
    mailbox = Mailbox("127.0.0.1", _free_port())
    tls: dict[str, Any] = {}
    if starttls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(starttls[0]), str(starttls[1]))
        tls = {"tls_context": context, "require_starttls": True}
    controller = Controller(_Keeper(mailbox), hostname=mailbox.host, port=mailbox.port, **tls)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


def unreachable_smtp() -> dict[str, Any]:
    """Settings naming a loopback port where nothing listens (a relay that is down)."""
    return {"smtp_host": "127.0.0.1", "smtp_port": _free_port(), "smtp_sender": "strongroom@bank.example",
            "smtp_timeout_seconds": 2.0}
