"""The sentence that names what the old instances of a rolling update still serve, as the
CLI and the web UI show it."""

from typing import NamedTuple

from berth.states import InstanceState, surplus_instance_ids


class ServingInstance(NamedTuple):
    """An open instance with the model and checkpoint names that the API reports for it;
    the names are "" when unknown."""

    id: str
    generation: int
    state: str
    model_name: str
    checkpoint_name: str


def model_phrase(model_name: str, checkpoint_name: str) -> str:
    """Return "model M (checkpoint C)", or "model M" when the checkpoint is unknown."""
    if checkpoint_name:
        return f"model {model_name} (checkpoint {checkpoint_name})"
    return f"model {model_name}"


def differs_from_endpoint(instance: ServingInstance, model_name: str, checkpoint_name: str) -> bool:
    """Tell whether the instance serves another model or checkpoint than the endpoint names."""
    return (instance.model_name, instance.checkpoint_name) != (model_name, checkpoint_name)


def rolling_update_note(
    requested: int,
    generation: int,
    model_name: str,
    checkpoint_name: str,
    instances: list[ServingInstance],
) -> str:
    """Describe what the old instances of a rolling update serve until the new ones are ready.

    For example "Rolling update: 1 instance still serves model M (checkpoint A) until
    2 new instances of checkpoint B are ready." `model_name` and `checkpoint_name` are
    the endpoint's, which its new instances serve. Returns "" when no instance of an
    earlier generation serves or starts again, which includes the moment the reconciler
    drains the old instances (see `surplus_instance_ids`).
    """
    rows = [(row.id, row.generation, row.state) for row in instances]
    surplus = surplus_instance_ids(requested, generation, rows)
    old = [
        row
        for row in instances
        if row.generation != generation
        and row.state != InstanceState.DRAINING
        and row.id not in surplus
    ]
    if not old:
        return ""

    # The old instances, grouped by what they serve and whether they are ready, in the
    # order of the list. One that is not ready has exited or failed its health checks and
    # is starting again.
    groups: dict[tuple[str, str, bool], int] = {}
    for row in old:
        group = (row.model_name, row.checkpoint_name, row.state == InstanceState.READY)
        groups[group] = groups.get(group, 0) + 1
    clauses = []
    for (old_model, old_checkpoint, ready), count in groups.items():
        subject = "1 instance" if count == 1 else f"{count} instances"
        if ready:
            verb = "serves" if count == 1 else "serve"
            if old_model:
                served_text = model_phrase(old_model, old_checkpoint)
                clauses.append(f"{subject} still {verb} {served_text}")
            else:
                clauses.append(f"{subject} of an earlier generation still {verb}")
        else:
            verb = "is" if count == 1 else "are"
            if old_model:
                served_text = model_phrase(old_model, old_checkpoint)
            else:
                served_text = "an earlier generation"
            clauses.append(f"{subject} of {served_text} {verb} restarting")

    # Name only what changes: nothing after a restart or a change of runtime settings,
    # the checkpoint when the model stays.
    served_before = {(old_model, old_checkpoint) for old_model, old_checkpoint, _ in groups}
    old_models = {old_model for old_model, _ in served_before}
    if served_before == {(model_name, checkpoint_name)}:
        new_model_text = ""
    elif old_models == {model_name} and checkpoint_name:
        new_model_text = f" of checkpoint {checkpoint_name}"
    else:
        new_model_text = f" of {model_phrase(model_name, checkpoint_name)}"
    new = "1 new instance" if requested == 1 else f"{requested} new instances"
    verb = "is" if requested == 1 else "are"
    return f"Rolling update: {' and '.join(clauses)} until {new}{new_model_text} {verb} ready."
