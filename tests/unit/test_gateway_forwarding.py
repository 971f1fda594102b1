"""The gateway's forwarding rules, against small HTTP servers on 127.0.0.1 that stand in
for instances and misbehave on request.

A request that never reached an instance is retried once on another. A request that
reached an instance is never sent again, a stream that breaks off ends with an error
event, and a caller that leaves a stream closes the connection to the instance.
"""

import asyncio
import codecs
import hashlib
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from berth.gateway.proxy import Gateway
from berth.gateway.table import (
    KeyEntry,
    Route,
    RoutingTable,
    Upstream,
    _Changes,
    _EndpointChange,
)
from berth.json_nesting import MAX_JSON_DEPTH
from berth.states import (
    EndpointState,
    InstanceState,
    KeyStatus,
    MLApp,
    capacity_wait_reason,
    failed_start_reason,
)
from tests.support import read_http_request

pytestmark = pytest.mark.anyio

KEY = "berth_ek_unit-test-key"
ENDPOINT = "00000000-0000-0000-0000-0000000000e1"
OTHER_ENDPOINT = "00000000-0000-0000-0000-0000000000e2"
OTHER_KEY = "berth_ek_other-endpoint-key"


def _free_port() -> int:
    """A port that nothing listens on, so connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class FakeInstance:
    """A minimal HTTP/1.1 server whose response `behaviour` selects.

    ok: 200 with the address that served. drop: closes the connection without a response.
    drop-reused: responds to the first request on each connection as ok, and closes the
    connection without a response when a later request arrives on it. reset-reused: the
    same, but resets the connection instead, as the kernel does when an instance dies
    with the request unread.
    break-stream: sends one event of a stream, then closes. endless-stream: sends an
    event every 10 ms until the connection closes. silent: sends no response and waits
    for the connection to close.
    """

    behaviour: str = "ok"
    attempts: int = 0
    last_request: bytes = b""
    closed_streams: int = 0
    closed_waits: int = 0
    address: str = ""
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests_on_connection = 0
        try:
            while True:
                self.last_request = await read_http_request(reader)
                self.attempts += 1
                requests_on_connection += 1
                if self.behaviour == "drop-reused" and requests_on_connection > 1:
                    return
                if self.behaviour == "reset-reused" and requests_on_connection > 1:
                    # A zero linger time makes the close send a reset.
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if self.behaviour == "silent":
                    # Sends no response, and counts the gateway closing the connection.
                    while await reader.read(1024):
                        pass
                    self.closed_waits += 1
                    return
                if not await self._answer(writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter) -> bool:
        """Write the response; return whether the connection stays open."""
        if self.behaviour == "drop":
            return False
        if self.behaviour in ("break-stream", "endless-stream"):
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            event = b'data: {"choices": []}\n\n'
            chunk = b"%x\r\n%s\r\n" % (len(event), event)
            writer.write(chunk)
            await writer.drain()
            if self.behaviour == "break-stream":
                return False
            try:
                while True:
                    await asyncio.sleep(0.01)
                    writer.write(chunk)
                    await writer.drain()
            except ConnectionError:
                self.closed_streams += 1
            return False
        body = json.dumps({"served_by": self.address}).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        return True

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def _chat_scope(body: bytes) -> dict[str, object]:
    """Return the ASGI scope of a chat request with the endpoint's key, for tests that
    speak ASGI themselves (httpx's ASGI transport waits for the whole response body)."""
    return {
        "type": "http",
        "method": "POST",
        "path": f"/endpoints/{ENDPOINT}/v1/chat/completions",
        "headers": [
            (b"authorization", f"Bearer {KEY}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }


@dataclass
class Setup:
    table: RoutingTable
    gateway: Gateway
    client: httpx.AsyncClient
    first: FakeInstance
    second: FakeInstance
    refused_address: str = field(default_factory=lambda: f"127.0.0.1:{_free_port()}")

    @property
    def route(self) -> Route:
        return self.table.routes[ENDPOINT]

    def set_upstreams(self, *addresses: str) -> None:
        self.route.upstreams = {
            f"i{index}": Upstream(f"i{index}", address) for index, address in enumerate(addresses)
        }

    async def post(self, path: str = "v1/chat/completions", **kwargs: object) -> httpx.Response:
        return await self.client.post(
            f"/endpoints/{ENDPOINT}/{path}",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {KEY}"},
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    first, second = FakeInstance(), FakeInstance()
    await first.start()
    await second.start()
    table = RoutingTable(database=None, sync_interval_s=0.2)  # type: ignore[arg-type]
    for key, endpoint_id in ((KEY, ENDPOINT), (OTHER_KEY, OTHER_ENDPOINT)):
        table.keys[hashlib.sha256(key.encode()).hexdigest()] = KeyEntry(
            f"key-{endpoint_id[-2:]}", endpoint_id, KeyStatus.ACTIVE
        )
        table.routes[endpoint_id] = Route(endpoint_id, EndpointState.LIVE, MLApp.ECHO, False)
    gateway = Gateway(table, max_body_bytes=4096, timeout_s=5, no_instance_wait_s=0.5)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(gateway), base_url="http://gw")
    result = Setup(table, gateway, client, first, second)
    result.set_upstreams(first.address, second.address)
    try:
        yield result
    finally:
        await client.aclose()
        await gateway.close()
        await first.stop()
        await second.stop()


async def test_requests_are_forwarded_and_spread(setup: Setup) -> None:
    responses = [await setup.post() for _ in range(4)]

    assert [response.status_code for response in responses] == [200] * 4
    served = {response.json()["served_by"] for response in responses}
    assert served == {setup.first.address, setup.second.address}
    assert {response.headers["x-berth-instance"] for response in responses} == {"i0", "i1"}


async def test_refused_connection_retried_elsewhere(setup: Setup) -> None:
    setup.set_upstreams(setup.refused_address, setup.second.address)
    # Round-robin position that makes the first request pick the refusing address.
    setup.route.turn = 1

    responses = [await setup.post() for _ in range(4)]

    assert [response.status_code for response in responses] == [200] * 4
    assert all(r.json()["served_by"] == setup.second.address for r in responses)
    # The refusing instance is then skipped for a while: the second one got every request.
    assert setup.second.attempts == 4
    assert setup.route.upstreams["i0"].unreachable_until > 0


async def test_delivered_request_not_replayed(setup: Setup) -> None:
    setup.first.behaviour = setup.second.behaviour = "drop"

    response = await setup.post()

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "instance_failed"
    assert setup.first.attempts + setup.second.attempts == 1


async def test_reset_idle_connection_retried(setup: Setup) -> None:
    setup.set_upstreams(setup.first.address)
    setup.first.behaviour = "reset-reused"

    responses = [await setup.post() for _ in range(3)]

    # The second and third requests each found the idle connection reset without a
    # response, and went out again on a new connection to the same instance.
    assert [response.status_code for response in responses] == [200] * 3
    assert setup.first.attempts == 5
    assert setup.route.upstreams["i0"].unreachable_until == 0


async def test_closed_idle_connection_not_replayed(setup: Setup) -> None:
    setup.set_upstreams(setup.first.address, setup.second.address)
    setup.first.behaviour = setup.second.behaviour = "drop-reused"
    first_responses = [await setup.post() for _ in range(2)]

    # Each instance read the request and closed the connection without a reset, as one
    # that crashed on the request would, so the request is not sent to another.
    response = await setup.post()

    assert [r.status_code for r in first_responses] == [200, 200]
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "instance_failed"
    assert setup.first.attempts + setup.second.attempts == 3


async def test_two_refusals_give_503(setup: Setup) -> None:
    setup.set_upstreams(setup.refused_address, f"127.0.0.1:{_free_port()}")

    response = await setup.post()

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "no_ready_instance"
    assert all(up.unreachable_until > 0 for up in setup.route.upstreams.values())


async def test_updating_endpoint_is_served(setup: Setup) -> None:
    setup.route.state = EndpointState.UPDATING

    response = await setup.post()

    assert response.status_code == 200


async def test_stopping_endpoint_is_not_served(setup: Setup) -> None:
    setup.route.state = EndpointState.STOPPING

    response = await setup.post()

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "endpoint_not_live"
    assert "until its owner restarts it" in response.json()["error"]["message"]
    assert setup.first.attempts + setup.second.attempts == 0


@pytest.mark.parametrize("state", [EndpointState.STOPPED, EndpointState.FAILED])
async def test_settled_endpoint_names_the_fix(setup: Setup, state: EndpointState) -> None:
    setup.route.state = state

    response = await setup.post()

    assert response.status_code == 503
    assert f"the endpoint is {state}" in response.json()["error"]["message"]
    assert "berth endpoint restart" in response.json()["error"]["message"]
    # Waiting does not help, so the response turns off the openai client's retries.
    assert response.headers["retry-after"] == "5"
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("state", [EndpointState.STOPPING, EndpointState.DELETING])
async def test_ending_endpoint_stops_client_retries(setup: Setup, state: EndpointState) -> None:
    setup.route.state = state

    response = await setup.post()

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["x-should-retry"] == "false"


async def test_pending_endpoint_has_retry_after(setup: Setup) -> None:
    setup.route.state = EndpointState.PENDING

    response = await setup.post()

    assert response.status_code == 503
    assert "not Live yet" in response.json()["error"]["message"]
    assert response.headers["retry-after"] == "5"
    assert "x-should-retry" not in response.headers


async def test_pending_endpoint_names_reason(setup: Setup) -> None:
    setup.route.state = EndpointState.PENDING
    setup.route.state_reason = capacity_wait_reason(instances=1, used=4, capacity=4)

    response = await setup.post()

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "endpoint_not_live"
    assert response.json()["error"]["message"] == (
        "the endpoint is Pending, not Live yet: waiting for 1 free instance slot "
        "(4 of 4 in use); stop or delete another endpoint to make room; "
        "try again once it is Live"
    )
    assert response.headers["retry-after"] == "5"
    assert "x-should-retry" not in response.headers


async def test_request_waits_for_a_ready_instance(setup: Setup) -> None:
    setup.route.upstreams.clear()

    async def instance_becomes_ready() -> None:
        await asyncio.sleep(0.1)
        changes = _Changes(
            seq=1,
            keys=[],
            endpoints=[],
            instances=[("c", ENDPOINT, InstanceState.READY, setup.second.address, "", False)],
        )
        setup.table._apply(changes)
        setup.table._changed.set()

    response, _none = await asyncio.gather(setup.post(), instance_becomes_ready())

    assert response.status_code == 200
    assert response.json()["served_by"] == setup.second.address


async def test_no_ready_instance_gives_503_after_wait(setup: Setup) -> None:
    setup.route.upstreams.clear()
    loop = asyncio.get_running_loop()
    started = loop.time()

    response = await setup.post()

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_ready_instance"
    assert loop.time() - started >= 0.5


async def test_broken_stream_ends_with_error_event(setup: Setup) -> None:
    setup.first.behaviour = setup.second.behaviour = "break-stream"

    response = await setup.post()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[0] == 'data: {"choices": []}'
    assert '"code":"instance_failed"' in events[-1]
    assert all(upstream.in_flight == 0 for upstream in setup.route.upstreams.values())


async def test_leaving_a_stream_closes_the_instance_connection(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # httpx's ASGI transport waits for the whole body, so this test speaks ASGI itself.
    setup.first.behaviour = setup.second.behaviour = "endless-stream"
    instances = (setup.first, setup.second)
    first_chunk = asyncio.Event()
    sent: list[dict[str, object]] = []
    body = json.dumps({"messages": [], "stream": True}).encode()
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, object]:
        if incoming:
            return incoming.pop()
        await first_chunk.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            first_chunk.set()

    await asyncio.wait_for(setup.gateway(_chat_scope(body), receive, send), timeout=5)

    async def closed() -> None:
        while sum(instance.closed_streams for instance in instances) < 1:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(closed(), timeout=5)
    assert sent[0]["status"] == 200
    assert all(upstream.in_flight == 0 for upstream in setup.route.upstreams.values())
    # A caller that leaves is not a server error.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_leaving_before_response_closes_instance_connection(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """A caller that leaves a request that is not a stream frees the instance too."""
    setup.first.behaviour = setup.second.behaviour = "silent"
    instances = (setup.first, setup.second)
    body = json.dumps({"messages": []}).encode()
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        if incoming:
            return incoming.pop()
        # The caller leaves once the instance has the request.
        while sum(instance.attempts for instance in instances) < 1:
            await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await asyncio.wait_for(setup.gateway(_chat_scope(body), receive, send), timeout=5)

    async def closed() -> None:
        while sum(instance.closed_waits for instance in instances) < 1:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(closed(), timeout=5)
    assert sent == []
    assert all(upstream.in_flight == 0 for upstream in setup.route.upstreams.values())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_odd_content_length_is_not_a_server_error(setup: Setup) -> None:
    response = await setup.client.post(
        f"/endpoints/{ENDPOINT}/v1/chat/completions",
        content=b"{}",
        headers={
            "Authorization": f"Bearer {KEY}",
            "Content-Type": "application/json",
            "Content-Length": "\u00b2".encode("latin-1"),  # type: ignore[dict-item]
        },
    )

    assert response.status_code < 500


async def test_unknown_endpoint_with_a_valid_key_is_named(setup: Setup) -> None:
    response = await setup.client.post(
        "/endpoints/00000000-0000-0000-0000-00000000dead/v1/embeddings",
        json={"input": "x"},
        headers={"Authorization": f"Bearer {KEY}"},
    )

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "unknown_endpoint"
    assert "00000000-0000-0000-0000-00000000dead" in error["message"]
    assert "Endpoint URLs take the endpoint's ID" in error["message"]


async def test_key_of_another_endpoint_is_rejected(setup: Setup) -> None:
    response = await setup.client.post(
        f"/endpoints/{ENDPOINT}/v1/embeddings",
        json={"input": "x"},
        headers={"Authorization": f"Bearer {OTHER_KEY}"},
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "wrong_endpoint_key"
    assert response.json()["error"]["message"] == (
        f"this API key belongs to endpoint {OTHER_ENDPOINT}, not {ENDPOINT}; "
        f"use a key of endpoint {ENDPOINT}"
    )
    assert OTHER_KEY not in response.text


async def test_disabled_tenant_gives_403(setup: Setup) -> None:
    setup.route.tenant_name = "research"
    setup.route.tenant_disabled = True

    rejected = await setup.post()
    without_key = await setup.client.post(
        f"/endpoints/{ENDPOINT}/v1/chat/completions", json={"messages": []}
    )
    setup.route.tenant_disabled = False
    served = await setup.post()

    assert rejected.status_code == 403
    assert rejected.json()["error"]["code"] == "tenant_disabled"
    assert "tenant 'research' of this endpoint is disabled" in rejected.json()["error"]["message"]
    assert "`berth tenant enable research`" in rejected.json()["error"]["message"]
    assert setup.first.attempts + setup.second.attempts == 1
    # A caller without a valid key learns nothing about the tenant.
    assert without_key.status_code == 401
    assert "research" not in without_key.text
    assert served.status_code == 200


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "has the scheme 'Basic' instead of 'Bearer'"),
        ({"Authorization": KEY}, "has no 'Bearer ' prefix;"),
        ({"Authorization": "Bearer "}, "missing API key: send the endpoint's key"),
        ({}, "missing API key: send the endpoint's key"),
    ],
)
async def test_missing_bearer_key_names_the_fix(
    setup: Setup, headers: dict[str, str], fragment: str
) -> None:
    response = await setup.client.post(
        f"/endpoints/{ENDPOINT}/v1/embeddings", json={"input": "x"}, headers=headers
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    assert fragment in response.json()["error"]["message"]
    assert KEY not in response.text
    assert "'Authorization: Bearer <key>'" in response.json()["error"]["message"]


async def test_two_authorization_headers_are_rejected(setup: Setup) -> None:
    response = await setup.client.post(
        f"/endpoints/{ENDPOINT}/v1/embeddings",
        json={"input": "x"},
        headers=[("Authorization", f"Bearer {KEY}"), ("Authorization", "Bearer other")],
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "repeated_authorization"
    assert "more than one Authorization header" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "code", "fragment"),
    [
        (
            [("key", KEY), ("key", OTHER_KEY)],
            "repeated_key_header",
            "more than one 'key' header",
        ),
        (
            [("key", KEY), ("key", KEY)],
            "repeated_key_header",
            "more than one 'key' header",
        ),
        (
            [("Authorization", f"Bearer {KEY}"), ("key", OTHER_KEY)],
            "conflicting_api_keys",
            "the Authorization header and the 'key' header contain different keys",
        ),
        (
            [("key", OTHER_KEY), ("Authorization", f"Bearer {KEY}")],
            "conflicting_api_keys",
            "the Authorization header and the 'key' header contain different keys",
        ),
    ],
)
async def test_ambiguous_key_headers_are_rejected(
    setup: Setup, headers: list[tuple[str, str]], code: str, fragment: str
) -> None:
    response = await setup.client.post(
        f"/endpoints/{ENDPOINT}/v1/embeddings", json={"input": "x"}, headers=headers
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert fragment in response.json()["error"]["message"]
    assert KEY not in response.text
    assert OTHER_KEY not in response.text


async def test_same_key_in_both_headers_is_accepted(setup: Setup) -> None:
    response = await setup.client.post(
        f"/endpoints/{ENDPOINT}/v1/embeddings",
        json={"input": "x"},
        headers=[("Authorization", f"Bearer {KEY}"), ("key", KEY)],
    )

    assert response.status_code == 200


async def test_missing_content_type_is_named(setup: Setup) -> None:
    response = await setup.client.post(
        f"/endpoints/{ENDPOINT}/v1/embeddings",
        content=b'{"input": "x"}',
        headers={"Authorization": f"Bearer {KEY}"},
    )

    assert response.status_code == 415
    assert response.json()["error"]["message"] == (
        "missing Content-Type header; send 'Content-Type: application/json'"
    )


async def test_unknown_route_lists_what_the_ml_app_serves(setup: Setup) -> None:
    setup.route.ml_app = MLApp.TEXT_EMBEDDING

    response = await setup.post("v1/images/generations")

    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert "/v1/embeddings" in message
    assert "/v1/chat/completions" not in message


async def test_oversized_body_gives_413(setup: Setup) -> None:
    response = await setup.client.post(
        f"/endpoints/{ENDPOINT}/v1/embeddings",
        json={"input": "x" * 5000},
        headers={"Authorization": f"Bearer {KEY}"},
    )

    assert response.status_code == 413
    assert "4096" in response.json()["error"]["message"]
    assert "BERTH_MAX_REQUEST_BYTES" in response.json()["error"]["message"]


async def test_deploying_endpoint_waits_for_an_instance(setup: Setup) -> None:
    setup.route.state = EndpointState.DEPLOYING
    setup.route.upstreams.clear()

    async def instance_becomes_ready() -> None:
        await asyncio.sleep(0.1)
        changes = _Changes(
            seq=1,
            keys=[],
            endpoints=[
                _EndpointChange(
                    ENDPOINT, EndpointState.LIVE, MLApp.ECHO, False, "", "default", False
                )
            ],
            instances=[("c", ENDPOINT, InstanceState.READY, setup.first.address, "", False)],
        )
        setup.table._apply(changes)
        setup.table._changed.set()

    response, _none = await asyncio.gather(setup.post(), instance_becomes_ready())

    assert response.status_code == 200
    assert response.json()["served_by"] == setup.first.address


async def test_deploying_endpoint_without_instance_is_not_live(setup: Setup) -> None:
    setup.route.state = EndpointState.DEPLOYING
    setup.route.state_reason = "0 of 2 instances ready"
    setup.route.upstreams.clear()

    response = await setup.post()

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "endpoint_not_live"
    assert (
        "is Deploying, not Live yet: 0 of 2 instances ready;"
        in (response.json()["error"]["message"])
    )
    assert response.headers["retry-after"] == "5"


async def _post_raw(setup: Setup, body: bytes) -> httpx.Response:
    return await setup.client.post(
        f"/endpoints/{ENDPOINT}/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )


# The first level is the object, so its array opens the second.
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 1500])
async def test_too_deep_body_gets_api_message(setup: Setup, depth: int) -> None:
    body = b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"

    response = await _post_raw(setup, body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    # The same message as the management API's for the same body.
    assert error["message"] == (
        f"request body is not valid JSON at character {13 + MAX_JSON_DEPTH - 1}: depth limit "
        f"exceeded, arrays and objects are nested more than {MAX_JSON_DEPTH} levels deep; "
        f"send JSON with at most {MAX_JSON_DEPTH} levels of nesting"
    )
    assert setup.first.attempts + setup.second.attempts == 0


async def test_body_at_depth_limit_is_forwarded(setup: Setup) -> None:
    depth = MAX_JSON_DEPTH - 1
    body = b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"

    response = await _post_raw(setup, body)

    assert response.status_code == 200, response.text


async def test_byte_order_mark_is_skipped(setup: Setup) -> None:
    # The management API skips a UTF-8 byte order mark too, as RFC 8259 allows.
    body = b'{"input": "x"}'

    response = await _post_raw(setup, codecs.BOM_UTF8 + body)

    assert response.status_code == 200, response.text
    forwarded = setup.first.last_request or setup.second.last_request
    assert forwarded.endswith(b"\r\n\r\n" + body)


async def test_failed_endpoint_names_reason_summary(setup: Setup) -> None:
    setup.route.state = EndpointState.FAILED
    setup.route.state_reason = failed_start_reason(
        3,
        "exited with status 1: FileNotFoundError: [Errno 2] No such file or directory: "
        "'/srv/berth/models/m1/config.json'",
    )

    response = await setup.post()

    assert response.status_code == 503
    message = response.json()["error"]["message"]
    assert message == (
        "the endpoint is Failed because an instance failed to start 3 times in a row, so it "
        "serves no requests until its owner fixes the cause and restarts it (berth endpoint "
        "restart, or Restart in the web UI); the owner finds the full reason in berth "
        "endpoint info"
    )
    assert "/srv/berth" not in message
    assert "FileNotFoundError" not in message


async def test_failed_endpoint_hides_unknown_reason(setup: Setup) -> None:
    setup.route.state = EndpointState.FAILED
    setup.route.state_reason = "connection to /var/run/secret.sock refused"

    response = await setup.post()

    assert response.status_code == 503
    message = response.json()["error"]["message"]
    assert message.startswith("the endpoint is Failed, so it serves no requests")
    assert "secret.sock" not in message


async def test_silent_instance_gets_504_naming_limit(setup: Setup) -> None:
    setup.first.behaviour = setup.second.behaviour = "silent"
    gateway = Gateway(setup.table, max_body_bytes=4096, timeout_s=0.5, no_instance_wait_s=0.5)
    transport = httpx.ASGITransport(gateway)

    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            response = await client.post(
                f"/endpoints/{ENDPOINT}/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=10,
            )
    finally:
        await gateway.close()

    assert response.status_code == 504
    message = response.json()["error"]["message"]
    assert "no data for 0.5 s" in message
    assert "BERTH_UPSTREAM_TIMEOUT_S" in message
