"""`--wait`: poll an endpoint until the reconciler has carried out the last change.

Request handlers change only what the user asked for (instances, model, desired state),
and the reconciler updates the observed `state` some moments later. Right after a
restart, a Live endpoint therefore still reads Live with its old instances, and a
Failed one still reads Failed. A `Goal` defines what counts as done for one change.
"""

import time
from dataclasses import dataclass

from rich.console import Console

from berth import client as sdk
from berth.cli.endpoint_views import instances_text
from berth.cli.output import CliError, Json, stderr_console
from berth.client import CAPACITY_CONFIRM_S, Client, ServerUnreachable
from berth.states import waits_for_capacity

POLL_INTERVAL_S = 0.25
LIVE = "Live"
STOPPED = "Stopped"
FAILED = "Failed"
DELETING = "Deleting"


@dataclass(frozen=True)
class Goal:
    state: str
    # Live counts only once every instance has a generation above this one, because a
    # restart or a model change replaces instances without changing the state first.
    newer_than_generation: int | None = None
    # The endpoint was Failed before a change that redeploys it, so a Failed state
    # counts only after the endpoint has been seen in another state.
    failed_before_change: bool = False


def max_generation(endpoint: Json) -> int | None:
    generations = [instance["generation"] for instance in endpoint["instance_list"]]
    return max(generations) if generations else None


def goal_for(endpoint: Json) -> Goal:
    """Return the plain goal for the endpoint's desired state, with nothing replaced."""
    return Goal(STOPPED if endpoint["desired_state"] == "stopped" else LIVE)


def is_reached(endpoint: Json, goal: Goal) -> bool:
    if endpoint["state"] != goal.state:
        return False
    if goal.state != LIVE:
        return True
    # A stop keeps the generation, so an endpoint reads Live with its desired state
    # stopped until the reconciler acts on the stop.
    if endpoint["desired_state"] == "stopped":
        return False
    # Right after a scale-up or scale-down the state still reads Live, but the ready
    # count differs from the new number of instances until the reconciler is done.
    if endpoint["ready_instances"] != endpoint["instances"]:
        return False
    if goal.newer_than_generation is None:
        return True
    return all(
        instance["generation"] > goal.newer_than_generation
        for instance in endpoint["instance_list"]
    )


def wait_for_goal(client: Client, endpoint: Json, goal: Goal, timeout_s: float) -> Json:
    """Poll the endpoint until it reaches `goal` and return its last JSON.

    Raises CliError when the endpoint fails, is stopped or is deleted while a Live goal
    is pending, when it waits in Pending for free instance slots for CAPACITY_CONFIRM_S,
    when an instance of its current generation cannot start until someone acts (see
    `sdk.blocked_instance`), or when `timeout_s` passes first. The change itself stays
    in effect in every case. While the server cannot be reached, for example during its
    restart, each poll retries for up to the SDK's WAIT_RETRY_S with a line on stderr,
    then raises ServerUnreachable.
    """
    console = stderr_console()
    progress = _Progress(console, endpoint["name"], goal.state)
    deadline = time.monotonic() + timeout_s
    seen_other_state = not goal.failed_before_change
    lacking_slots_since: float | None = None
    try:
        while True:
            retry_s = min(sdk.WAIT_RETRY_S, max(deadline - time.monotonic(), 0.0))
            endpoint = sdk.get_endpoint_retrying(
                client, endpoint["id"], retry_s=retry_s, on_retry=progress.show_retry
            )
            progress.show(endpoint)
            if is_reached(endpoint, goal):
                return endpoint
            if endpoint["state"] != FAILED:
                seen_other_state = True
            _raise_if_lost(endpoint, goal, seen_other_state)
            blocked = sdk.blocked_instance(endpoint)
            if goal.state == LIVE and blocked is not None:
                raise CliError(sdk.blocked_start_message(endpoint, blocked))

            now = time.monotonic()
            if goal.state == LIVE and waits_for_capacity(
                endpoint["state"], endpoint["state_reason"]
            ):
                if lacking_slots_since is None:
                    lacking_slots_since = now
                if now - lacking_slots_since >= CAPACITY_CONFIRM_S:
                    raise CliError(_lacking_slots_message(endpoint))
            else:
                lacking_slots_since = None

            if now >= deadline:
                raise CliError(
                    f"timed out after {timeout_s:g} s waiting for endpoint "
                    f"'{endpoint['name']}' to be {goal.state}; it is {_describe(endpoint)}. "
                    f"`berth endpoint info {endpoint['name']}` shows its progress"
                )
            time.sleep(POLL_INTERVAL_S)
    finally:
        progress.close()


def _raise_if_lost(endpoint: Json, goal: Goal, seen_other_state: bool) -> None:
    if goal.state != LIVE:
        # A stop winds down Failed and Deleting endpoints too, so only the timeout applies.
        return
    if endpoint["desired_state"] == "stopped":
        # Whatever it reads now, the reconciler stops it, and only a restart starts it.
        name = endpoint["name"]
        raise CliError(
            f"endpoint '{name}' was stopped while waiting for it to be Live, and stays "
            f"Stopped until it is started: run `berth endpoint restart {name}`"
        )
    if endpoint["state"] == FAILED and seen_other_state:
        raise CliError(f"endpoint '{endpoint['name']}' failed: {endpoint['state_reason']}")
    if endpoint["state"] == DELETING:
        raise CliError(f"endpoint '{endpoint['name']}' was deleted while waiting for it")


def _lacking_slots_message(endpoint: Json) -> str:
    name = endpoint["name"]
    fixes = "stop another endpoint (`berth endpoint stop NAME`)"
    if endpoint["instances"] > 1:
        # One instance is the least an endpoint runs, so only a larger count can be lowered.
        fixes += f" or give this one fewer instances (`berth endpoint update {name} --instances N`)"
    return (
        f"stopped waiting: endpoint '{name}' is Pending, {endpoint['state_reason']}. "
        f"It stays Pending and starts by itself once enough slots are free. To start it "
        f"now, {fixes}"
    )


def _describe(endpoint: Json) -> str:
    # While Deploying or Updating, the reason counts the ready instances of the new
    # generation. That shows progress better than ready_instances, which counts all of them.
    if endpoint["state_reason"]:
        return f"{endpoint['state']} ({endpoint['state_reason']})"
    if endpoint["state"] == LIVE:
        return f"Live, {instances_text(endpoint, 'instances ready')}"
    return str(endpoint["state"])


class _Progress:
    """Show the endpoint's state while waiting.

    A terminal gets a spinner with the current state. Elsewhere, such as in CI logs,
    each change of state or ready count prints one line.
    """

    def __init__(self, console: Console, name: str, goal_state: str) -> None:
        self._console = console
        self._prefix = f"Waiting for endpoint '{name}' to be {goal_state}"
        self._last_line = ""
        self._status = console.status(self._prefix) if console.is_terminal else None
        if self._status is not None:
            self._status.start()

    def show(self, endpoint: Json) -> None:
        line = f"{self._prefix}: {_describe(endpoint)}"
        if line == self._last_line:
            return
        self._last_line = line
        if self._status is not None:
            self._status.update(line)
        else:
            self._console.print(line, soft_wrap=True)

    def show_retry(self, error: ServerUnreachable, retry_s: float) -> None:
        self._console.print(f"{error}; retrying for up to {retry_s:g} s", soft_wrap=True)
        self._last_line = ""

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
