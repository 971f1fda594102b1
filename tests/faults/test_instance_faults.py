"""Instance processes that die or hang under load.

Only requests that were in flight on the broken instance may fail, and each of them
must fail with the gateway's 502 `instance_failed` (or the same error as a stream's
last event). Every other request succeeds, the broken instance leaves routing, and it
is restarted.
"""

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import httpx
import pytest

from berth.client import Client
from tests.faults.conftest import LIVE_TIMEOUT_S, deploy_paced_echo, record, settled
from tests.faults.load import Figures, LoadGenerator
from tests.support import BerthServer, pid_alive, wait_until

THREADS = 4
RECOVERY_TIMEOUT_S = 60.0
WARM_UP_REQUESTS = 40
# With the default health checks (every 1 s, 2 s timeout, 3 failures) a hung instance
# is out of routing in about 8 s. This bound leaves room for a busy machine.
HUNG_DETECTION_BOUND_S = 15.0


def instance_failures_only(figures: Figures) -> None:
    """Check that every failure is the clear error of an instance that broke."""
    for outcome in figures.failed:
        assert outcome.result in ("http_502", "stream_error"), figures.summary()
        assert outcome.code == "instance_failed", figures.summary()
    # Each client thread has at most one request in flight.
    assert len(figures.failed) <= THREADS, figures.summary()


def replaced(client: Client, server: BerthServer, endpoint_id: str, old_pid: int) -> bool:
    info = settled(client, server, endpoint_id, 2)
    return bool(info) and old_pid not in {row["pid"] for row in info["instance_list"]}


@contextlib.contextmanager
def killed_afterwards(pid: int) -> Iterator[None]:
    """Make sure a stopped test instance does not outlive a failed test."""
    try:
        yield
    finally:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_killed_instance_under_load(fault_client: Client, fault_server: BerthServer) -> None:
    endpoint, key = deploy_paced_echo(fault_client, fault_server, "fault-kill", 2)
    victim = endpoint["instance_list"][0]
    load = LoadGenerator(
        endpoint["openai_base_url"], key, "SIGKILL 1 of 2 instances under load", threads=THREADS
    )

    with load:
        load.wait_for_requests(WARM_UP_REQUESTS)
        killed_at = time.monotonic()
        os.kill(victim["pid"], signal.SIGKILL)
        wait_until(
            lambda: fault_client.get_endpoint(endpoint["id"])["ready_instances"] == 1,
            10,
            "the killed instance to leave routing",
            interval_s=0.02,
        )
        out_of_routing_s = time.monotonic() - killed_at
        wait_until(
            lambda: replaced(fault_client, fault_server, endpoint["id"], victim["pid"]),
            RECOVERY_TIMEOUT_S,
            "the killed instance to be restarted",
        )
        restarted_s = time.monotonic() - killed_at
        load.wait_for_requests(len(load.figures.outcomes) + WARM_UP_REQUESTS)

    figures = record(load.figures)
    figures.notes["out of routing after s"] = round(out_of_routing_s, 2)
    figures.notes["serving again after s"] = round(restarted_s, 1)
    instance_failures_only(figures)
    restarted = next(
        row
        for row in fault_client.get_endpoint(endpoint["id"])["instance_list"]
        if row["id"] == victim["id"]
    )
    assert restarted["restart_count"] == 1
    # The instance is Ready again and still shows why it restarted.
    assert "SIGKILL" in restarted["last_error"]


@pytest.mark.timeout(180)
def test_stopped_instance_under_load(fault_client: Client, fault_server: BerthServer) -> None:
    endpoint, key = deploy_paced_echo(fault_client, fault_server, "fault-hang", 2)
    victim = endpoint["instance_list"][0]
    load = LoadGenerator(
        endpoint["openai_base_url"], key, "SIGSTOP 1 of 2 instances under load", threads=THREADS
    )

    with killed_afterwards(victim["pid"]), load:
        load.wait_for_requests(WARM_UP_REQUESTS)
        stopped_at = time.monotonic()
        os.kill(victim["pid"], signal.SIGSTOP)
        wait_until(
            lambda: fault_client.get_endpoint(endpoint["id"])["ready_instances"] == 1,
            HUNG_DETECTION_BOUND_S,
            "the hung instance to leave routing",
            interval_s=0.05,
        )
        detected_s = time.monotonic() - stopped_at
        wait_until(
            lambda: replaced(fault_client, fault_server, endpoint["id"], victim["pid"]),
            RECOVERY_TIMEOUT_S,
            "the hung instance to be restarted",
        )
        restarted_s = time.monotonic() - stopped_at
        load.wait_for_requests(len(load.figures.outcomes) + WARM_UP_REQUESTS)

    figures = record(load.figures)
    figures.notes["out of routing after s"] = round(detected_s, 1)
    figures.notes["serving again after s"] = round(restarted_s, 1)
    instance_failures_only(figures)
    # The healthy instance kept serving while the other one hung.
    during = [o for o in figures.outcomes if stopped_at + 1 < o.started < stopped_at + detected_s]
    assert any(outcome.ok for outcome in during)
    assert not pid_alive(victim["pid"])
    restarted = next(
        row
        for row in fault_client.get_endpoint(endpoint["id"])["instance_list"]
        if row["id"] == victim["id"]
    )
    assert restarted["restart_count"] == 1


def test_request_on_killed_idle_connection_retried(
    fault_client: Client, fault_server: BerthServer
) -> None:
    """A request that the gateway wrote on an idle connection to an instance that then
    died was never read by it, so it goes to the other instance instead of failing."""
    created = fault_client.create_endpoint("default", "fault-idle", "echo", instances=2)
    wait_until(
        lambda: settled(fault_client, fault_server, created["id"], 2),
        LIVE_TIMEOUT_S,
        "endpoint fault-idle to run 2 ready instances",
    )
    endpoint = fault_client.get_endpoint(created["id"])
    victim = endpoint["instance_list"][0]
    url = f"{endpoint['openai_base_url']}/chat/completions"
    headers = {"Authorization": f"Bearer {created['first_key']}"}
    body = {"messages": [{"role": "user", "content": "hello"}]}

    def post() -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            return client.post(url, json=body, headers=headers)

    # The gateway keeps an idle connection to each instance after these requests.
    warm_up = [post() for _ in range(4)]
    assert {r.headers["x-berth-instance"] for r in warm_up} == {
        row["id"] for row in endpoint["instance_list"]
    }

    with killed_afterwards(victim["pid"]), ThreadPoolExecutor(2) as pool:
        # A stopped instance reads nothing, so the request that the gateway routes to
        # it stays unread in the socket. Of two requests the gateway sends one to each
        # instance, because it picks the least busy one and alternates between equals.
        os.kill(victim["pid"], signal.SIGSTOP)
        first, second = pool.submit(post), pool.submit(post)
        done, _pending = wait([first, second], timeout=30, return_when=FIRST_COMPLETED)
        assert len(done) == 1
        # A request that the healthy instance serves after both were sent shows that
        # the gateway has written the other one to the stopped instance.
        assert post().status_code == 200
        # The kernel resets the connection that still contains the unread request. On a
        # slow machine the health checks may have found the stopped instance and killed
        # it already, which resets the connection in the same way.
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim["pid"], signal.SIGKILL)
        responses = [first.result(timeout=30), second.result(timeout=30)]

    assert [response.status_code for response in responses] == [200, 200], [
        response.text for response in responses
    ]
    assert {r.headers["x-berth-instance"] for r in responses} == {
        row["id"] for row in endpoint["instance_list"] if row["id"] != victim["id"]
    }
