"""Fixtures shared by every test folder."""

import os

import pytest

# Model libraries must never reach a hub from tests; everything loads from local paths.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
