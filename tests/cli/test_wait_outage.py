"""The SDK's wait_for_state against a real server that stops and starts again, and on a
Stopped endpoint that cannot become Live by itself."""

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from berth import client as sdk
from berth.client import ApiError, ServerUnreachable
from tests.support import BerthServer, wait_until


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[BerthServer]:
    """A server of this test alone, because the test stops and starts it."""
    berth = BerthServer(tmp_path / "home")
    berth.start()
    yield berth
    berth.stop()


def test_wait_survives_server_restart(
    own_server: BerthServer, caplog: pytest.LogCaptureFixture
) -> None:
    with own_server.client() as client:
        endpoint = client.create_endpoint("default", "outage", "echo")
        client.wait_for_state(endpoint["id"], ["Live"], timeout_s=60)
        client.stop_endpoint(endpoint["id"])
        own_server.stop()

        outcome: dict[str, Any] = {}

        def wait() -> None:
            try:
                outcome["endpoint"] = client.wait_for_state(
                    endpoint["id"], ["Stopped"], timeout_s=120
                )
            except Exception as exc:  # reported by the asserts below
                outcome["error"] = exc

        caplog.set_level(logging.WARNING, logger="berth.client")
        waiter = threading.Thread(target=wait)
        waiter.start()
        wait_until(lambda: "retrying for up to" in caplog.text, 30, "a retry warning")
        own_server.start()
        waiter.join(timeout=60)

        assert not waiter.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert outcome["endpoint"]["state"] == "Stopped"
        assert "cannot reach the Berth server" in caplog.text


def test_wait_gives_up_after_retry_time(
    own_server: BerthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sdk, "WAIT_RETRY_S", 1.0)
    with own_server.client() as client:
        own_server.stop()
        with pytest.raises(ServerUnreachable, match="cannot reach the Berth server"):
            client.wait_for_state("missing", ["Live"], timeout_s=60)


def test_wait_for_live_on_stopped_fails_fast(own_server: BerthServer) -> None:
    with own_server.client() as client:
        endpoint = client.create_endpoint("default", "parked", "echo")
        client.wait_for_state(endpoint["id"], ["Live"], timeout_s=60)
        client.stop_endpoint(endpoint["id"])
        client.wait_for_state(endpoint["id"], ["Stopped"], timeout_s=60)

        started = time.monotonic()
        with pytest.raises(ApiError, match="is Stopped and stays so until it is started") as raised:
            client.wait_for_state(endpoint["id"], ["Live"], timeout_s=60)

        assert time.monotonic() - started < 10
        assert raised.value.code == "endpoint_stopped"
        assert "berth endpoint restart parked" in raised.value.message
        assert client.wait_for_state(endpoint["id"], ["Live", "Stopped"])["state"] == "Stopped"
