"""Checks of the Python SDK's arguments that need no server."""

import pytest

from berth.client import Client


def test_wait_for_an_unknown_state_fails_at_once() -> None:
    # Nothing listens on this port; the check comes before any request.
    client = Client(server="http://127.0.0.1:9", api_key="unused")
    try:
        with pytest.raises(ValueError, match=r"unknown endpoint state 'Bogus'; wait for one of"):
            client.wait_for_state("chat", ["Live", "Bogus"], timeout_s=60)
    finally:
        client.close()
