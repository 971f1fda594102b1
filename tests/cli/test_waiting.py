"""Tests of when `--wait` counts a change as done or failed, on made-up endpoint JSON.

On a real server these cases are races: right after a change request, the state still
reads what it read before, until the reconciler acts.
"""

from typing import Any

import pytest

from berth import client as sdk
from berth.cli import waiting
from berth.cli.output import CliError
from berth.cli.waiting import LIVE, STOPPED, Goal, is_reached, wait_for_goal
from berth.client import ServerUnreachable
from berth.states import (
    capacity_wait_reason,
    changed_files_error,
    unavailable_files_error,
    waits_for_capacity,
)


def endpoint_json(
    state: str,
    ready: int = 0,
    instances: int = 1,
    generations: tuple[int, ...] = (),
    reason: str = "",
) -> dict[str, Any]:
    return {
        "id": "endpoint-id",
        "name": "made-up",
        "state": state,
        "state_reason": reason,
        "desired_state": "stopped" if state in ("Stopping", "Stopped") else "running",
        "instances": instances,
        "generation": max(generations, default=1),
        "ready_instances": ready,
        "instance_list": [
            {"id": f"instance-{index}", "generation": generation, "state": "Ready"}
            for index, generation in enumerate(generations)
        ],
    }


class ScriptedClient:
    """Stand-in for Client whose get_endpoint returns the prepared endpoints in order,
    then the last one again."""

    def __init__(self, *responses: dict[str, Any]) -> None:
        self.responses = list(responses)
        self.calls = 0

    def get_endpoint(self, endpoint: str, project: str | None = None) -> dict[str, Any]:
        response = self.responses[min(self.calls, len(self.responses) - 1)]
        self.calls += 1
        return response


@pytest.fixture(autouse=True)
def no_poll_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "POLL_INTERVAL_S", 0.0)


def run_wait(client: ScriptedClient, goal: Goal, timeout_s: float = 5.0) -> dict[str, Any]:
    return wait_for_goal(client, endpoint_json("Pending"), goal, timeout_s)  # type: ignore[arg-type]


def test_live_with_old_generation_not_reached() -> None:
    goal = Goal(LIVE, newer_than_generation=1)

    assert not is_reached(endpoint_json(LIVE, ready=1, generations=(1,)), goal)
    assert not is_reached(endpoint_json(LIVE, ready=2, instances=2, generations=(1, 2)), goal)
    assert is_reached(endpoint_json(LIVE, ready=1, generations=(2,)), goal)


def test_live_before_scaling_not_reached() -> None:
    scale_up = endpoint_json(LIVE, ready=1, instances=2, generations=(1,))
    scale_down = endpoint_json(LIVE, ready=2, instances=1, generations=(1, 1))

    assert not is_reached(scale_up, Goal(LIVE))
    assert not is_reached(scale_down, Goal(LIVE))


def test_stopped_goal_reached() -> None:
    assert is_reached(endpoint_json(STOPPED), Goal(STOPPED))
    assert not is_reached(endpoint_json("Stopping"), Goal(STOPPED))


def test_stale_failure_ignored_until_redeploy() -> None:
    client = ScriptedClient(
        endpoint_json("Failed", reason="old failure"),
        endpoint_json("Deploying"),
        endpoint_json(LIVE, ready=1, generations=(3,)),
    )

    result = run_wait(client, Goal(LIVE, failed_before_change=True))

    assert result["state"] == LIVE
    assert client.calls == 3


def test_failure_after_redeploy_raises() -> None:
    client = ScriptedClient(
        endpoint_json("Failed", reason="old failure"),
        endpoint_json("Deploying"),
        endpoint_json("Failed", reason="exited with status 1"),
    )

    with pytest.raises(CliError, match="endpoint 'made-up' failed: exited with status 1"):
        run_wait(client, Goal(LIVE, failed_before_change=True))


def test_fresh_failure_raises_at_once() -> None:
    client = ScriptedClient(endpoint_json("Failed", reason="no such model file"))

    with pytest.raises(CliError, match="failed: no such model file"):
        run_wait(client, Goal(LIVE))
    assert client.calls == 1


def test_deleted_while_waiting_raises() -> None:
    client = ScriptedClient(endpoint_json("Deleting", reason="marked for deletion"))

    with pytest.raises(CliError, match="was deleted while waiting"):
        run_wait(client, Goal(LIVE))


def test_stop_goal_waits_through_failed() -> None:
    client = ScriptedClient(endpoint_json("Failed", reason="crashed"), endpoint_json(STOPPED))

    result = run_wait(client, Goal(STOPPED))

    assert result["state"] == STOPPED


def test_timeout_names_state_and_reason() -> None:
    client = ScriptedClient(endpoint_json("Pending", reason="waiting for 2 free instance slots"))

    with pytest.raises(CliError) as raised:
        run_wait(client, Goal(LIVE), timeout_s=0)

    message = str(raised.value)
    assert message.startswith("timed out after 0 s waiting for endpoint 'made-up' to be Live")
    assert "Pending (waiting for 2 free instance slots)" in message


def test_timeout_after_scale_down_counts_draining() -> None:
    client = ScriptedClient(endpoint_json(LIVE, ready=2, instances=1, generations=(1, 1)))

    with pytest.raises(CliError) as raised:
        run_wait(client, Goal(LIVE), timeout_s=0)

    assert "it is Live, 1 of 1 instances ready, 1 draining." in str(raised.value)


def test_waits_for_capacity_reads_reason() -> None:
    assert waits_for_capacity("Pending", capacity_wait_reason(8, 1, 8))
    assert waits_for_capacity("Pending", capacity_wait_reason(1, 4, 4))
    assert not waits_for_capacity("Pending", "queued for deployment")
    assert not waits_for_capacity("Deploying", capacity_wait_reason(8, 1, 8))


def test_lack_of_slots_stops_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "CAPACITY_CONFIRM_S", 0.0)
    reason = capacity_wait_reason(8, 1, 8)
    client = ScriptedClient(endpoint_json("Pending", instances=8, reason=reason))

    with pytest.raises(CliError) as raised:
        run_wait(client, Goal(LIVE), timeout_s=600)

    message = str(raised.value)
    assert message.startswith(f"stopped waiting: endpoint 'made-up' is Pending, {reason}.")
    assert "starts by itself once enough slots are free" in message
    assert "stop another endpoint (`berth endpoint stop NAME`)" in message
    assert "`berth endpoint update made-up --instances N`" in message
    assert client.calls == 1


def test_brief_lack_of_slots_keeps_waiting() -> None:
    # A reason read right after a change may predate it, so one such read is not enough.
    client = ScriptedClient(
        endpoint_json("Pending", reason=capacity_wait_reason(1, 8, 8)),
        endpoint_json("Deploying"),
        endpoint_json(LIVE, ready=1, generations=(1,)),
    )

    result = run_wait(client, Goal(LIVE))

    assert result["state"] == LIVE


def test_queued_endpoint_keeps_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "CAPACITY_CONFIRM_S", 0.0)
    client = ScriptedClient(
        endpoint_json("Pending", reason="queued for deployment"),
        endpoint_json(LIVE, ready=1, generations=(1,)),
    )

    result = run_wait(client, Goal(LIVE))

    assert result["state"] == LIVE


def test_lack_of_slots_single_instance_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "CAPACITY_CONFIRM_S", 0.0)
    reason = capacity_wait_reason(1, 8, 8)
    client = ScriptedClient(endpoint_json("Pending", instances=1, reason=reason))

    with pytest.raises(CliError) as raised:
        run_wait(client, Goal(LIVE), timeout_s=600)

    # One instance cannot be lowered, so only stopping another endpoint is suggested.
    message = str(raised.value)
    assert "stop another endpoint (`berth endpoint stop NAME`)" in message
    assert "--instances" not in message
    assert "lower this endpoint's instances" not in reason
    assert "lower this endpoint's instances" in capacity_wait_reason(2, 7, 8)


class UnreachableFirst(ScriptedClient):
    """ScriptedClient whose first `failures` calls raise ServerUnreachable."""

    def __init__(self, failures: int, *responses: dict[str, Any]) -> None:
        super().__init__(*responses)
        self.failures = failures
        self.attempts = 0

    def get_endpoint(self, endpoint: str, project: str | None = None) -> dict[str, Any]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ServerUnreachable("cannot reach the Berth server at http://127.0.0.1:9")
        return super().get_endpoint(endpoint, project)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdk, "WAIT_RETRY_INTERVAL_S", 0.0)


def test_outage_retried_with_stderr_line(
    fast_retries: None, capsys: pytest.CaptureFixture[str]
) -> None:
    client = UnreachableFirst(3, endpoint_json(LIVE, ready=1, generations=(2,)))

    result = run_wait(client, Goal(LIVE))

    assert result["state"] == LIVE
    assert client.attempts == 4
    stderr = capsys.readouterr().err
    assert "cannot reach the Berth server at http://127.0.0.1:9; retrying for up to 5 s" in stderr
    assert stderr.count("retrying") == 1


def test_long_outage_raises_connection_error(
    fast_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sdk, "WAIT_RETRY_S", 0.2)
    client = UnreachableFirst(10**9, endpoint_json(LIVE, ready=1, generations=(2,)))

    with pytest.raises(ServerUnreachable, match="cannot reach the Berth server"):
        run_wait(client, Goal(LIVE), timeout_s=60)
    assert client.attempts > 1


def test_stopped_while_waiting_raises() -> None:
    client = ScriptedClient(endpoint_json("Stopping"), endpoint_json(STOPPED))

    with pytest.raises(CliError, match=r"stays Stopped until it is started: run `berth endpoint"):
        run_wait(client, Goal(LIVE), timeout_s=60)
    assert client.calls == 1


def test_live_with_pending_stop_not_reached() -> None:
    # A stop keeps the generation, so until the reconciler acts the endpoint reads Live.
    pending_stop = {**endpoint_json(LIVE, ready=1, generations=(1,)), "desired_state": "stopped"}

    assert not is_reached(pending_stop, Goal(LIVE))


def test_pending_stop_while_waiting_raises() -> None:
    pending_stop = {**endpoint_json(LIVE, ready=1, generations=(1,)), "desired_state": "stopped"}
    client = ScriptedClient(pending_stop, endpoint_json(STOPPED))

    with pytest.raises(CliError, match=r"was stopped while waiting for it to be Live"):
        run_wait(client, Goal(LIVE), timeout_s=60)
    assert client.calls == 1


CHANGED_FILES = changed_files_error(
    "mylm", "main", "file '/models/mylm/config.json' is now 812 bytes, not 810 as at import"
)


def updating_with_new_instance(last_error: str, blocked: bool) -> dict[str, Any]:
    """Return a restarted one-instance endpoint whose old instance serves and whose new
    instance is Exited with `last_error`."""
    endpoint = endpoint_json("Updating", ready=1, generations=(1, 2))
    endpoint["instance_list"][1].update(
        state="Exited",
        last_error=last_error,
        start_blocked=blocked,
    )
    return endpoint


def test_blocked_start_stops_wait_at_once() -> None:
    client = ScriptedClient(updating_with_new_instance(CHANGED_FILES, blocked=True))

    with pytest.raises(CliError) as raised:
        run_wait(client, Goal(LIVE, newer_than_generation=1), timeout_s=5)

    assert client.calls == 1
    assert "endpoint 'made-up' cannot start instance" in str(raised.value)
    assert "changed after import" in str(raised.value)
    assert "import the files again as a new checkpoint" in str(raised.value)


def test_crash_keeps_wait_until_blocked_start() -> None:
    crashed = updating_with_new_instance("killed by SIGKILL", blocked=False)
    blocked = updating_with_new_instance(CHANGED_FILES, blocked=True)
    client = ScriptedClient(crashed, crashed, blocked)

    with pytest.raises(CliError, match="changed after import"):
        run_wait(client, Goal(LIVE, newer_than_generation=1), timeout_s=5)

    assert client.calls == 3


def test_blocked_old_generation_keeps_wait() -> None:
    # A change that replaces an instance of an earlier generation is the fix for it.
    old_blocked = endpoint_json("Updating", ready=1, generations=(3, 3))
    old_blocked["instance_list"][0].update(
        generation=2,
        state="Exited",
        last_error=unavailable_files_error("mylm", FileNotFoundError("gone")),
        start_blocked=True,
    )
    new_blocked = updating_with_new_instance(CHANGED_FILES, blocked=True)
    new_blocked["generation"] = 3
    new_blocked["instance_list"][1]["generation"] = 3
    client = ScriptedClient(old_blocked, new_blocked)

    with pytest.raises(CliError) as raised:
        run_wait(client, Goal(LIVE, newer_than_generation=2), timeout_s=5)

    assert client.calls == 2
    assert "changed after import" in str(raised.value)
    assert "unavailable" not in str(raised.value)
