"""Operator changes under steady load: none of them may fail a request.

Each test deploys a paced echo endpoint, starts the load, makes one change while
requests are in flight, waits until the endpoint has settled, lets the load run a
little longer, and then checks every request the load sent.
"""

import contextlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
import pytest

from berth.client import Client
from berth.hub.demo import build_demo_generation_model
from tests.faults.conftest import deploy_paced_echo, record, settled
from tests.faults.load import LoadGenerator
from tests.faults.marker_model import build_marker_model
from tests.support import BerthServer, pid_alive, wait_until

SETTLE_TIMEOUT_S = 60.0
# Text-generation instances import torch and load a model before they are ready, which
# takes several times as long as an echo instance on a busy 2-core machine.
MODEL_LOAD_TIMEOUT_S = 180.0
WARM_UP_REQUESTS = 40
# Marker word of each checkpoint of the model that the checkpoint move swaps.
CHECKPOINT_MARKERS = {"alpha": "a", "bravo": "b"}


def run_change(
    client: Client,
    server: BerthServer,
    endpoint: dict,
    key: str,
    scenario: str,
    change: Callable[[], object],
    settled_count: int,
    settle_timeout_s: float = SETTLE_TIMEOUT_S,
    markers: Mapping[str, str] | None = None,
) -> LoadGenerator:
    """Apply `change` under load and return the load once the endpoint has settled."""
    load = LoadGenerator(
        endpoint["openai_base_url"],
        key,
        scenario,
        # Long enough for the warm-up, the longest settling and the requests after it.
        max_seconds=settle_timeout_s + 60.0,
        markers=markers,
    )
    with load:
        load.wait_for_requests(WARM_UP_REQUESTS)
        changed_at = time.monotonic()
        change()
        wait_until(
            lambda: settled(client, server, endpoint["id"], settled_count),
            settle_timeout_s,
            f"{scenario}: the endpoint to settle",
        )
        settled_at = time.monotonic()
        # Keep the load going after the change, until the gateway has served some more.
        finished = len(load.figures.outcomes)
        load.wait_for_requests(finished + 2 * WARM_UP_REQUESTS)
    load.figures.notes["settled after s"] = round(settled_at - changed_at, 1)
    return load


def assert_no_failures(load: LoadGenerator) -> None:
    figures = record(load.figures)
    assert figures.sent > 2 * WARM_UP_REQUESTS
    assert figures.failed == [], figures.summary()


def test_scale_down_under_load(fault_client: Client, fault_server: BerthServer) -> None:
    endpoint, key = deploy_paced_echo(fault_client, fault_server, "fault-scale-down", 2)
    pids = {row["pid"] for row in endpoint["instance_list"]}

    load = run_change(
        fault_client,
        fault_server,
        endpoint,
        key,
        "scale 2->1 under load",
        lambda: fault_client.update_endpoint(endpoint["id"], instances=1),
        settled_count=1,
    )

    assert_no_failures(load)
    (kept,) = {row["pid"] for row in fault_client.get_endpoint(endpoint["id"])["instance_list"]}
    (removed,) = pids - {kept}
    wait_until(lambda: not pid_alive(removed), 30, f"the removed instance {removed} to exit")


def test_scale_up_under_load(fault_client: Client, fault_server: BerthServer) -> None:
    endpoint, key = deploy_paced_echo(fault_client, fault_server, "fault-scale-up", 1)

    load = run_change(
        fault_client,
        fault_server,
        endpoint,
        key,
        "scale 1->3 under load",
        lambda: fault_client.update_endpoint(endpoint["id"], instances=3),
        settled_count=3,
    )

    assert_no_failures(load)
    after = fault_client.get_endpoint(endpoint["id"])
    new_instances = {row["id"] for row in after["instance_list"]}
    served_late = {outcome.instance for outcome in load.figures.outcomes[-WARM_UP_REQUESTS:]}
    assert len(new_instances) == 3
    # The new instances take traffic once they are ready.
    assert len(served_late & new_instances) >= 2


def test_restart_replaces_instances_under_load(
    fault_client: Client, fault_server: BerthServer
) -> None:
    endpoint, key = deploy_paced_echo(fault_client, fault_server, "fault-restart", 2)
    before = {row["id"] for row in endpoint["instance_list"]}

    load = run_change(
        fault_client,
        fault_server,
        endpoint,
        key,
        "restart (new generation) under load",
        lambda: fault_client.restart_endpoint(endpoint["id"]),
        settled_count=2,
    )

    assert_no_failures(load)
    after = {row["id"] for row in fault_client.get_endpoint(endpoint["id"])["instance_list"]}
    assert after.isdisjoint(before)


def test_model_swap_under_load(fault_client: Client, fault_server: BerthServer) -> None:
    fault_client.register_model("echo-b", "echo", description="a second echo model")
    endpoint, key = deploy_paced_echo(fault_client, fault_server, "fault-swap", 2)

    load = run_change(
        fault_client,
        fault_server,
        endpoint,
        key,
        "model swap echo->echo-b under load",
        lambda: fault_client.update_endpoint(endpoint["id"], model="echo-b"),
        settled_count=2,
    )

    assert_no_failures(load)
    models = [outcome.model for outcome in load.figures.outcomes]
    assert models[0] == "echo"
    # The responses after the endpoint settled all come from the new model.
    assert models[-WARM_UP_REQUESTS:] == ["echo-b"] * WARM_UP_REQUESTS


@pytest.fixture(scope="module")
def marker_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of the two checkpoints by name; each always replies with its marker word."""
    root = tmp_path_factory.mktemp("checkpoints")
    demo = build_demo_generation_model(root / "demo")
    return {
        checkpoint: build_marker_model(demo, root / checkpoint, word)
        for word, checkpoint in CHECKPOINT_MARKERS.items()
    }


@pytest.mark.timeout(600)
def test_checkpoint_move_under_load(
    fault_client: Client, fault_server: BerthServer, marker_checkpoints: dict[str, Path]
) -> None:
    for checkpoint, folder in marker_checkpoints.items():
        fault_client.import_model(str(folder), "fault-marker", checkpoint=checkpoint)
    created = fault_client.create_endpoint(
        "default", "fault-checkpoint", "fault-marker:a", instances=2
    )
    fault_client.wait_for_state(created["id"], {"Live"}, timeout_s=MODEL_LOAD_TIMEOUT_S, poll_s=0.1)
    endpoint = wait_until(
        lambda: settled(fault_client, fault_server, created["id"], 2),
        MODEL_LOAD_TIMEOUT_S,
        "the endpoint to run 2 instances of checkpoint a",
    )
    before = {row["id"] for row in endpoint["instance_list"]}
    assert endpoint["checkpoint"]["name"] == "a"

    load = run_change(
        fault_client,
        fault_server,
        endpoint,
        created["first_key"],
        "checkpoint move a->b under load",
        lambda: fault_client.update_endpoint(endpoint["id"], model="fault-marker:b"),
        settled_count=2,
        settle_timeout_s=MODEL_LOAD_TIMEOUT_S,
        markers=CHECKPOINT_MARKERS,
    )

    assert_no_failures(load)
    after = fault_client.get_endpoint(endpoint["id"])
    assert after["model"]["name"] == "fault-marker"
    assert after["checkpoint"]["name"] == "b"
    assert after["generation"] == endpoint["generation"] + 1
    assert {row["id"] for row in after["instance_list"]}.isdisjoint(before)
    checkpoints = [outcome.checkpoint for outcome in load.figures.outcomes]
    assert checkpoints[0] == "a"
    # The responses after the endpoint settled all come from checkpoint b.
    assert checkpoints[-WARM_UP_REQUESTS:] == ["b"] * WARM_UP_REQUESTS
    # Both instances of checkpoint b served some of them.
    served_late = {outcome.instance for outcome in load.figures.outcomes[-WARM_UP_REQUESTS:]}
    assert served_late == {row["id"] for row in after["instance_list"]}


def test_delete_lets_streams_finish(fault_client: Client, fault_server: BerthServer) -> None:
    # Streams of 40 words at 50 ms each last about 2 s, well inside the delete drain (5 s).
    endpoint, key = deploy_paced_echo(fault_client, fault_server, "fault-delete", 2, delay_ms=50)
    pids = [row["pid"] for row in endpoint["instance_list"]]
    load = LoadGenerator(
        endpoint["openai_base_url"], key, "delete with streams in flight", words=40
    )

    with load:
        load.wait_for_requests(4)
        # The load sends nothing new from here on; the requests in flight go on.
        load.halt()
        deleted_at = time.monotonic()
        fault_client.delete_endpoint(endpoint["id"])
    figures = record(load.figures)
    in_flight = [o for o in figures.outcomes if o.started < deleted_at < o.ended]
    figures.notes["in flight at delete"] = len(in_flight)

    assert in_flight, "no request was in flight when the endpoint was deleted"
    assert figures.failed == [], figures.summary()
    for pid in pids:
        wait_until(lambda pid=pid: not pid_alive(pid), 30, f"instance {pid} to exit")
    rejected = httpx.post(
        f"{endpoint['openai_base_url']}/chat/completions",
        json={"messages": [{"role": "user", "content": "late"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert rejected.status_code == 401


def test_scale_down_lets_streams_finish(fault_client: Client, fault_server: BerthServer) -> None:
    endpoint, key = deploy_paced_echo(fault_client, fault_server, "fault-drain", 2, delay_ms=50)
    url = f"{endpoint['openai_base_url']}/chat/completions"
    headers = {"Authorization": f"Bearer {key}"}
    # 40 words at 50 ms: each stream lasts about 2 s, longer than the drain grace (1 s).
    text = " ".join(f"w{index}" for index in range(40))
    body = {"messages": [{"role": "user", "content": text}], "stream": True}

    # Open one long stream on each instance, then remove one of the two instances.
    with httpx.Client(timeout=30, trust_env=False) as http, contextlib.ExitStack() as streams:
        responses = [
            streams.enter_context(http.stream("POST", url, json=body, headers=headers))
            for _ in range(2)
        ]
        served_by = {response.headers["x-berth-instance"] for response in responses}
        fault_client.update_endpoint(endpoint["id"], instances=1)
        texts = [response.read().decode() for response in responses]

    assert len(served_by) == 2
    for streamed in texts:
        assert streamed.rstrip().endswith("data: [DONE]")
        assert '"error"' not in streamed
    wait_until(
        lambda: settled(fault_client, fault_server, endpoint["id"], 1),
        SETTLE_TIMEOUT_S,
        "one instance",
    )
