"""Output of `berth endpoint update`, `restart` and `stop` once the server accepts a change.

The server records the change and responds before the reconciler acts on it, so its
response still shows the state, reason and instances from before the change. These
helpers read the endpoint again once the reconciler has acted, and describe what the
reconciler does next.
"""

import time

from berth.cli.output import Json
from berth.client import Client
from berth.states import DesiredState, EndpointState, waits_for_capacity

# How long to wait for the reconciler's first step on a change. The server wakes the
# reconciler when it commits a change, and the reconciler also runs a step every 0.5 s
# by default, so the step normally comes within a fraction of this. The margin is for a
# busy machine, and a change that the reconciler leaves unseen costs the whole wait.
FIRST_STEP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.1

# States in which an endpoint serves requests, so that a change replaces its instances
# in a rolling update.
_SERVING_STATES = (EndpointState.LIVE, EndpointState.UPDATING)
# States in which an endpoint has no instances to keep, so a change starts all of them.
_UNDEPLOYED_STATES = (
    EndpointState.PENDING,
    EndpointState.STOPPING,
    EndpointState.STOPPED,
    EndpointState.FAILED,
)


def read_after_change(
    client: Client, before: Json, accepted: Json, timeout_s: float = FIRST_STEP_TIMEOUT_S
) -> Json:
    """Return the endpoint as it is once the reconciler has acted on a change.

    `before` is the endpoint read before the change, and `accepted` the server's response
    to it. Without anything for the reconciler to do, `accepted` is returned as it is.
    Otherwise the endpoint is read until its observed state, reason or instances differ
    from `before`, or until `timeout_s` passes, and the last read is returned.
    """
    if not reconciler_acts(before, accepted):
        return accepted
    seen = _observed(before)
    if _observed(accepted) != seen:
        return accepted
    deadline = time.monotonic() + timeout_s
    while True:
        time.sleep(POLL_INTERVAL_S)
        current = client.get_endpoint(accepted["id"])
        if _observed(current) != seen or time.monotonic() >= deadline:
            return current


def still_unseen(before: Json, after: Json) -> bool:
    """Tell whether `after`, read once the wait of `read_after_change` ended, still shows
    nothing of the reconciler's work on a change that gives it work."""
    return reconciler_acts(before, after) and _observed(after) == _observed(before)


def reconciler_acts(before: Json, after: Json) -> bool:
    """Tell whether a change from `before` to `after` gives the reconciler work to do."""
    if after["desired_state"] == DesiredState.STOPPED:
        return before["desired_state"] != DesiredState.STOPPED
    if before["desired_state"] != DesiredState.RUNNING:
        return True
    same_instances = after["instances"] == before["instances"]
    if after["generation"] == before["generation"] and same_instances:
        return False
    # An endpoint that waits for free instance slots keeps waiting, with the same reason,
    # unless its number of instances changes.
    return not (waits_for_capacity(before["state"], before["state_reason"]) and same_instances)


def _observed(endpoint: Json) -> tuple[object, ...]:
    """Return the fields that only the reconciler changes."""
    return (
        endpoint["state"],
        endpoint["state_reason"],
        endpoint.get("observed_generation"),
        endpoint.get("observed_instances"),
        tuple((row["id"], row["state"]) for row in endpoint["instance_list"]),
    )


def describe_next_step(before: Json, after: Json) -> str:
    """Describe what the reconciler does next with a change from `before` to `after`.

    `after` is the endpoint read after the change, and it decides whether the endpoint
    waits for free instance slots.
    """
    name = after["name"]
    if after["desired_state"] == DesiredState.STOPPED:
        if before["desired_state"] != DesiredState.STOPPED:
            return (
                "Its instances leave routing at once and end once their requests in flight "
                "finish. Then the endpoint is Stopped."
            )
        return (
            "The endpoint is stopped, so the change takes effect when it starts again "
            f"(`berth endpoint restart {name}`)."
        )
    if waits_for_capacity(after["state"], after["state_reason"]):
        return "It deploys by itself once enough instance slots are free."

    requested = after["instances"]
    replaced = after["generation"] > before["generation"]
    added = requested - before["instances"]
    starting = before["desired_state"] != DesiredState.RUNNING or before["state"] in (
        _UNDEPLOYED_STATES
    )
    if starting and (replaced or added):
        return f"{_instances(requested)} {_start(requested)}. {_live_once_ready(requested)}"
    if replaced and before["state"] in _SERVING_STATES:
        if before["instances"] == 1:
            old = (
                "the old one, which keeps serving until every new instance is ready and then drains"
            )
        else:
            old = (
                "the old ones, which keep serving until every new instance is ready and then drain"
            )
        sentence = f"{_instances(requested, 'new')} {_start(requested)} next to {old}."
        if _generation_pending(before):
            # The reconciler stops the superseded instances before it starts new ones.
            sentence += " The instances of the earlier change that are not ready yet stop first."
        return sentence
    if replaced:
        return (
            f"{_instances(requested, 'new')} {_start(requested)} in place of the ones that "
            f"were starting. {_live_once_ready(requested)}"
        )
    if added > 0:
        return f"{_instances(added, 'more')} {_start(added)} next to the others."
    if added == -1:
        return (
            "1 instance drains: it leaves routing at once and ends once its requests in "
            "flight finish."
        )
    if added < 0:
        return (
            f"{_instances(-added)} drain: they leave routing at once and end once their "
            "requests in flight finish."
        )
    if _generation_pending(after):
        # The change requests the model and settings that an earlier change already
        # requested, and the reconciler is still carrying that one out.
        requested_before = (
            "No instance is started or replaced, because the model and runtime settings "
            "were already requested."
        )
        if after["state"] in _SERVING_STATES:
            return (
                f"{requested_before} They are not in effect yet: the rolling update in "
                "progress applies them, and the old instances serve with the earlier ones "
                "until the new instances are ready."
            )
        return f"{requested_before} They apply once the instances that are starting are ready."
    return "No instance is started or replaced, so the change is in effect now."


def _generation_pending(endpoint: Json) -> bool:
    """Tell whether the reconciler has not yet brought every instance to the endpoint's
    current generation, that is its current model and runtime settings."""
    observed = endpoint.get("observed_generation")
    return observed is not None and observed < endpoint["generation"]


def changes_pending(before: Json, after: Json) -> bool:
    """Tell whether the reconciler still has to carry out the change, so that following it
    with `berth endpoint info` or --wait is worth a hint."""
    stopped_before = before["desired_state"] == DesiredState.STOPPED
    if after["desired_state"] == DesiredState.STOPPED:
        return not stopped_before
    return (
        reconciler_acts(before, after)
        or waits_for_capacity(after["state"], after["state_reason"])
        or _generation_pending(after)
    )


def _instances(count: int, adjective: str = "") -> str:
    words = [str(count), adjective, "instance" if count == 1 else "instances"]
    return " ".join(word for word in words if word)


def _start(count: int) -> str:
    return "starts" if count == 1 else "start"


def _live_once_ready(count: int) -> str:
    if count == 1:
        return "The endpoint is Live once the instance is ready."
    return "The endpoint is Live once all of them are ready."
