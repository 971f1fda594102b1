"""Servers, endpoints and the figures report shared by the fault tests.

Every scenario sends its load to 127.0.0.1 only, through the echo model, whose
instances are paced (`echo_delay_ms`) so that requests are in flight whenever the test
changes or breaks something. Each scenario records its figures; the run prints them at
the end, and writes them as JSON to $BERTH_FAULT_FIGURES when that is set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select

from berth.client import Client
from berth.db.models import Endpoint
from tests.faults.load import Figures
from tests.support import (
    BerthServer,
    fresh_postgres_database,
    server_database,
    set_endpoint_settings,
    wait_until,
)

LIVE_TIMEOUT_S = 60.0
# Pause per streamed word: an 8-word request spends about 80 ms in its instance.
ECHO_DELAY_MS = 10

# (summary line, figures as JSON) of every scenario that ran, in order.
RECORDED: list[tuple[str, dict[str, object]]] = []


def record(figures: Figures) -> Figures:
    """Keep a scenario's figures for the report at the end of the run.

    The line is built when the report is printed, so notes added afterwards show too.
    """
    RECORDED.append((figures.scenario, {"figures": figures}))
    return figures


def record_line(scenario: str, line: str, data: dict[str, object]) -> None:
    """Keep a result that is not a load figure, such as a fuzzer's counts."""
    RECORDED.append((scenario, {"line": line, "data": data}))


def _rendered() -> list[tuple[str, dict[str, object]]]:
    rendered = []
    for scenario, entry in RECORDED:
        figures = entry.get("figures")
        if isinstance(figures, Figures):
            rendered.append((figures.summary(), figures.as_json()))
        else:
            line = f"{scenario}: {entry['line']}"
            rendered.append((line, {"scenario": scenario, **entry["data"]}))  # type: ignore[dict-item]
    return rendered


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RECORDED:
        return
    rendered = _rendered()
    terminalreporter.section("fault scenarios: requests sent and failed")
    for line, _data in rendered:
        terminalreporter.write_line(line)
    target = os.environ.get("BERTH_FAULT_FIGURES")
    if target:
        Path(target).write_text(json.dumps([data for _line, data in rendered], indent=2) + "\n")


@pytest.fixture(scope="session")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    """One server for the scenarios that do not stop or kill it."""
    home = tmp_path_factory.mktemp("faults") / "home"
    server = BerthServer(home, BERTH_CAPACITY="32").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fault_client(fault_server: BerthServer) -> Iterator[Client]:
    with fault_server.client() as client:
        yield client


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[BerthServer]:
    """A server for one test, which may kill it; stopped afterwards if still running."""
    server = BerthServer(tmp_path / "home", BERTH_CAPACITY="16")
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards; skipped when PostgreSQL is not
    reachable, unless BERTH_TEST_REQUIRE_POSTGRES=1."""
    yield from fresh_postgres_database("berth_faults")


def endpoint_generation(server: BerthServer, endpoint_id: str) -> int:
    database = server_database(server)
    try:
        with database.session() as session:
            return int(
                session.scalar(select(Endpoint.generation).where(Endpoint.id == endpoint_id))
            )
    finally:
        database.dispose()


def settled(
    client: Client, server: BerthServer, endpoint_id: str, count: int
) -> dict[str, Any] | None:
    """The endpoint once it is Live with exactly `count` ready instances of its current
    generation and no other open instance."""
    generation = endpoint_generation(server, endpoint_id)
    info = client.get_endpoint(endpoint_id)
    rows = info["instance_list"]
    if info["state"] != "Live" or len(rows) != count:
        return None
    if any(row["state"] != "Ready" or row["generation"] != generation for row in rows):
        return None
    return info


def deploy_paced_echo(
    client: Client,
    server: BerthServer,
    name: str,
    instances: int,
    delay_ms: float = ECHO_DELAY_MS,
    model: str = "echo",
) -> tuple[dict[str, Any], str]:
    """Create an echo endpoint whose instances pause `delay_ms` per streamed word.

    The API does not expose the echo_delay_ms setting, so the test writes it to the database
    and restarts the endpoint, which replaces its instances with paced ones.
    """
    created = client.create_endpoint("default", name, model, instances=instances)
    client.wait_for_state(created["id"], {"Live"}, timeout_s=LIVE_TIMEOUT_S, poll_s=0.1)
    set_endpoint_settings(server, created["id"], echo_delay_ms=delay_ms)
    client.restart_endpoint(created["id"])
    wait_until(
        lambda: settled(client, server, created["id"], instances),
        LIVE_TIMEOUT_S,
        f"endpoint {name} to run {instances} paced instances",
    )
    return client.get_endpoint(created["id"]), created["first_key"]


def runtime_processes(server: BerthServer) -> list[psutil.Process]:
    """Live instance processes that belong to this server's home folder."""
    owner = str(server.home.resolve())
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if "berth.runtime" not in (process.info.get("cmdline") or []):
            continue
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get("BERTH_INSTANCE_OWNER") == owner:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
