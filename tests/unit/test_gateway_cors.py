"""CORS at the gateway: preflight responses, and the headers on every kind of response to
a browser app of an allowed origin, against stand-in instances on 127.0.0.1."""

import hashlib
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from berth.gateway.cors import DEFAULT_ALLOWED_HEADERS
from berth.gateway.proxy import Gateway
from berth.gateway.table import KeyEntry, Route, RoutingTable, Upstream
from berth.states import EndpointState, KeyStatus, MLApp
from tests.unit.test_gateway_forwarding import ENDPOINT, KEY, FakeInstance

pytestmark = pytest.mark.anyio

APP = "https://app.example.com"
OTHER_APP = "https://evil.example.com"
CHAT = f"/endpoints/{ENDPOINT}/v1/chat/completions"
BODY = {"messages": [{"role": "user", "content": "hi"}]}


class Harness:
    def __init__(self, instance: FakeInstance) -> None:
        self.instance = instance
        self.table = RoutingTable(database=None, sync_interval_s=0.2)  # type: ignore[arg-type]
        self.table.keys[hashlib.sha256(KEY.encode()).hexdigest()] = KeyEntry(
            "key-e1", ENDPOINT, KeyStatus.ACTIVE
        )
        route = Route(ENDPOINT, EndpointState.LIVE, MLApp.ECHO, False)
        route.upstreams = {"i0": Upstream("i0", instance.address)}
        self.table.routes[ENDPOINT] = route
        self.gateways: list[Gateway] = []
        self.clients: list[httpx.AsyncClient] = []

    def client(self, cors_origins: Sequence[str] = ()) -> httpx.AsyncClient:
        gateway = Gateway(
            self.table,
            max_body_bytes=4096,
            timeout_s=5,
            no_instance_wait_s=0.2,
            worker_label="w1",
            cors_origins=cors_origins,
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(gateway), base_url="http://gw")
        self.gateways.append(gateway)
        self.clients.append(client)
        return client


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    instance = FakeInstance()
    await instance.start()
    result = Harness(instance)
    try:
        yield result
    finally:
        for client in result.clients:
            await client.aclose()
        for gateway in result.gateways:
            await gateway.close()
        await instance.stop()


def _preflight_headers(origin: str, request_headers: str | None = None) -> dict[str, str]:
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    if request_headers is not None:
        headers["Access-Control-Request-Headers"] = request_headers
    return headers


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.startswith("access-control-")
    }


async def test_preflight_of_allowed_origin(harness: Harness) -> None:
    client = harness.client([APP])

    response = await client.options(
        CHAT, headers=_preflight_headers(APP, "authorization, content-type, x-stainless-os")
    )

    assert response.status_code == 204
    assert response.content == b""
    assert "content-length" not in response.headers
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["access-control-allow-methods"] == "GET, POST"
    assert (
        response.headers["access-control-allow-headers"]
        == "authorization, content-type, x-stainless-os"
    )
    assert response.headers["access-control-max-age"] == "7200"
    assert response.headers["vary"] == "origin"
    assert "access-control-allow-credentials" not in response.headers


async def test_preflight_any_origin(harness: Harness) -> None:
    client = harness.client(["*"])

    response = await client.options(CHAT, headers=_preflight_headers(OTHER_APP))

    assert response.status_code == 204
    assert response.headers.get_list("access-control-allow-origin") == ["*"]
    assert response.headers["access-control-allow-methods"] == "GET, POST"
    assert response.headers["access-control-allow-headers"] == DEFAULT_ALLOWED_HEADERS.decode()
    assert "vary" not in response.headers


@pytest.mark.parametrize(
    "requested",
    ["authorization, content-type\r\nx-injected: 1", "authorization;content-type", "a" * 3000],
)
async def test_preflight_unusual_request_headers(harness: Harness, requested: str) -> None:
    harness.client([APP])
    # Raw ASGI, because httpx does not send a header value with a line break.
    scope_headers = [
        (b"origin", APP.encode()),
        (b"access-control-request-method", b"POST"),
        (b"access-control-request-headers", requested.encode()),
    ]
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "OPTIONS", "path": CHAT, "headers": scope_headers}
    await harness.gateways[0](scope, receive, send)  # type: ignore[arg-type]

    assert sent[0]["status"] == 204
    headers = dict(sent[0]["headers"])  # type: ignore[call-overload]
    assert headers[b"access-control-allow-headers"] == DEFAULT_ALLOWED_HEADERS


async def test_preflight_of_other_origin_denied(harness: Harness) -> None:
    client = harness.client([APP])

    response = await client.options(CHAT, headers=_preflight_headers(OTHER_APP))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "cors_origin_not_allowed"
    assert "BERTH_CORS_ORIGINS" in response.json()["error"]["message"]
    assert _cors_headers(response) == {}


async def test_preflight_without_cors_unchanged(harness: Harness) -> None:
    client = harness.client()

    response = await client.options(CHAT, headers=_preflight_headers(APP))

    # The preflight carries no key, so the key check rejects it, as before CORS existed.
    assert response.status_code == 401
    assert _cors_headers(response) == {}
    assert "vary" not in response.headers


async def test_json_reply_to_allowed_origin(harness: Harness) -> None:
    client = harness.client([APP])

    response = await client.post(
        CHAT, json=BODY, headers={"Authorization": f"Bearer {KEY}", "Origin": APP}
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    exposed = response.headers["access-control-expose-headers"]
    assert {"x-berth-instance", "retry-after", "x-should-retry"} <= set(exposed.split(", "))
    assert response.headers["vary"] == "origin"
    assert response.headers["x-berth-instance"] == "i0"


async def test_reply_to_other_origin_has_no_cors(harness: Harness) -> None:
    client = harness.client([APP])

    response = await client.post(
        CHAT, json=BODY, headers={"Authorization": f"Bearer {KEY}", "Origin": OTHER_APP}
    )

    assert response.status_code == 200
    assert _cors_headers(response) == {}
    assert response.headers["vary"] == "origin"


async def test_stream_reply_to_allowed_origin(harness: Harness) -> None:
    harness.instance.behaviour = "break-stream"
    client = harness.client([APP])

    response = await client.post(
        CHAT, json=BODY, headers={"Authorization": f"Bearer {KEY}", "Origin": APP}
    )

    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["access-control-allow-origin"] == APP
    assert "x-berth-instance" in response.headers["access-control-expose-headers"]
    assert b"instance_failed" in response.content


async def test_gateway_errors_to_allowed_origin(harness: Harness) -> None:
    client = harness.client([APP])
    origin = {"Origin": APP}
    auth = {"Authorization": f"Bearer {KEY}", **origin}

    missing_key = await client.post(CHAT, json=BODY, headers=origin)
    unknown_route = await client.post(f"/endpoints/{ENDPOINT}/v1/nothing", json=BODY, headers=auth)
    harness.table.routes[ENDPOINT].state = EndpointState.STOPPED
    not_live = await client.post(CHAT, json=BODY, headers=auth)

    for response, status in ((missing_key, 401), (unknown_route, 404), (not_live, 503)):
        assert response.status_code == status
        assert response.headers.get_list("access-control-allow-origin") == [APP]
        assert "retry-after" in response.headers["access-control-expose-headers"]
    assert not_live.headers["retry-after"] == "5"


async def test_any_origin_on_every_reply(harness: Harness) -> None:
    client = harness.client(["*"])

    with_origin = await client.post(
        CHAT, json=BODY, headers={"Authorization": f"Bearer {KEY}", "Origin": OTHER_APP}
    )
    error = await client.post(CHAT, json=BODY, headers={"Origin": OTHER_APP})

    for response in (with_origin, error):
        assert response.headers.get_list("access-control-allow-origin") == ["*"]
        assert "x-berth-instance" in response.headers["access-control-expose-headers"]
        assert "vary" not in response.headers
    assert error.status_code == 401


async def test_cors_off_by_default(harness: Harness) -> None:
    client = harness.client()

    response = await client.post(
        CHAT, json=BODY, headers={"Authorization": f"Bearer {KEY}", "Origin": APP}
    )

    assert response.status_code == 200
    assert _cors_headers(response) == {}
    assert "vary" not in response.headers


async def test_response_headers_follow_origin(harness: Harness) -> None:
    harness.client(cors_origins=[APP])
    gateway = harness.gateways[0]

    allowed = dict(gateway.response_headers([(b"origin", APP.encode())]))
    other = dict(gateway.response_headers([(b"origin", OTHER_APP.encode())]))

    assert allowed[b"access-control-allow-origin"] == APP.encode()
    assert allowed[b"x-berth-worker"] == b"w1"
    assert b"access-control-allow-origin" not in other
    assert other[b"x-berth-worker"] == b"w1"
