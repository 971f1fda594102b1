"""How the web UI describes an endpoint's instance counts while instances stop."""

from types import SimpleNamespace
from typing import Any

import pytest

from berth.states import InstanceState
from berth.ui.display import EndpointView, shown_instance_states


def _view(instances: int, ready: int, states: tuple[str, ...]) -> EndpointView:
    out: Any = SimpleNamespace(
        instances=instances,
        ready_instances=ready,
        instance_list=[SimpleNamespace(state=state) for state in states],
    )
    return EndpointView(out=out, tenant_name="t", can_manage=True, settling=False)


@pytest.mark.parametrize(
    ("instances", "ready", "states", "summary", "ready_text"),
    [
        (2, 2, ("Ready", "Ready"), "2 of 2 ready", "2 ready"),
        (2, 1, ("Ready", "Starting"), "1 of 2 ready", "1 ready"),
        (1, 2, ("Ready", "Ready"), "1 of 1 ready, 1 stopping", "1 ready, 1 stopping"),
        (1, 1, ("Ready", "Draining"), "1 of 1 ready, 1 stopping", "1 ready, 1 stopping"),
    ],
)
def test_scale_down_counts_stopping(
    instances: int, ready: int, states: tuple[str, ...], summary: str, ready_text: str
) -> None:
    view = _view(instances, ready, states)

    assert view.instances_text == summary
    assert view.ready_text == ready_text


def test_scale_down_shows_the_surplus_instance_as_stopping() -> None:
    # Right after a scale-down from 2 to 1, both instances are still Ready.
    out: Any = SimpleNamespace(
        instances=1,
        generation=1,
        ready_instances=2,
        instance_list=[
            SimpleNamespace(id=instance_id, generation=1, state=InstanceState.READY)
            for instance_id in ("older", "newer")
        ],
    )

    # The reconciler stops the newest instance, so that one shows as Stopping.
    assert shown_instance_states(out) == {"older": "Ready", "newer": "Stopping"}
    view = EndpointView(out=out, tenant_name="t", can_manage=True, settling=False)
    assert view.instance_states == {"older": "Ready", "newer": "Stopping"}


def test_instances_within_the_count_keep_their_state() -> None:
    out: Any = SimpleNamespace(
        instances=2,
        generation=1,
        instance_list=[
            SimpleNamespace(id="a", generation=1, state=InstanceState.READY),
            SimpleNamespace(id="b", generation=1, state=InstanceState.STARTING),
        ],
    )

    assert shown_instance_states(out) == {"a": "Ready", "b": "Starting"}
