"""How the web UI describes an endpoint's instance counts while instances stop."""

from types import SimpleNamespace
from typing import Any

import pytest

from berth.ui.display import EndpointView


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
