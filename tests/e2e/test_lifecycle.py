"""Endpoint lifecycle with real instance processes: scale, crash, stop, delete."""

import os
import signal
from functools import partial
from typing import Any

import pytest

from berth.client import ApiError, Client
from tests.e2e.conftest import chat, create_live, ready_pids, wait_until
from tests.support import BerthServer, pid_alive


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().replace(b"\0", b" ").decode()


def test_two_instances_are_two_serving_processes(client: Client) -> None:
    endpoint, key = create_live(client, "life-two", instances=2)

    pids = wait_until(lambda: ready_pids(client, endpoint["id"], 2), 30, "2 ready instances")
    served_by = {chat(endpoint, key).headers["x-berth-instance"] for _ in range(6)}

    assert len(set(pids)) == 2
    for pid in pids:
        assert pid_alive(pid)
        assert "berth.runtime" in cmdline(pid)
    assert len(served_by) == 2


def test_scale_down_leaves_one_process(client: Client) -> None:
    endpoint, key = create_live(client, "life-shrink", instances=2)
    before = wait_until(lambda: ready_pids(client, endpoint["id"], 2), 30, "2 ready instances")

    client.update_endpoint(endpoint["id"], instances=1)

    after = wait_until(lambda: ready_pids(client, endpoint["id"], 1), 30, "1 ready instance")
    (removed,) = set(before) - set(after)
    wait_until(lambda: not pid_alive(removed), 30, f"removed instance {removed} to exit")
    assert chat(endpoint, key).status_code == 200


def test_killed_instance_is_replaced_while_live(client: Client) -> None:
    endpoint, key = create_live(client, "life-crash", instances=2)
    pids = wait_until(lambda: ready_pids(client, endpoint["id"], 2), 30, "2 ready instances")

    os.kill(pids[0], signal.SIGKILL)

    # The other instance keeps the endpoint serving while the killed one comes back.
    assert client.get_endpoint(endpoint["id"])["state"] == "Live"
    assert chat(endpoint, key).status_code == 200
    new_pids = wait_until(
        lambda: (p := ready_pids(client, endpoint["id"], 2)) and pids[0] not in p and p,
        60,
        "the killed instance to be replaced",
    )
    info = client.get_endpoint(endpoint["id"])
    assert info["state"] == "Live"
    assert sum(row["restart_count"] for row in info["instance_list"]) == 1
    assert pids[1] in new_pids


def test_stop_leaves_no_process_and_restart_serves(client: Client) -> None:
    endpoint, key = create_live(client, "life-stop", instances=2)
    pids = wait_until(lambda: ready_pids(client, endpoint["id"], 2), 30, "2 ready instances")

    client.stop_endpoint(endpoint["id"])
    stopped = client.wait_for_state(endpoint["id"], {"Stopped"}, timeout_s=60, poll_s=0.1)

    assert stopped["instance_list"] == []
    for pid in pids:
        wait_until(lambda pid=pid: not pid_alive(pid), 10, f"instance {pid} to exit")

    client.restart_endpoint(endpoint["id"])
    client.wait_for_state(endpoint["id"], {"Live"}, timeout_s=60, poll_s=0.1)
    assert wait_until(lambda: chat(endpoint, key).status_code == 200, 10, "restarted endpoint")


def test_wait_for_live_right_after_stop_raises(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, _ = create_live(client, "life-stop-race")
    accepted = client.stop_endpoint(endpoint["id"])
    # The stop's response shows the endpoint before the reconciler acts, so it is still
    # Live at the same generation, with the desired state stopped. The first poll reads
    # it, as a poll that comes before the reconciler's next step would.
    first_reads = [accepted]
    read_from_server = client.get_endpoint

    def get_endpoint(reference: str, project: str | None = None) -> dict[str, Any]:
        return first_reads.pop() if first_reads else read_from_server(reference, project)

    monkeypatch.setattr(client, "get_endpoint", get_endpoint)

    with pytest.raises(ApiError) as raised:
        client.wait_for_state(endpoint["id"], ["Live"], timeout_s=60, poll_s=0.1)

    assert accepted["state"] == "Live"
    assert accepted["desired_state"] == "stopped"
    assert accepted["observed_generation"] == accepted["generation"]
    assert first_reads == []
    assert raised.value.code == "endpoint_stopped"
    assert "berth endpoint restart life-stop-race" in raised.value.message
    stopped = client.wait_for_state(endpoint["id"], ["Stopped"], timeout_s=60, poll_s=0.1)
    assert stopped["state"] == "Stopped"


def test_delete_ends_processes_and_frees_name(server: BerthServer, client: Client) -> None:
    endpoint, _key = create_live(client, "life-delete")
    pids = wait_until(lambda: ready_pids(client, endpoint["id"], 1), 30, "1 ready instance")

    deleted = client.delete_endpoint(endpoint["id"])

    assert deleted["state"] == "Deleting"
    assert f"endpoint {endpoint['id']} (life-delete): Live -> Deleting, by user admin" in (
        server.log()
    )
    wait_until(lambda: not pid_alive(pids[0]), 30, "the instance of the deleted endpoint to exit")
    wait_until(
        lambda: f"endpoint {endpoint['id']} (life-delete) is deleted" in server.log(),
        30,
        "the log line of the finished deletion",
    )
    with pytest.raises(ApiError) as error:
        client.get_endpoint("life-delete")
    assert error.value.status == 404
    again = client.create_endpoint("default", "life-delete", "echo")
    assert again["id"] != endpoint["id"]


def test_model_swap_serves_new_model(client: Client) -> None:
    endpoint, key = create_live(client, "life-swap")
    old_instance = endpoint["instance_list"][0]["id"]

    client.restart_endpoint(endpoint["id"])

    def replaced() -> bool:
        info = client.get_endpoint(endpoint["id"])
        ids = [row["id"] for row in info["instance_list"]]
        return info["state"] == "Live" and len(ids) == 1 and old_instance not in ids

    wait_until(replaced, 60, "a fresh instance to replace the old one")
    assert chat(endpoint, key).status_code == 200


class InstancePeak:
    """Reads of an endpoint's instance list that record the maximum number of live instance
    processes."""

    def __init__(self, client: Client, endpoint_id: str) -> None:
        self.client = client
        self.endpoint_id = endpoint_id
        self.peak = 0

    def read(self) -> dict[str, Any]:
        info = self.client.get_endpoint(self.endpoint_id)
        alive = [row for row in info["instance_list"] if row["pid"] and pid_alive(row["pid"])]
        self.peak = max(self.peak, len(alive))
        return info

    def started(self, generation: int) -> bool:
        """Tell whether an instance of `generation` is listed."""
        return any(row["generation"] == generation for row in self.read()["instance_list"])


def test_quick_restarts_bound_instance_processes(client: Client) -> None:
    endpoint, key = create_live(client, "life-hurried", instances=2)
    peak = InstancePeak(client, endpoint["id"])

    # Each restart replaces the instances. The next one follows as soon as the
    # reconciler has started an instance of the new generation.
    for _ in range(4):
        generation = client.restart_endpoint(endpoint["id"])["generation"]
        wait_until(
            partial(peak.started, generation),
            30,
            f"an instance of generation {generation} to start",
        )

    def settled() -> bool:
        info = peak.read()
        rows = info["instance_list"]
        return info["state"] == "Live" and [row["generation"] for row in rows] == [generation] * 2

    wait_until(settled, 60, f"the endpoint to serve with 2 instances of generation {generation}")
    # The 2 old instances and the 2 of the newest generation, never the superseded ones.
    assert peak.peak <= 4
    assert chat(endpoint, key).status_code == 200


def test_endpoint_waits_pending_until_capacity_frees(fresh_server: BerthServer) -> None:
    fresh_server.env["BERTH_CAPACITY"] = "2"
    with fresh_server.start().client() as client:
        first, _key = create_live(client, "cap-first", instances=2)

        second = client.create_endpoint("default", "cap-second", "echo")
        waiting = wait_until(
            lambda: (
                (info := client.get_endpoint(second["id"]))["state"] == "Pending"
                and "waiting for 1 free instance slot (" in info["state_reason"]
                and info
            ),
            10,
            "the second endpoint to wait for capacity",
        )
        # The gateway loads the reason with its routes, some moments after the API has it.
        rejected = wait_until(
            lambda: (
                (response := chat(second, second["first_key"])).status_code == 503
                and "waiting for" in response.text
                and response
            ),
            10,
            "a 503 that names the missing instance slot",
        )
        with pytest.raises(ApiError) as too_many:
            client.create_endpoint("default", "cap-huge", "echo", instances=3)
        # A wait for Live gives up once the endpoint has lacked slots for 2 s.
        with pytest.raises(ApiError) as lacking:
            client.wait_for_state(second["id"], {"Live"}, timeout_s=60, poll_s=0.1)

        client.stop_endpoint(first["id"])
        client.wait_for_state(second["id"], {"Live"}, timeout_s=60, poll_s=0.1)

    assert waiting["instance_list"] == []
    assert rejected.json()["error"]["code"] == "endpoint_not_live"
    assert rejected.json()["error"]["message"].startswith(
        "the endpoint is Pending, not Live yet: waiting for 1 free instance slot (2 of 2 in use)"
    )
    assert rejected.headers["retry-after"] == "5"
    assert lacking.value.code == "insufficient_capacity"
    assert "waiting for 1 free instance slot" in lacking.value.message
    assert too_many.value.status == 422
    assert "1 to 2" in too_many.value.message
