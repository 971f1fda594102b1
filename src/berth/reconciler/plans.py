"""Launch plans, the record in `Instance.launch` of what an instance's process was started with.

The reconciler writes a plan at each start and reads it back to restart an instance of an
earlier generation on the model it served before. The API reads it to show which model
and checkpoint each instance serves.
"""

import json
from dataclasses import dataclass

from berth.db.models import Endpoint, Instance
from berth.states import CheckpointFormat


@dataclass(frozen=True)
class LaunchPlan:
    """The start command of an instance's process: the model, its files and settings."""

    model_name: str
    artifact: str
    checkpoint_format: CheckpointFormat | None
    settings: dict[str, object]
    # The checkpoint whose files `artifact` names. Both are None in plans written before
    # Berth recorded them, and for an endpoint without a checkpoint.
    checkpoint_id: str | None = None
    checkpoint_name: str | None = None

    @classmethod
    def current(cls, endpoint: Endpoint) -> "LaunchPlan":
        """Return the plan of the endpoint's current generation."""
        checkpoint = endpoint.checkpoint
        return cls(
            model_name=endpoint.model.name,
            artifact=endpoint.artifact,
            checkpoint_format=endpoint.checkpoint_format,
            settings=dict(endpoint.settings or {}),
            checkpoint_id=checkpoint.id if checkpoint else None,
            checkpoint_name=checkpoint.name if checkpoint else None,
        )

    @classmethod
    def saved(cls, row: Instance) -> "LaunchPlan | None":
        """Return the plan the instance was last started with, or None if it was never
        started (or was started before Berth recorded plans)."""
        if not row.launch:
            return None
        data = json.loads(row.launch)
        checkpoint_format = data["checkpoint_format"]
        return cls(
            model_name=data["model_name"],
            artifact=data["artifact"],
            checkpoint_format=CheckpointFormat(checkpoint_format) if checkpoint_format else None,
            settings=dict(data["settings"]),
            checkpoint_id=data.get("checkpoint_id"),
            checkpoint_name=data.get("checkpoint_name"),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "model_name": self.model_name,
                "artifact": self.artifact,
                "checkpoint_format": self.checkpoint_format,
                "settings": self.settings,
                "checkpoint_id": self.checkpoint_id,
                "checkpoint_name": self.checkpoint_name,
            }
        )


def served_model(row: Instance, endpoint: Endpoint) -> tuple[str, str]:
    """Return the model name and checkpoint name that the instance was started with, or ""
    for each one that is unknown.

    A row of the current generation without a plan has not started yet, and starts on the
    endpoint's current model. A row of an earlier generation without a plan started before
    Berth recorded plans. A plan from before Berth recorded checkpoints names only the
    files, so it gives the endpoint's checkpoint when the files are that checkpoint's.
    Reads only what `endpoint_out` loads anyway, so a list of endpoints runs no query per
    instance.
    """
    current_checkpoint = endpoint.checkpoint.name if endpoint.checkpoint else ""
    plan = LaunchPlan.saved(row)
    if plan is None:
        if row.generation == endpoint.generation:
            return endpoint.model.name, current_checkpoint
        return "", ""
    if plan.checkpoint_name is not None:
        return plan.model_name, plan.checkpoint_name
    if plan.model_name == endpoint.model.name and plan.artifact == endpoint.artifact:
        return plan.model_name, current_checkpoint
    return plan.model_name, ""
