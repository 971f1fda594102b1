"""Each instance gets its share of the machine's cores and its OpenMP wait settings."""

import os
from pathlib import Path

import pytest

from berth.client import Client
from berth.reconciler.loop import threads_per_instance
from tests.e2e.conftest import create_live, ready_pids, wait_until


def _environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {name.decode(): value.decode() for name, _, value in pairs}


@pytest.mark.parametrize("instances", [1, 2])
def test_instances_share_the_cores(client: Client, instances: int) -> None:
    endpoint, _key = create_live(client, f"threads-{instances}", instances=instances)
    pids = wait_until(
        lambda: ready_pids(client, endpoint["id"], instances), 60, "all instances ready"
    )
    cores = len(os.sched_getaffinity(0))
    # A value set in the server's environment wins; the test server inherits ours.
    expected = os.environ.get("OMP_NUM_THREADS", str(max(1, cores // instances)))

    for pid in pids:
        assert _environment(pid)["OMP_NUM_THREADS"] == expected


def test_threads_per_instance_shares_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})

    assert threads_per_instance(1) == 4
    assert threads_per_instance(2) == 2
    assert threads_per_instance(3) == 1
    assert threads_per_instance(8) == 1


@pytest.mark.parametrize(
    ("model", "spin_count"), [("echo", "10000"), ("demo-tiny-llama", "300000")]
)
def test_openmp_spin_count_depends_on_the_ml_app(
    client: Client, model: str, spin_count: str
) -> None:
    endpoint, _key = create_live(client, f"threads-spin-{model}", model=model)
    (pid,) = wait_until(lambda: ready_pids(client, endpoint["id"], 1), 60, "instance ready")

    environment = _environment(pid)

    assert environment["OMP_WAIT_POLICY"] == os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    # Generation spins longer: it runs many short parallel regions per token.
    assert environment["GOMP_SPINCOUNT"] == os.environ.get("GOMP_SPINCOUNT", spin_count)
