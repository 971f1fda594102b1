"""ShutdownCutoff: what a request gets when the server cancels it at the shutdown timeout."""

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from starlette.types import Message, Receive, Scope, Send

from berth.gateway.proxy import EVENT_STREAM_STARTED
from berth.shutdown_cutoff import ShutdownCutoff

pytestmark = pytest.mark.anyio

GATEWAY_PATH = "/endpoints/e1/v1/completions"
CORS_HEADER = (b"access-control-allow-origin", b"https://app.example.com")

App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _gateway_headers(_request_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [CORS_HEADER]


async def _run_until_cancelled(app: App, path: str, sent_before_cancel: int) -> list[Message]:
    """Run `app` behind ShutdownCutoff, cancel it once it has sent `sent_before_cancel`
    messages, and return every message it sent."""
    sent: list[Message] = []
    ready = asyncio.Event()

    async def send(message: Message) -> None:
        # uvicorn refuses a second start, as ShutdownCutoff relies on.
        if message["type"] == "http.response.start" and any(
            earlier["type"] == "http.response.start" for earlier in sent
        ):
            raise RuntimeError("Unexpected ASGI message 'http.response.start' sent")
        sent.append(message)
        if len(sent) >= sent_before_cancel:
            ready.set()

    async def receive() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    if sent_before_cancel == 0:
        ready.set()
    scope: Scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    cutoff = ShutdownCutoff(app, 2.0, _gateway_headers)
    task = asyncio.create_task(cutoff(scope, receive, send))
    await asyncio.wait_for(ready.wait(), timeout=5)
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait_for(task, timeout=5)
    assert not task.cancelled()
    return sent


async def _wait_forever(_scope: Scope, _receive: Receive, _send: Send) -> None:
    await asyncio.Event().wait()


def _start_then_wait(content_type: bytes) -> App:
    async def app(scope: Scope, _receive: Receive, send: Send) -> None:
        if content_type.startswith(b"text/event-stream"):
            # As the gateway marks a stream it relays.
            scope[EVENT_STREAM_STARTED] = True
        headers = [(b"content-type", content_type)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
        await asyncio.Event().wait()

    return app


async def test_cutoff_before_response_gateway_503() -> None:
    sent = await _run_until_cancelled(_wait_forever, GATEWAY_PATH, 0)

    assert len(sent) == 2
    assert sent[0]["status"] == 503
    headers = dict(sent[0]["headers"])
    assert headers[b"retry-after"] == b"5"
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"access-control-allow-origin"] == CORS_HEADER[1]
    body = json.loads(sent[1]["body"])
    assert body["error"]["code"] == "server_shutting_down"
    assert body["error"]["type"] == "service_unavailable"
    assert int(headers[b"content-length"]) == len(sent[1]["body"])


async def test_cutoff_before_response_api_no_cors() -> None:
    sent = await _run_until_cancelled(_wait_forever, "/api/v1/endpoints", 0)

    assert sent[0]["status"] == 503
    assert b"access-control-allow-origin" not in dict(sent[0]["headers"])


async def test_cutoff_during_event_stream() -> None:
    app = _start_then_wait(b"text/event-stream; charset=utf-8")

    sent = await _run_until_cancelled(app, GATEWAY_PATH, 2)

    assert len(sent) == 4
    error_event = sent[2]["body"]
    assert error_event.startswith(b"\n\ndata: ")
    assert error_event.endswith(b"\n\n")
    assert json.loads(error_event.strip()[len(b"data: ") :])["error"]["code"] == (
        "server_shutting_down"
    )
    assert sent[3] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_cutoff_during_other_body() -> None:
    app = _start_then_wait(b"application/json")

    sent = await _run_until_cancelled(app, GATEWAY_PATH, 2)

    # Left incomplete, so that uvicorn closes the connection.
    assert len(sent) == 2


async def test_cutoff_after_complete_response() -> None:
    async def app(_scope: Scope, _receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        await asyncio.Event().wait()

    sent = await _run_until_cancelled(app, GATEWAY_PATH, 2)

    assert len(sent) == 2
