"""Endpoint summaries, model picker groups and poll intervals for the templates."""

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from berth.api.convert import endpoint_out, model_out
from berth.api.schemas import EndpointOut, ModelOut
from berth.auth import Principal
from berth.db.models import Endpoint
from berth.rollout import ServingInstance, differs_from_endpoint, rolling_update_note
from berth.service import models
from berth.service.common import MAX_PAGE_SIZE
from berth.states import (
    DesiredState,
    EndpointState,
    InstanceRow,
    instance_counts,
    instances_summary,
    shown_instance_state,
    surplus_instance_ids,
)
from berth.ui.setting_fields import SETTING_FIELDS

# Poll intervals of the parts of a page that show endpoint states, in milliseconds:
# while one of their endpoints changes state, and while none does.
SETTLING_POLL_MS = 1000
SETTLED_POLL_MS = 10000

SETTING_NAMES = frozenset(field.name for field in SETTING_FIELDS)

_SETTLED_STATES = (EndpointState.LIVE, EndpointState.STOPPED, EndpointState.FAILED)


@dataclass
class EndpointView:
    """An endpoint as a page shows it, with what the viewer may do to it."""

    out: EndpointOut
    tenant_name: str
    can_manage: bool
    settling: bool
    # What the browser needs to fill the update, stop and delete dialogs.
    dialog_data: dict[str, Any] = field(default_factory=dict)

    @property
    def actions_allowed(self) -> bool:
        """Tell whether the viewer may change the endpoint and it still exists."""
        return self.can_manage and self.out.state != EndpointState.DELETING

    @property
    def instances_text(self) -> str:
        """The instance counts, such as "1 of 1 ready, 1 draining" after a scale-down."""
        out = self.out
        return instances_summary(out.instances, out.generation, instance_rows(out))

    @property
    def ready_text(self) -> str:
        """The ready and draining instances, such as "1 ready, 1 draining", or
        "1 new ready, 1 old serving" during a rolling update."""
        out = self.out
        counts = instance_counts(out.instances, out.generation, instance_rows(out))
        if counts.old:
            text = f"{counts.ready} new ready, {counts.old_ready} old serving"
        else:
            text = f"{counts.ready} ready"
        if counts.draining:
            text += f", {counts.draining} draining"
        return text

    @property
    def rollout_text(self) -> str:
        """What the old instances of a rolling update still serve, or "" outside one."""
        out = self.out
        return rolling_update_note(
            out.instances,
            out.generation,
            out.model.name,
            out.checkpoint.name if out.checkpoint else "",
            serving_instances(out),
        )

    @property
    def changed_models(self) -> dict[str, str]:
        """The model and checkpoint of each instance that is known to serve another one
        than the endpoint names, as "MODEL / CHECKPOINT" by instance ID."""
        out = self.out
        checkpoint_name = out.checkpoint.name if out.checkpoint else ""
        changed = {}
        for row in serving_instances(out):
            if not row.model_name or not differs_from_endpoint(
                row, out.model.name, checkpoint_name
            ):
                continue
            text = row.model_name
            if row.checkpoint_name:
                text += f" / {row.checkpoint_name}"
            changed[row.id] = text
        return changed

    @property
    def instance_states(self) -> dict[str, str]:
        """The state to show for each instance, by ID. A Ready instance that the
        reconciler drains next shows as Draining, to match the "N draining" count."""
        return shown_instance_states(self.out)

    @property
    def can_stop(self) -> bool:
        return self.out.desired_state == DesiredState.RUNNING and (
            self.out.state != EndpointState.FAILED
        )


def is_settling(out: EndpointOut) -> bool:
    """Tell whether the reconciler has yet to reach what the user last asked for."""
    if out.state not in _SETTLED_STATES:
        return True
    if out.observed_generation < out.generation:
        return True
    if out.desired_state == DesiredState.STOPPED:
        return out.state == EndpointState.LIVE
    if out.state == EndpointState.LIVE:
        # A changed instance count, or an instance that is being replaced after a crash.
        return out.observed_instances != out.instances or out.ready_instances != out.instances
    return out.state == EndpointState.STOPPED


def endpoint_view(endpoint: Endpoint, principal: Principal, server_url: str) -> EndpointView:
    out = endpoint_out(endpoint, server_url)
    dialog_data = {
        "id": out.id,
        "name": out.name,
        "description": out.description,
        "instances": out.instances,
        "model_id": out.model.id,
        "model_name": out.model.name,
        "model_checkpoints": checkpoint_choices(model_out(endpoint.model)),
        "checkpoint_id": out.checkpoint.id if out.checkpoint else None,
        "ml_app": out.ml_app.value,
        "ml_app_name": out.ml_app_name,
        "share_with_all_tenants": out.share_with_all_tenants,
        # The runtime settings that a user set, without the defaults, which the update
        # dialog shows as empty fields. Stored test aids such as echo_delay_ms are left out.
        "stored_settings": {
            name: value
            for name, value in (endpoint.settings or {}).items()
            if name in SETTING_NAMES
        },
        "version": out.version,
        "state": out.state.value,
        "instance_list": [
            {"id": instance_id, "state": state}
            for instance_id, state in shown_instance_states(out).items()
        ],
        "project_name": out.project.name,
    }
    return EndpointView(
        out=out,
        tenant_name=endpoint.project.tenant.name,
        can_manage=principal.can_manage_endpoint(endpoint),
        settling=is_settling(out),
        dialog_data=dialog_data,
    )


def instance_rows(out: EndpointOut) -> list[InstanceRow]:
    return [(row.id, row.generation, row.state.value) for row in out.instance_list]


def serving_instances(out: EndpointOut) -> list[ServingInstance]:
    return [
        ServingInstance(
            row.id, row.generation, row.state.value, row.model_name, row.checkpoint_name
        )
        for row in out.instance_list
    ]


def shown_instance_states(out: EndpointOut) -> dict[str, str]:
    """Return the state to show for each of the endpoint's instances, by ID, in order.

    Right after a scale-down the extra instances are still Ready until the reconciler
    drains them. They show as Draining.
    """
    rows = instance_rows(out)
    surplus = surplus_instance_ids(out.instances, out.generation, rows)
    return {
        instance_id: shown_instance_state(instance_id, state, surplus)
        for instance_id, _generation, state in rows
    }


def poll_interval_ms(views: list[EndpointView]) -> int:
    return SETTLING_POLL_MS if any(view.settling for view in views) else SETTLED_POLL_MS


def mask_key(key: str) -> str:
    """Shorten a key for display: its prefix, an ellipsis and its last four characters."""
    if len(key) <= 16:
        return key
    return f"{key[:12]}…{key[-4:]}"


def short_checksum(checksum: str) -> str:
    """Shorten a checksum such as "sha256:<64 hex digits>" to its algorithm and first
    12 digits, enough to tell checkpoints apart at a glance."""
    algorithm, separator, digest = checksum.partition(":")
    if not separator:
        return checksum if len(checksum) <= 12 else f"{checksum[:12]}…"
    return f"{algorithm}:{digest[:12]}…" if len(digest) > 12 else checksum


def checkpoint_choices(model: ModelOut) -> list[dict[str, str]]:
    """List a model's checkpoints for the checkpoint choice of the model picker.

    The list is oldest first, as the API orders it, so its last entry is the checkpoint
    that an endpoint gets when it names only the model.
    """
    return [
        {
            "id": row.id,
            "name": row.name,
            "format": row.format.value,
            "created_at": row.created_at.isoformat(),
        }
        for row in model.checkpoints
    ]


@dataclass
class ModelGroupView:
    label: str
    models: list[ModelOut]


def model_picker_groups(session: Session, principal: Principal) -> list[ModelGroupView]:
    """List the deployable models of the picker's first three groups.

    The fourth group is the Model Hub browser, which also lists base models.
    """
    groups = (
        ("My models", models.ModelGroup.MINE),
        ("Shared models", models.ModelGroup.SHARED),
        ("Berth models", models.ModelGroup.BERTH),
    )
    views = []
    for label, group in groups:
        query = models.ModelFilter(group=group, is_base=False)
        rows, _total = models.list_models(session, principal, query, MAX_PAGE_SIZE, 0)
        views.append(ModelGroupView(label, [model_out(row) for row in rows]))
    return views
