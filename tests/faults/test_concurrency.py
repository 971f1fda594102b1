"""Concurrent changes to one endpoint, on SQLite and PostgreSQL, and several workers."""

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.faults.conftest import endpoint_generation, record, runtime_processes
from tests.faults.load import Figures, Outcome
from tests.support import ADMIN_KEY, BerthServer, wait_until

ROUNDS = 50
OPTIMISTIC_ROUNDS = 10


def patch(url: str, endpoint_id: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.patch(
        f"{url}/api/v1/endpoints/{endpoint_id}",
        json=body,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )


def concurrently(*calls: Any) -> list[httpx.Response]:
    """Run the calls at the same moment, one thread each, and return their responses."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait(timeout=10)
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def run_rounds(server: BerthServer, database_name: str) -> None:
    with server.client() as client:
        client.register_model("echo-b", "echo", description="a second echo model")
        endpoint = client.create_endpoint("default", "fault-race", "echo")
        client.stop_endpoint(endpoint["id"])
        start = client.get_endpoint(endpoint["id"])
        start_generation = endpoint_generation(server, endpoint["id"])

    figures = Figures(f"{ROUNDS} rounds of 2 concurrent updates ({database_name})")
    began = time.monotonic()
    for round_number in range(ROUNDS):
        started = time.monotonic()
        first, second = concurrently(
            lambda n=round_number: patch(server.url, endpoint["id"], {"description": f"round {n}"}),
            lambda n=round_number: patch(
                server.url,
                endpoint["id"],
                {"model": "echo-b" if n % 2 == 0 else "echo", "instances": 1 + n % 2},
            ),
        )
        for response in (first, second):
            result = "ok" if response.status_code == 200 else f"http_{response.status_code}"
            figures.outcomes.append(Outcome(started, time.monotonic(), False, result))
        assert first.status_code == 200, first.text
        assert second.status_code == 200, second.text
        # Each change is applied on top of the other, so each gets its own version.
        assert first.json()["version"] != second.json()["version"]
    figures.seconds = time.monotonic() - began
    record(figures)

    with server.client() as client:
        final = client.get_endpoint(endpoint["id"])
    last = ROUNDS - 1
    assert final["version"] == start["version"] + 2 * ROUNDS
    assert final["description"] == f"round {last}"
    assert final["model"]["name"] == ("echo-b" if last % 2 == 0 else "echo")
    assert final["instances"] == 1 + last % 2
    # Every model change raised the generation; none was lost to a concurrent write.
    assert endpoint_generation(server, endpoint["id"]) == start_generation + ROUNDS

    # New texts in every round: a request that changes nothing keeps the version, so it
    # would pass its version check whichever request came first.
    for round_number in range(OPTIMISTIC_ROUNDS):
        version = client_version(server, endpoint["id"])
        first, second = concurrently(
            lambda v=version, n=round_number: patch(
                server.url, endpoint["id"], {"description": f"a{n}", "version": v}
            ),
            lambda v=version, n=round_number: patch(
                server.url, endpoint["id"], {"description": f"b{n}", "version": v}
            ),
        )
        statuses = sorted([first.status_code, second.status_code])
        assert statuses == [200, 409], (first.text, second.text)
        rejected = first if first.status_code == 409 else second
        details = rejected.json()["error"]["details"]
        assert details["current_version"] == version + 1


def client_version(server: BerthServer, endpoint_id: str) -> int:
    with server.client() as client:
        return int(client.get_endpoint(endpoint_id)["version"])


@pytest.mark.timeout(240)
def test_concurrent_updates_on_sqlite(own_server: BerthServer) -> None:
    own_server.start()
    run_rounds(own_server, "SQLite")


@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_concurrent_updates_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    server = BerthServer(tmp_path / "home", BERTH_DATABASE_URL=postgres_url).start()
    try:
        run_rounds(server, "PostgreSQL")
    finally:
        server.stop()


def worker_processes(server: BerthServer) -> list[psutil.Process]:
    assert server.process is not None
    children = psutil.Process(server.process.pid).children()
    return [child for child in children if "berth.workers" in child.cmdline()]


# One client for all requests: creating a client per request costs tens of milliseconds.
HTTP = httpx.Client(timeout=30, trust_env=False)


def chat_on_new_connection(endpoint: dict[str, Any], key: str) -> httpx.Response:
    # "Connection: close" makes every request open a new connection, which the kernel
    # may hand to either worker.
    return HTTP.post(
        f"{endpoint['openai_base_url']}/chat/completions",
        json={"messages": [{"role": "user", "content": "hello"}]},
        headers={"Authorization": f"Bearer {key}", "Connection": "close"},
    )


@pytest.mark.timeout(240)
def test_revocation_reaches_every_worker(tmp_path: Path) -> None:
    server = BerthServer(tmp_path / "home", BERTH_WORKERS="2").start()
    try:
        assert len(worker_processes(server)) == 2
        with server.client() as client:
            created = client.create_endpoint("default", "fault-workers", "echo", instances=2)
            client.wait_for_state(created["id"], {"Live"}, timeout_s=60, poll_s=0.1)
            endpoint = client.get_endpoint(created["id"])
            key = created["first_key"]
            extra = client.add_key(endpoint["id"], "to revoke")

            # A new key, like a revocation, reaches the other worker within a sync interval.
            added_at = time.monotonic()
            accepted_by = set()
            # The kernel hands each new connection to whichever worker accepts first, and
            # a fast worker can take hundreds in a row, so the loop is bounded by time.
            while time.monotonic() - added_at < 15.0:
                response = chat_on_new_connection(endpoint, extra["key"])
                if time.monotonic() - added_at > 1.0:
                    assert response.status_code == 200, response.text
                if response.status_code == 200:
                    accepted_by.add(response.headers["x-berth-worker"])
                if len(accepted_by) == 2:
                    break
            assert accepted_by == {"0", "1"}

            client.revoke_key(endpoint["id"], extra["id"])
            revoked_at = time.monotonic()
            late: list[tuple[float, str, int]] = []
            while time.monotonic() - revoked_at < 1.5:
                response = chat_on_new_connection(endpoint, extra["key"])
                elapsed = time.monotonic() - revoked_at
                late.append(
                    (elapsed, response.headers.get("x-berth-worker", ""), response.status_code)
                )

        after_one_second = [entry for entry in late if entry[0] >= 1.0]
        accepted = [elapsed for elapsed, _worker, status in late if status == 200]
        assert after_one_second
        assert all(status == 401 for _elapsed, _worker, status in after_one_second)
        assert {worker for _elapsed, worker, _status in after_one_second} == {"0", "1"}
        # The reconciler ran once: two instances, not two per worker.
        wait_until(lambda: len(runtime_processes(server)) == 2, 10, "exactly 2 instances")

        figures = Figures("revoked key with 2 workers, 1.0-1.5 s after revoking (401 is ok)")
        figures.outcomes = [
            Outcome(elapsed, elapsed, False, "ok" if status == 401 else f"http_{status}")
            for elapsed, _worker, status in after_one_second
        ]
        figures.seconds = 0.5
        figures.notes["last accepted after s"] = round(max(accepted), 2) if accepted else "never"
        record(figures)

        # A worker that dies is replaced, and the other one serves meanwhile.
        (victim, _other) = worker_processes(server)
        victim.kill()
        wait_until(
            lambda: (
                len(worker_processes(server)) == 2
                and victim.pid not in {process.pid for process in worker_processes(server)}
            ),
            15,
            "the killed worker to be replaced",
        )
        wait_until(
            lambda: chat_on_new_connection(endpoint, key).status_code == 200,
            10,
            "requests to succeed after the worker restart",
        )
    finally:
        server.stop()
