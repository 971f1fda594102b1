"""Lifecycle states and other closed sets of values, as `str` enums.

Every state comparison in Berth goes through these types; the string values are
what the REST API returns and what the database stores.
"""

import re
from enum import StrEnum
from typing import NamedTuple


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


# An instance as the count and label helpers below read it: (ID, generation, state).
InstanceRow = tuple[str, int, str]


class _Position(NamedTuple):
    """An instance with its position in the list, which is oldest first."""

    position: int
    instance_id: str
    generation: int
    state: str


def surplus_instance_ids(requested: int, generation: int, instances: list[InstanceRow]) -> set[str]:
    """Return the IDs of the Ready instances that the reconciler drains at its next step.

    `instances` holds every open instance, oldest first, and `generation` is the
    endpoint's current one. The rules follow `Reconciler._converge` in
    berth.reconciler.loop. It drains the current generation's instances beyond
    `requested`, those that are not Ready first and then the newest. It drains the older
    generations' instances once `requested` instances of the current generation are
    Ready, so during a rolling update they keep serving until then. The CLI and the web
    UI show the returned instances as Draining, the state that the API reports for them
    a moment later.
    """
    active = [
        _Position(index, instance_id, instance_generation, state)
        for index, (instance_id, instance_generation, state) in enumerate(instances)
        if state != InstanceState.DRAINING
    ]
    current = [row for row in active if row.generation == generation]
    extra = max(0, len(current) - requested)
    ranked = sorted(current, key=lambda row: (row.state == InstanceState.READY, -row.position))
    drained, remaining = ranked[:extra], ranked[extra:]

    surplus = {row.instance_id for row in drained if row.state == InstanceState.READY}
    if len(remaining) == requested and all(row.state == InstanceState.READY for row in remaining):
        surplus |= {
            row.instance_id
            for row in active
            if row.generation != generation and row.state == InstanceState.READY
        }
    return surplus


def shown_instance_state(instance_id: str, state: str, surplus_ids: set[str]) -> str:
    """Return the state to show for an instance: Draining for one of `surplus_ids`."""
    return InstanceState.DRAINING.value if instance_id in surplus_ids else state


class InstanceCounts(NamedTuple):
    """An endpoint's instances as the CLI and the web UI count them."""

    # Ready instances of the current generation, at most the requested count.
    ready: int
    # Instances of earlier generations that are not draining. During a rolling update they
    # serve until the new ones are ready, or start again to do so.
    old: int
    # Of those, the Ready ones.
    old_ready: int
    draining: int


def instance_counts(
    requested: int, generation: int, instances: list[InstanceRow]
) -> InstanceCounts:
    """Count the instances that serve, by generation, and those that drain.

    Instances that `surplus_instance_ids` returns count as draining, as the CLI and the web
    UI show them. During a rolling update the old instances serve next to the new ones,
    so they are counted apart: a ready count that mixed both would reach `requested`
    before the new instances are ready.
    """
    surplus = surplus_instance_ids(requested, generation, instances)
    ready = old = old_ready = draining = 0
    for instance_id, instance_generation, state in instances:
        if state == InstanceState.DRAINING or instance_id in surplus:
            draining += 1
        elif instance_generation == generation:
            if state == InstanceState.READY:
                ready += 1
        else:
            old += 1
            if state == InstanceState.READY:
                old_ready += 1
    return InstanceCounts(min(ready, requested), old, old_ready, draining)


def instances_summary(
    requested: int, generation: int, instances: list[InstanceRow], ready_word: str = "ready"
) -> str:
    """Describe the instance counts as "R of N ready", with ", D draining" while any drain.

    During a rolling update it reads "R of N new ready, O old serving", where O counts the
    Ready instances of earlier generations.
    """
    counts = instance_counts(requested, generation, instances)
    if counts.old:
        text = f"{counts.ready} of {requested} new {ready_word}, {counts.old_ready} old serving"
    else:
        text = f"{counts.ready} of {requested} {ready_word}"
    if counts.draining:
        text += f", {counts.draining} draining"
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


# The start of the errors that `unavailable_files_error` and `changed_files_error` write,
# as read back by `blocks_start`. The error is plain text in the API, so all three live here.
_BLOCKED_START = re.compile(
    r"^the files of (model '.+' are unavailable: |checkpoint '.+' changed after import, )"
)


def unavailable_files_error(model_name: str, error: Exception) -> str:
    """Return the error of an instance that was not started because the files of its model
    cannot be found or built. `error` is the exception that gives the cause."""
    return f"the files of model '{model_name}' are unavailable: {error}"


def changed_files_error(model_name: str, checkpoint_name: str, changed: str) -> str:
    """Return the error of an instance that was not started because a file of its
    checkpoint differs from what import recorded. `changed` names that file."""
    return (
        f"the files of checkpoint '{model_name}:{checkpoint_name}' changed after "
        f"import, and Berth does not serve changed files: {changed}; import the files "
        "again as a new checkpoint (berth model import PATH --name MODEL --checkpoint "
        "NEW) and update the endpoint to it"
    )


def blocks_start(last_error: str) -> bool:
    """Tell whether an instance's last error is one that each later start repeats until
    someone acts, because the model's files are unavailable or changed after import.

    The reconciler finds these before it starts a process, so a process's own last line
    of output matches only if it happens to begin with the same words.
    """
    return _BLOCKED_START.match(last_error) is not None


# The summary of the reason that `failed_start_reason` writes, as read back by
# `caller_failure_reason`.
_FAILED_START = re.compile(r"^(an instance failed to start \d+ times in a row) \(")


def failed_start_reason(attempts: int, last_error: str) -> str:
    """Return the state reason of an endpoint that failed because an instance failed to
    start `attempts` times in a row, the last time with `last_error`."""
    return (
        f"an instance failed to start {attempts} times in a row ({last_error}); "
        "fix the cause, then restart the endpoint"
    )


def caller_failure_reason(reason: str) -> str:
    """Return the part of a Failed endpoint's reason that callers with only an endpoint
    API key may read, or "" when there is none.

    Only the summary of a known reason is returned. The instance's error in a reason is
    the last line of its log, which can name server file paths, packages and settings,
    so it is left out, and so is any reason that this function does not recognize.
    """
    match = _FAILED_START.match(reason)
    return match.group(1) if match else ""
