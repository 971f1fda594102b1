"""Registers the `bench` marker for the benchmark smoke test."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "bench: runs the benchmark suite once at its smallest size (deselect with -m 'not bench')",
    )
