"""A Berth server shared by the end-to-end tests of one session, and helpers on top."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from berth.client import Client
from tests.support import BerthServer, wait_until

LIVE_TIMEOUT_S = 120.0


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    home = tmp_path_factory.mktemp("shared") / "home"
    # Many small echo endpoints share this server; give them room.
    berth = BerthServer(home, BERTH_CAPACITY="64").start()
    yield berth
    berth.stop()


@pytest.fixture(scope="session")
def client(server: BerthServer) -> Iterator[Client]:
    with server.client() as client:
        yield client


def wait_live(client: Client, endpoint: str, timeout_s: float = LIVE_TIMEOUT_S) -> dict[str, Any]:
    return client.wait_for_state(endpoint, {"Live"}, timeout_s=timeout_s, poll_s=0.1)


def create_live(
    client: Client, name: str, model: str = "echo", instances: int = 1
) -> tuple[dict[str, Any], str]:
    """Create an endpoint, wait until it is Live, and return it with its first key."""
    created = client.create_endpoint("default", name, model, instances=instances)
    return wait_live(client, created["id"]), created["first_key"]


def chat(
    endpoint: dict[str, Any], api_key: str, text: str = "hello", **headers: str
) -> httpx.Response:
    auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.post(
        f"{endpoint['openai_base_url']}/chat/completions",
        json={"messages": [{"role": "user", "content": text}]},
        headers={**auth, **headers},
        timeout=30,
    )


def ready_pids(client: Client, endpoint_id: str, count: int) -> list[int] | None:
    """Return the pids of the endpoint's instances once exactly `count` are ready."""
    info = client.get_endpoint(endpoint_id)
    ready = [row for row in info["instance_list"] if row["state"] == "Ready"]
    if info["state"] != "Live" or len(ready) != count or len(info["instance_list"]) != count:
        return None
    return [row["pid"] for row in ready]


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[BerthServer]:
    """A server of its own, for tests that stop or kill it."""
    berth = BerthServer(tmp_path / "home")
    yield berth
    if berth.process is not None and berth.process.poll() is None:
        berth.stop()


__all__ = ["chat", "create_live", "ready_pids", "wait_live", "wait_until"]
