"""Lifecycle states and other closed sets of values, as `str` enums.

Every state comparison in Berth goes through these types; the string values are
what the REST API returns and what the database stores.
"""

import re
from enum import StrEnum


class EndpointState(StrEnum):
    """Observed state of an endpoint, owned by the reconciler."""

    PENDING = "Pending"
    DEPLOYING = "Deploying"
    LIVE = "Live"
    UPDATING = "Updating"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    FAILED = "Failed"
    DELETING = "Deleting"


class DesiredState(StrEnum):
    """Desired state as the user set it; request handlers write nothing else."""

    RUNNING = "running"
    STOPPED = "stopped"
    DELETED = "deleted"


class InstanceState(StrEnum):
    """State of one running copy of a model."""

    STARTING = "Starting"
    READY = "Ready"
    UNHEALTHY = "Unhealthy"
    DRAINING = "Draining"
    EXITED = "Exited"


class KeyStatus(StrEnum):
    ACTIVE = "Active"
    REVOKED = "Revoked"


class Role(StrEnum):
    TENANT_ADMIN = "TenantAdmin"
    USER = "User"


class ModelSharing(StrEnum):
    """Visibility of a model of the hub; built-in models are visible to everyone."""

    PRIVATE = "private"
    TENANT = "tenant"
    ALL_TENANTS = "all_tenants"


class CheckpointFormat(StrEnum):
    """How a checkpoint's files are laid out, which decides the runtime that loads them."""

    BUILTIN = "builtin"
    TRANSFORMERS = "transformers"
    SENTENCE_TRANSFORMERS = "sentence-transformers"
    GGUF = "gguf"


class MLApp(StrEnum):
    """The kind of serving a model needs: which runtime loads it and which routes it serves."""

    TEXT_GENERATION = "text-generation"
    TEXT_EMBEDDING = "text-embedding"
    ECHO = "echo"

    @property
    def display_name(self) -> str:
        return _ML_APP_NAMES[self]

    @classmethod
    def parse(cls, text: str) -> "MLApp":
        """Accept the identifier (`text-embedding`) or the display name (`Text Embedding`)."""
        normalized = text.strip().lower().replace(" ", "-").replace("_", "-")
        for app in cls:
            if normalized == app.value:
                return app
        choices = ", ".join(f"'{app.value}'" for app in cls)
        raise ValueError(f"unknown ML App '{text}'; choose one of {choices}")


_ML_APP_NAMES = {
    MLApp.TEXT_GENERATION: "Text Generation",
    MLApp.TEXT_EMBEDDING: "Text Embedding",
    MLApp.ECHO: "Echo",
}


def instance_counts(requested: int, ready: int, draining: int) -> tuple[int, int]:
    """Return how many of the requested instances are ready, and how many others are stopping.

    Right after a scale-down, and during a model change, more instances can be ready than
    were requested. The reconciler drains the extra ones (after a model change, once every
    new instance is ready), so they count as stopping, and so do Draining instances. The
    ready count returned never exceeds `requested`.
    """
    return min(ready, requested), draining + max(0, ready - requested)


# The state shown for a Ready instance that `surplus_instance_ids` returns, so that an
# instance table agrees with the "N stopping" of `instance_counts`.
SURPLUS_INSTANCE_LABEL = "Stopping"


def surplus_instance_ids(
    requested: int, generation: int, instances: list[tuple[str, int, str]]
) -> set[str]:
    """Return the IDs of the Ready instances beyond the `requested` number, which the
    reconciler is about to stop and `instance_counts` counts as stopping.

    `instances` holds (ID, generation, state) for each instance, oldest first;
    `generation` is the endpoint's current one. The reconciler stops instances of older
    generations first (after a model change), then the newest of the current generation.
    """
    ready = [
        (index, instance_id, instance_generation)
        for index, (instance_id, instance_generation, state) in enumerate(instances)
        if state == InstanceState.READY
    ]
    surplus = max(0, len(ready) - requested)
    ready.sort(key=lambda row: (row[2] >= generation, -row[0]))
    return {instance_id for _index, instance_id, _generation in ready[:surplus]}


def instances_summary(requested: int, ready: int, draining: int, ready_word: str = "ready") -> str:
    """Describe the instance counts as "R of N ready", with ", S stopping" while any stop."""
    ready_count, stopping = instance_counts(requested, ready, draining)
    text = f"{ready_count} of {requested} {ready_word}"
    if stopping:
        text += f", {stopping} stopping"
    return text


# The capacity part of the reason that `capacity_wait_reason` writes, as read back by
# `waits_for_capacity`. The reason is plain text in the API, so both live here.
_CAPACITY_WAIT = re.compile(r"^waiting for \d+ free instance slots? \(\d+ of \d+ in use\)")


def capacity_wait_reason(instances: int, used: int, capacity: int) -> str:
    """Return the state reason of a Pending endpoint whose instances do not fit in the free
    instance slots, given the slots that other running endpoints hold."""
    slots = "slot" if instances == 1 else "slots"
    fixes = "stop or delete another endpoint"
    if instances > 1:
        fixes += ", or lower this endpoint's instances,"
    return (
        f"waiting for {instances} free instance {slots} ({used} of {capacity} in use); "
        f"{fixes} to make room"
    )


def waits_for_capacity(state: str, reason: str) -> bool:
    """Tell whether an endpoint is Pending because its instances do not fit in the free
    instance slots (see `capacity_wait_reason`)."""
    return state == EndpointState.PENDING and _CAPACITY_WAIT.match(reason) is not None
