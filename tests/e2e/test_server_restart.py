"""Berth itself restarting: endpoints come back Live with the same keys."""

import os
import signal
from typing import Any

from berth.client import Client
from tests.e2e.conftest import chat, create_live, ready_pids, wait_until
from tests.support import BerthServer, pid_alive

RECOVERY_TIMEOUT_S = 60.0


def observe_until_ready(client: Client, endpoint_id: str, count: int) -> list[dict[str, Any]]:
    """Poll the endpoint until it is Live with `count` ready instances; return every reading."""
    readings: list[dict[str, Any]] = []

    def read() -> bool:
        info = client.get_endpoint(endpoint_id)
        readings.append(info)
        return info["state"] == "Live" and info["ready_instances"] == count

    wait_until(read, RECOVERY_TIMEOUT_S, f"{count} ready instances", interval_s=0.02)
    return readings


def test_killed_server_brings_endpoints_back(fresh_server: BerthServer) -> None:
    fresh_server.start()
    with fresh_server.client() as client:
        endpoint, first_key = create_live(client, "survivor", instances=2)
        extra = client.add_key(endpoint["id"], "second key")
        old_pids = wait_until(lambda: ready_pids(client, endpoint["id"], 2), 30, "2 instances")
        stopped, _key = create_live(client, "stays-stopped")
        client.stop_endpoint(stopped["id"])
        client.wait_for_state(stopped["id"], {"Stopped"}, timeout_s=30, poll_s=0.1)

    fresh_server.kill()
    # Instances die with the server, so none is left behind to serve stale state.
    for pid in old_pids:
        wait_until(lambda pid=pid: not pid_alive(pid), 10, f"orphan instance {pid} to end")

    fresh_server.start()
    with fresh_server.client() as client:
        new_pids = wait_until(
            lambda: ready_pids(client, endpoint["id"], 2), 60, "instances after the restart"
        )
        keys = {row["key"]: row["status"] for row in client.list_keys(endpoint["id"])}
        stopped_after = client.get_endpoint(stopped["id"])

    assert set(new_pids).isdisjoint(old_pids)
    assert keys == {first_key: "Active", extra["key"]: "Active"}
    assert chat(endpoint, first_key).status_code == 200
    assert chat(endpoint, extra["key"]).status_code == 200
    assert stopped_after["state"] == "Stopped"
    assert stopped_after["instance_list"] == []


def test_restart_is_not_live_before_ready(fresh_server: BerthServer) -> None:
    fresh_server.start()
    with fresh_server.client() as client:
        endpoint, _key = create_live(client, "comeback", instances=2)
        wait_until(lambda: ready_pids(client, endpoint["id"], 2), 30, "2 instances")

    fresh_server.kill()
    fresh_server.start()
    with fresh_server.client() as client:
        readings = observe_until_ready(client, endpoint["id"], 2)

    for reading in readings:
        if reading["state"] == "Live":
            assert reading["ready_instances"] >= 1, reading
    first = readings[0]
    if first["state"] == "Live":
        # Echo instances can be ready again before the first reading on a quick machine.
        assert first["ready_instances"] == 2, first
    else:
        # Otherwise the endpoint shows that it is deploying its instances again.
        assert first["state"] == "Deploying", first
        assert first["state_reason"].startswith("the server restarted"), first


def test_restart_keeps_restart_counts(fresh_server: BerthServer) -> None:
    fresh_server.start()
    with fresh_server.client() as client:
        endpoint, _key = create_live(client, "counted", instances=2)
        wait_until(lambda: ready_pids(client, endpoint["id"], 2), 30, "2 instances")

    fresh_server.stop()
    fresh_server.start()
    with fresh_server.client() as client:
        after_restart = observe_until_ready(client, endpoint["id"], 2)[-1]
        victim, other = after_restart["instance_list"]
        os.kill(victim["pid"], signal.SIGKILL)
        wait_until(
            lambda: (pids := ready_pids(client, endpoint["id"], 2)) and victim["pid"] not in pids,
            RECOVERY_TIMEOUT_S,
            "the killed instance to be restarted",
        )
        after_crash = {
            row["id"]: row for row in client.get_endpoint(endpoint["id"])["instance_list"]
        }

    # Starting the instances again after the server restart does not count as a restart.
    assert [row["restart_count"] for row in after_restart["instance_list"]] == [0, 0]
    # A crash of an instance still counts.
    assert after_crash[victim["id"]]["restart_count"] == 1
    assert after_crash[other["id"]]["restart_count"] == 0


def test_graceful_stop_ends_instances(fresh_server: BerthServer) -> None:
    fresh_server.start()
    with fresh_server.client() as client:
        endpoint, _key = create_live(client, "graceful", instances=2)
        pids = wait_until(lambda: ready_pids(client, endpoint["id"], 2), 30, "2 instances")

    status = fresh_server.stop()

    # uvicorn finishes its shutdown, then re-raises SIGTERM so the exit status shows why it ended.
    assert status in (0, -15)
    assert "Application shutdown complete" in fresh_server.log()
    for pid in pids:
        assert not pid_alive(pid)


def test_generated_admin_key_is_printed_once(fresh_server: BerthServer) -> None:
    del fresh_server.env["BERTH_ADMIN_KEY"]
    fresh_server.start()
    first_log = fresh_server.log()
    key = next(
        line.strip() for line in first_log.splitlines() if line.strip().startswith("berth_pk_")
    )
    fresh_server.stop()
    fresh_server.start()
    second_log = fresh_server.log()[len(first_log) :]

    with Client(server=fresh_server.url, api_key=key) as client:
        assert client.whoami()["user"]["name"] == "admin"
    assert key not in second_log
