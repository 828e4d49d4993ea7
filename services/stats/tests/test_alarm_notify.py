"""Webhook delivery against a real HTTP server: retries, backoff, giving up, ordering."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from aimp_core.kafka import EventPublisher
from aimp_core.net import free_port
from aimp_stats.alarm_notify import AlarmNotifier, WebhookSender, backoff_s, retryable


class WebhookReceiver:
    """A real HTTP server that records each POSTed JSON body, answering scripted statuses
    first (then 200 for ever)."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.script = list(script or [])
        self.attempts: list[tuple[float, dict[str, Any]]] = []
        self.accepted: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._lock:
                    receiver.attempts.append((time.time(), body))
                    status = receiver.script.pop(0) if receiver.script else 200
                    if status == 200:
                        receiver.accepted.append((time.time(), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sender() -> WebhookSender:
    return WebhookSender(timeout_s=2, attempts=3, backoff_initial_s=0.05, backoff_max_s=0.2)


def test_retry_decisions_and_backoff() -> None:
    """5xx, 408, 425 and 429 are retried, other statuses not; backoff doubles up to a cap."""
    assert all(retryable(s) for s in (500, 502, 503, 408, 425, 429))
    assert not any(retryable(s) for s in (400, 401, 404, 410, 301))
    assert [backoff_s(a, 0.5, 3.0, None) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert backoff_s(1, 0.5, 3.0, "2") == 2.0 and backoff_s(1, 0.5, 3.0, "60") == 3.0


async def test_a_failed_delivery_is_retried_until_accepted(sender: WebhookSender) -> None:
    """Two 5xx answers, then 200: the event is delivered on the third attempt."""
    with WebhookReceiver([503, 500]) as hook:
        async with httpx.AsyncClient() as http:
            assert await sender.deliver(http, hook.url, {"event_id": "e1"})
        assert [b["event_id"] for _, b in hook.attempts] == ["e1"] * 3
        assert len(hook.accepted) == 1


async def test_a_client_error_is_not_retried_and_attempts_are_bounded(
    sender: WebhookSender,
) -> None:
    """400 ends at once; endless 503s end after the configured attempts; both report False."""
    with WebhookReceiver([400]) as hook:
        async with httpx.AsyncClient() as http:
            assert not await sender.deliver(http, hook.url, {"event_id": "e1"})
        assert len(hook.attempts) == 1
    with WebhookReceiver([503] * 10) as hook:
        async with httpx.AsyncClient() as http:
            assert not await sender.deliver(http, hook.url, {"event_id": "e2"})
        assert len(hook.attempts) == 3


async def test_an_unreachable_webhook_times_out_and_gives_up(sender: WebhookSender) -> None:
    """Nothing listening: each attempt fails fast and the sender gives up after 3."""
    async with httpx.AsyncClient() as http:
        started = time.monotonic()
        assert not await sender.deliver(http, f"http://127.0.0.1:{free_port()}/x", {})
    assert time.monotonic() - started < 2


async def test_notifier_keeps_order_per_webhook_through_retries(sender: WebhookSender) -> None:
    """A firing event retried after a 503 still reaches the receiver before its resolved one."""
    publisher = EventPublisher(f"127.0.0.1:{free_port()}")  # no broker: Kafka is not the point
    notifier = AlarmNotifier(publisher, "aimp.alarms.v1", sender, default_webhook_url=None)
    with WebhookReceiver([503]) as hook:
        notifier.notify({"event_id": "f", "service": "s", "state": "firing"}, hook.url)
        notifier.notify({"event_id": "r", "service": "s", "state": "resolved"}, hook.url)
        notifier.notify({"event_id": "n", "service": "s", "state": "firing"}, None)  # no URL
        assert publisher.pending == 3  # all three were handed to Kafka
        await notifier.stop(drain_s=5)
        assert [b["event_id"] for _, b in hook.accepted] == ["f", "r"]
