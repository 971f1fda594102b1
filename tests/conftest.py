"""Fixtures shared by every test folder."""

import importlib.util
import os

import pytest

# Model libraries must never reach a hub from tests; everything loads from local paths.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once when CI requires the GGUF tests and llama-cpp-python is missing."""
    required = os.environ.get("BERTH_TEST_REQUIRE_GGUF") == "1"
    if required and importlib.util.find_spec("llama_cpp") is None:
        raise pytest.UsageError(
            "BERTH_TEST_REQUIRE_GGUF=1, but llama-cpp-python is not installed, so the GGUF "
            "tests would skip; install it with scripts/install.sh test,gguf"
        )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
