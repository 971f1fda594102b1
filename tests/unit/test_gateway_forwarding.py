"""The gateway's forwarding rules, with instances replaced by an httpx mock transport.

A request that never reached an instance is retried once on another. A request that
reached an instance is never sent again, and a stream that breaks off ends with an
error event.
"""

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route as StarletteRoute

from berth.gateway.proxy import METHODS, Gateway
from berth.gateway.table import KeyEntry, Route, RoutingTable, Upstream, _Changes
from berth.states import EndpointState, InstanceState, KeyStatus, MLApp

pytestmark = pytest.mark.anyio

KEY = "berth_ek_unit-test-key"
ENDPOINT = "00000000-0000-0000-0000-0000000000e1"
FIRST = "127.0.0.1:1001"
SECOND = "127.0.0.1:1002"


class BrokenStream(httpx.AsyncByteStream):
    """An event stream that sends one event and then loses its connection."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'data: {"choices": []}\n\n'
        raise httpx.ReadError("connection reset by peer")


@dataclass
class Instances:
    """What each fake instance address does with a request, and what each one received."""

    behaviour: dict[str, str] = field(default_factory=dict)
    attempts: list[str] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        address = f"{request.url.host}:{request.url.port}"
        self.attempts.append(address)
        behaviour = self.behaviour.get(address, "ok")
        if behaviour == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        if behaviour == "drop":
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if behaviour == "break-stream":
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, stream=BrokenStream()
            )
        return httpx.Response(200, json={"served_by": address})


@dataclass
class Setup:
    table: RoutingTable
    instances: Instances
    client: httpx.AsyncClient

    @property
    def route(self) -> Route:
        return self.table.routes[ENDPOINT]

    async def post(self, path: str = "v1/chat/completions", **kwargs: object) -> httpx.Response:
        return await self.client.post(
            f"/endpoints/{ENDPOINT}/{path}",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {KEY}"},
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
def setup() -> Iterator[Setup]:
    table = RoutingTable(database=None, sync_interval_s=0.2)  # type: ignore[arg-type]
    table.keys[hashlib.sha256(KEY.encode()).hexdigest()] = KeyEntry(
        "key-1", ENDPOINT, KeyStatus.ACTIVE
    )
    table.routes[ENDPOINT] = Route(
        ENDPOINT,
        EndpointState.LIVE,
        MLApp.ECHO,
        deleted=False,
        upstreams={"a": Upstream("a", FIRST), "b": Upstream("b", SECOND)},
    )
    instances = Instances()
    gateway = Gateway(
        table,
        max_body_bytes=4096,
        timeout_s=5,
        no_instance_wait_s=0.5,
        transport=httpx.MockTransport(instances.handle),
    )
    app = Starlette(
        routes=[
            StarletteRoute("/endpoints/{endpoint_id}/{path:path}", gateway.handle, methods=METHODS)
        ]
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway")
    yield Setup(table, instances, client)


async def test_refused_connection_retried_elsewhere(setup: Setup) -> None:
    setup.instances.behaviour[FIRST] = "refuse"
    # Round-robin position that makes the first request pick FIRST.
    setup.route.turn = 1

    responses = [await setup.post() for _ in range(4)]

    assert [response.status_code for response in responses] == [200] * 4
    assert all(response.json()["served_by"] == SECOND for response in responses)
    assert setup.instances.attempts[:2] == [FIRST, SECOND]
    # The refusing instance is then skipped for a while.
    assert setup.instances.attempts.count(FIRST) == 1


async def test_delivered_request_not_replayed(setup: Setup) -> None:
    setup.instances.behaviour[FIRST] = "drop"
    setup.instances.behaviour[SECOND] = "drop"

    response = await setup.post()

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "instance_failed"
    assert len(setup.instances.attempts) == 1


async def test_two_refusals_give_503(setup: Setup) -> None:
    setup.instances.behaviour[FIRST] = "refuse"
    setup.instances.behaviour[SECOND] = "refuse"

    response = await setup.post()

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert sorted(setup.instances.attempts) == [FIRST, SECOND]


async def test_updating_endpoint_is_served(setup: Setup) -> None:
    setup.route.state = EndpointState.UPDATING

    response = await setup.post()

    assert response.status_code == 200


async def test_stopping_endpoint_is_not_served(setup: Setup) -> None:
    setup.route.state = EndpointState.STOPPING

    response = await setup.post()

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "endpoint_not_live"


async def test_request_waits_for_a_ready_instance(setup: Setup) -> None:
    setup.route.upstreams.clear()

    async def instance_becomes_ready() -> None:
        await asyncio.sleep(0.1)
        changes = _Changes(
            seq=1,
            keys=[],
            endpoints=[],
            instances=[("c", ENDPOINT, InstanceState.READY, SECOND, False)],
        )
        setup.table._apply(changes)
        setup.table._changed.set()

    response, _none = await asyncio.gather(setup.post(), instance_becomes_ready())

    assert response.status_code == 200
    assert response.json()["served_by"] == SECOND


async def test_no_ready_instance_gives_503_after_wait(setup: Setup) -> None:
    setup.route.upstreams.clear()
    loop = asyncio.get_running_loop()
    started = loop.time()

    response = await setup.post()

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_ready_instance"
    assert loop.time() - started >= 0.5


async def test_broken_stream_ends_with_error_event(setup: Setup) -> None:
    setup.instances.behaviour[FIRST] = "break-stream"
    setup.instances.behaviour[SECOND] = "break-stream"

    response = await setup.post()

    assert response.status_code == 200
    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[0] == 'data: {"choices": []}'
    assert '"code":"instance_failed"' in events[-1]
    assert all(upstream.in_flight == 0 for upstream in setup.route.upstreams.values())


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
