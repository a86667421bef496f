"""A real HTTP webhook receiver on loopback, in a thread, that checks each delivery's
signature with the shared secret as docs/operations.md tells a receiver to."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from infrastructure.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, verify_signature

SECRET = "a-webhook-secret-of-forty-characters-xyz"


@dataclass
class Delivery:
    delivery_id: str
    idempotency_key: str
    signature: str
    body: bytes
    verified: bool

    @property
    def alert(self) -> dict[str, Any]:
        return dict(json.loads(self.body)["alert"])


@dataclass
class Receiver:
    port: int
    # Statuses to answer, in turn; 200 once they run out.
    answers: list[int] = field(default_factory=list)
    received: list[Delivery] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/strongroom"

    def taken(self) -> list[Delivery]:
        """Deliveries answered 2xx, repeats (same delivery id) dropped as a receiver would."""
        seen: dict[str, Delivery] = {}
        with self.lock:
            for delivery in self.received:
                seen.setdefault(delivery.delivery_id, delivery)
        return list(seen.values())


@contextmanager
def webhook_receiver(port: int = 0, answers: list[int] | None = None,
                     secret: str = SECRET) -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server name
            receiver = holder["receiver"]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            signature = self.headers.get(SIGNATURE_HEADER, "")
            with receiver.lock:
                receiver.attempts += 1
                status = receiver.answers.pop(0) if receiver.answers else 200
                if 200 <= status < 300:
                    receiver.received.append(Delivery(
                        self.headers.get(DELIVERY_HEADER, ""), self.headers.get("Idempotency-Key", ""),
                        signature, body, verify_signature(secret.encode(), signature, body)))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    holder["receiver"] = Receiver(server.server_address[1], list(answers or []))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["receiver"]
    finally:
        server.shutdown()
        server.server_close()
