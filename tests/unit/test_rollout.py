"""The sentence that the CLI and the web UI show while a rolling update runs."""

import pytest

from berth.rollout import ServingInstance, rolling_update_note


def instance(
    instance_id: str, generation: int, state: str, model: str = "lm", checkpoint: str = "a"
) -> ServingInstance:
    return ServingInstance(instance_id, generation, state, model, checkpoint)


@pytest.mark.parametrize(
    ("requested", "instances", "expected"),
    [
        # A new checkpoint of the same model.
        (
            2,
            [instance("old", 1, "Ready"), instance("new", 2, "Starting", checkpoint="b")],
            "Rolling update: 1 instance still serves model lm (checkpoint a) until "
            "2 new instances of checkpoint b are ready.",
        ),
        # The old instance exited and starts again.
        (
            1,
            [instance("old", 1, "Starting"), instance("new", 2, "Exited", checkpoint="b")],
            "Rolling update: 1 instance of model lm (checkpoint a) is restarting until "
            "1 new instance of checkpoint b is ready.",
        ),
        # Another model.
        (
            1,
            [
                instance("old-1", 1, "Ready", model="other"),
                instance("old-2", 1, "Ready", model="other"),
                instance("new", 2, "Starting", checkpoint="b"),
            ],
            "Rolling update: 2 instances still serve model other (checkpoint a) until "
            "1 new instance of model lm (checkpoint b) is ready.",
        ),
        # A restart or a change of runtime settings keeps model and checkpoint.
        (
            1,
            [
                instance("old", 1, "Ready", checkpoint="b"),
                instance("new", 2, "Starting", checkpoint="b"),
            ],
            "Rolling update: 1 instance still serves model lm (checkpoint b) until "
            "1 new instance is ready.",
        ),
        # Instances of two earlier generations, one started before Berth recorded plans.
        (
            1,
            [
                instance("older", 1, "Ready", model="", checkpoint=""),
                instance("old", 2, "Ready"),
                instance("new", 3, "Starting", checkpoint="b"),
            ],
            "Rolling update: 1 instance of an earlier generation still serves and "
            "1 instance still serves model lm (checkpoint a) until 1 new instance of "
            "model lm (checkpoint b) is ready.",
        ),
        # An old instance that starts again after a crash still counts, as restarting.
        (
            1,
            [instance("old", 1, "Exited"), instance("new", 2, "Starting", checkpoint="b")],
            "Rolling update: 1 instance of model lm (checkpoint a) is restarting until "
            "1 new instance of checkpoint b is ready.",
        ),
    ],
)
def test_note_names_old_and_new_models(
    requested: int, instances: list[ServingInstance], expected: str
) -> None:
    note = rolling_update_note(requested, instances[-1].generation, "lm", "b", instances)

    assert note == expected


@pytest.mark.parametrize(
    "instances",
    [
        # No rolling update.
        [instance("only", 2, "Ready", checkpoint="b")],
        # The old instance drains already.
        [instance("old", 1, "Draining"), instance("new", 2, "Ready", checkpoint="b")],
        # Every new instance is ready, so the reconciler drains the old one next.
        [instance("old", 1, "Ready"), instance("new", 2, "Ready", checkpoint="b")],
    ],
)
def test_no_note_without_serving_old_instances(instances: list[ServingInstance]) -> None:
    assert rolling_update_note(1, 2, "lm", "b", instances) == ""
