"""What `berth endpoint update`, `restart` and `stop` print after a change, on made-up
endpoint JSON: the next step, and when the endpoint is read again."""

from typing import Any

import pytest

from berth.cli import endpoint_changes
from berth.cli.endpoint_changes import changes_pending, describe_next_step, read_after_change
from berth.states import capacity_wait_reason


def endpoint_json(
    state: str = "Live",
    instances: int = 1,
    generation: int = 1,
    desired_state: str = "running",
    reason: str = "",
    instance_states: tuple[str, ...] = ("Ready",),
) -> dict[str, Any]:
    return {
        "id": "endpoint-id",
        "name": "made-up",
        "state": state,
        "state_reason": reason,
        "desired_state": desired_state,
        "instances": instances,
        "generation": generation,
        "observed_generation": 1,
        "observed_instances": 1,
        "instance_list": [
            {"id": f"instance-{index}", "generation": 1, "state": instance_state}
            for index, instance_state in enumerate(instance_states)
        ],
    }


LIVE_ONE = endpoint_json()
LIVE_TWO = endpoint_json(instances=2, instance_states=("Ready", "Ready"))
STOPPED = endpoint_json("Stopped", desired_state="stopped", instance_states=())
WAITING = endpoint_json(
    "Pending", instances=2, reason=capacity_wait_reason(2, 4, 4), instance_states=()
)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (
            LIVE_ONE,
            endpoint_json("Updating", generation=2),
            "1 new instance starts next to the old one, which keeps serving "
            "until every new instance is ready and then drains.",
        ),
        (
            LIVE_TWO,
            endpoint_json("Updating", instances=2, generation=2),
            "2 new instances start next to the old ones, which keep serving "
            "until every new instance is ready and then drain.",
        ),
        (
            endpoint_json("Updating", generation=2, instance_states=("Ready", "Starting")),
            endpoint_json("Updating", generation=3, instance_states=("Ready", "Starting")),
            "1 new instance starts next to the old one, which keeps serving until every new "
            "instance is ready and then drains. The instances of the earlier change that are "
            "not ready yet stop first.",
        ),
        (
            endpoint_json("Deploying", instance_states=("Starting",)),
            endpoint_json("Deploying", generation=2),
            "1 new instance starts in place of the ones that were starting. The endpoint is "
            "Live once the instance is ready.",
        ),
        (
            STOPPED,
            endpoint_json("Deploying", instances=2, generation=2),
            "2 instances start. The endpoint is Live once all of them are ready.",
        ),
        (
            endpoint_json("Failed", instance_states=()),
            endpoint_json("Deploying", generation=2),
            "1 instance starts. The endpoint is Live once the instance is ready.",
        ),
        (
            LIVE_ONE,
            endpoint_json("Updating", instances=3),
            "2 more instances start next to the others.",
        ),
        (
            LIVE_TWO,
            endpoint_json(instances=1, instance_states=("Ready", "Draining")),
            "1 instance drains: it leaves routing at once and ends once its requests in flight "
            "finish.",
        ),
        (
            endpoint_json(instances=3, instance_states=("Ready",) * 3),
            endpoint_json(instances=1),
            "2 instances drain: they leave routing at once and end once their requests in "
            "flight finish.",
        ),
        (LIVE_ONE, LIVE_ONE, "No instance is started or replaced, so the change is in effect now."),
        (
            endpoint_json("Updating", generation=2, instance_states=("Ready", "Starting")),
            endpoint_json("Updating", generation=2, instance_states=("Ready", "Starting")),
            "No instance is started or replaced, because the model and runtime settings were "
            "already requested. They are not in effect yet: the rolling update in progress "
            "applies them, and the old instances serve with the earlier ones until the new "
            "instances are ready.",
        ),
        (
            endpoint_json("Deploying", generation=2, instance_states=("Starting",)),
            endpoint_json("Deploying", generation=2, instance_states=("Starting",)),
            "No instance is started or replaced, because the model and runtime settings were "
            "already requested. They apply once the instances that are starting are ready.",
        ),
        (
            LIVE_ONE,
            endpoint_json("Stopping", desired_state="stopped"),
            "Its instances leave routing at once and end once their requests in flight "
            "finish. Then the endpoint is Stopped.",
        ),
        (
            STOPPED,
            endpoint_json("Stopped", desired_state="stopped", generation=2, instance_states=()),
            "The endpoint is stopped, so the change takes effect when it starts again "
            "(`berth endpoint restart made-up`).",
        ),
        (WAITING, WAITING, "It deploys by itself once enough instance slots are free."),
    ],
)
def test_next_step_per_change(before: dict[str, Any], after: dict[str, Any], expected: str) -> None:
    assert describe_next_step(before, after) == expected


def test_repeated_change_during_rollout_pending() -> None:
    updating = endpoint_json("Updating", generation=2, instance_states=("Ready", "Starting"))

    assert changes_pending(updating, updating)
    assert not changes_pending(LIVE_ONE, LIVE_ONE)


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
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint_changes, "POLL_INTERVAL_S", 0.001)


def test_read_after_change_waits_for_reconciler() -> None:
    accepted = endpoint_json(generation=2)
    acted = endpoint_json("Updating", generation=2, instance_states=("Ready", "Starting"))
    client = ScriptedClient(accepted, accepted, acted)

    current = read_after_change(client, LIVE_ONE, accepted)  # type: ignore[arg-type]

    assert current == acted
    assert client.calls == 3


def test_read_after_change_skips_read_without_work() -> None:
    accepted = endpoint_json()
    client = ScriptedClient()

    current = read_after_change(client, LIVE_ONE, accepted)  # type: ignore[arg-type]

    assert current is accepted
    assert client.calls == 0


def test_read_after_change_skips_capacity_wait() -> None:
    # A new model for an endpoint that waits for slots changes nothing the reconciler shows.
    accepted = {**WAITING, "generation": 2}
    client = ScriptedClient()

    current = read_after_change(client, WAITING, accepted)  # type: ignore[arg-type]

    assert current is accepted
    assert client.calls == 0


def test_read_after_change_gives_up_after_timeout() -> None:
    accepted = endpoint_json(generation=2)
    client = ScriptedClient(accepted)

    current = read_after_change(client, LIVE_ONE, accepted, timeout_s=0.05)  # type: ignore[arg-type]

    assert current == accepted
    assert client.calls >= 1


def test_change_not_yet_seen_is_told_apart() -> None:
    accepted = endpoint_json(generation=2)
    acted = endpoint_json("Updating", generation=2, instance_states=("Ready", "Starting"))

    assert endpoint_changes.still_unseen(LIVE_ONE, accepted)
    assert not endpoint_changes.still_unseen(LIVE_ONE, acted)
    # A change without work for the reconciler is never waiting for it.
    assert not endpoint_changes.still_unseen(LIVE_ONE, endpoint_json())


def test_restart_output_before_server_acts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from berth.cli import endpoint
    from berth.cli.output import OutputFormat

    accepted = endpoint_json(generation=2)

    endpoint._print_action_result(LIVE_ONE, accepted, "Restart", False, OutputFormat.TABLE, None)

    first_line = capsys.readouterr().out.splitlines()[0]
    assert "accepted; the server has not acted on it yet, so it is still Live" in first_line
