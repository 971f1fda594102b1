"""BERTH_CORS_ORIGINS on a real server: the gateway takes part in CORS, the API does not."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import BerthServer

APP = "http://localhost:3000"
ENDPOINT_URL = "/endpoints/00000000-0000-0000-0000-00000000c0de/v1/chat/completions"


@pytest.fixture
def cors_server(tmp_path: Path) -> Iterator[BerthServer]:
    berth = BerthServer(tmp_path / "home", BERTH_CORS_ORIGINS=APP).start()
    yield berth
    berth.stop()


def test_gateway_cors_on_real_server(cors_server: BerthServer) -> None:
    with httpx.Client(base_url=cors_server.url, timeout=10) as http:
        preflight = http.options(
            ENDPOINT_URL,
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        no_key = http.post(ENDPOINT_URL, json={}, headers={"Origin": APP})
        api = http.get("/api/v1/health", headers={"Origin": APP})
        api_preflight = http.options(
            "/api/v1/health", headers={"Origin": APP, "Access-Control-Request-Method": "GET"}
        )

    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == APP
    assert preflight.headers["access-control-allow-headers"] == "authorization, content-type"
    assert no_key.status_code == 401
    assert no_key.headers["access-control-allow-origin"] == APP
    assert "access-control-allow-origin" not in api.headers
    assert "access-control-allow-origin" not in api_preflight.headers
