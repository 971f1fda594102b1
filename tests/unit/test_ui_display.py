"""How the web UI describes an endpoint's instance counts while instances drain."""

from types import SimpleNamespace
from typing import Any

import pytest

from berth.states import InstanceState
from berth.ui.app import create_templates
from berth.ui.display import EndpointView, shown_instance_states


def _view(instances: int, generation: int, rows: list[tuple[str, int, str]]) -> EndpointView:
    out: Any = SimpleNamespace(
        instances=instances,
        generation=generation,
        ready_instances=sum(1 for _id, _generation, state in rows if state == "Ready"),
        instance_list=[
            SimpleNamespace(id=instance_id, generation=row_generation, state=InstanceState(state))
            for instance_id, row_generation, state in rows
        ],
    )
    return EndpointView(out=out, tenant_name="t", can_manage=True, settling=False)


@pytest.mark.parametrize(
    ("instances", "generation", "rows", "summary", "ready_text"),
    [
        (2, 1, [("a", 1, "Ready"), ("b", 1, "Ready")], "2 of 2 ready", "2 ready"),
        (2, 1, [("a", 1, "Ready"), ("b", 1, "Starting")], "1 of 2 ready", "1 ready"),
        # Right after a scale-down, and once the reconciler drains the extra instance.
        (
            1,
            1,
            [("a", 1, "Ready"), ("b", 1, "Ready")],
            "1 of 1 ready, 1 draining",
            "1 ready, 1 draining",
        ),
        (
            1,
            1,
            [("a", 1, "Ready"), ("b", 1, "Draining")],
            "1 of 1 ready, 1 draining",
            "1 ready, 1 draining",
        ),
        # During a rolling update the old instances serve until every new one is ready,
        # and are counted apart from the new ones.
        (
            2,
            2,
            [("a", 1, "Ready"), ("b", 1, "Ready"), ("c", 2, "Ready"), ("d", 2, "Starting")],
            "1 of 2 new ready, 2 old serving",
            "1 new ready, 2 old serving",
        ),
        (
            2,
            2,
            [("a", 1, "Ready"), ("b", 2, "Ready"), ("c", 2, "Starting")],
            "1 of 2 new ready, 1 old serving",
            "1 new ready, 1 old serving",
        ),
        # An old instance that starts again on its model serves nothing yet.
        (
            1,
            2,
            [("a", 1, "Exited"), ("b", 2, "Starting")],
            "0 of 1 new ready, 0 old serving",
            "0 new ready, 0 old serving",
        ),
        (
            2,
            2,
            [("a", 1, "Ready"), ("b", 1, "Ready"), ("c", 2, "Ready"), ("d", 2, "Ready")],
            "2 of 2 ready, 2 draining",
            "2 ready, 2 draining",
        ),
    ],
)
def test_counts_name_draining_instances(
    instances: int,
    generation: int,
    rows: list[tuple[str, int, str]],
    summary: str,
    ready_text: str,
) -> None:
    view = _view(instances, generation, rows)

    assert view.instances_text == summary
    assert view.ready_text == ready_text


def test_scale_down_shows_surplus_as_draining() -> None:
    # Right after a scale-down from 2 to 1, both instances are still Ready.
    view = _view(1, 1, [("older", 1, "Ready"), ("newer", 1, "Ready")])

    # The reconciler drains the newest instance, so that one shows as Draining, the
    # state that the API reports for it once the reconciler acts.
    assert shown_instance_states(view.out) == {"older": "Ready", "newer": "Draining"}
    assert view.instance_states == {"older": "Ready", "newer": "Draining"}


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


def test_rollout_names_what_instances_serve() -> None:
    out: Any = SimpleNamespace(
        instances=1,
        generation=2,
        model=SimpleNamespace(name="lm"),
        checkpoint=SimpleNamespace(name="b"),
        instance_list=[
            SimpleNamespace(
                id="old",
                generation=1,
                state=InstanceState.READY,
                model_name="lm",
                checkpoint_name="a",
            ),
            SimpleNamespace(
                id="new",
                generation=2,
                state=InstanceState.STARTING,
                model_name="lm",
                checkpoint_name="b",
            ),
        ],
    )
    view = EndpointView(out=out, tenant_name="t", can_manage=True, settling=True)

    assert view.rollout_text == (
        "Rolling update: 1 instance still serves model lm (checkpoint a) until "
        "1 new instance of checkpoint b is ready."
    )
    # Only the instance that serves another checkpoint than the endpoint's is marked.
    assert view.changed_models == {"old": "lm / a"}
    assert view.ready_text == "0 new ready, 1 old serving"


@pytest.mark.parametrize(("tenant_disabled", "marked"), [(True, True), (False, False)])
def test_status_badge_marks_disabled_tenant(tenant_disabled: bool, marked: bool) -> None:
    macros = create_templates("/ui").env.get_template("_macros.html").module
    out = SimpleNamespace(state="Live", tenant_disabled=tenant_disabled)

    html = str(macros.status_badge(out))  # type: ignore[attr-defined]

    assert ">Live</span>" in html
    assert ("Tenant disabled" in html) is marked
