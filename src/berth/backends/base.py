"""The seam between the reconciler and whatever runs instances."""

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from berth.states import CheckpointFormat, MLApp


@dataclass(frozen=True)
class InstanceSpec:
    instance_id: str
    endpoint_id: str
    ml_app: MLApp
    model_name: str
    # Local folder of the model files (the .gguf file for GGUF); None for Echo.
    model_path: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    # Layout of the files at model_path; None for built-in models, which use the ML App's.
    checkpoint_format: CheckpointFormat | None = None
    # Compute threads for the model (OMP_NUM_THREADS); None leaves the library's default.
    threads: int | None = None


@dataclass(frozen=True)
class InstanceHandle:
    instance_id: str
    # host:port of the instance's runtime server.
    address: str
    pid: int | None
    # A Unix socket on which the runtime server also listens, for gateways on the same
    # machine: "@name" for a name in Linux's abstract namespace. "" when there is none.
    local_socket: str = ""


class ProcessState(StrEnum):
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ProcessStatus:
    state: ProcessState
    exit_code: int | None = None
    # The last lines the instance wrote, to explain an exit to a person.
    reason: str = ""


class Backend(Protocol):
    def start(self, spec: InstanceSpec) -> InstanceHandle:
        """Start an instance; returns at once, before the model is loaded."""
        ...

    def status(self, instance_id: str) -> ProcessStatus:
        """Report whether the instance's process runs; UNKNOWN if this backend never started it."""
        ...

    def terminate(self, instance_id: str) -> None:
        """Ask the instance to finish in-flight requests and exit."""
        ...

    def kill(self, instance_id: str) -> None:
        """End the instance at once."""
        ...

    def forget(self, instance_id: str) -> None:
        """Drop what the backend remembers of an instance that has exited."""
        ...

    def end_orphan(self, instance_id: str, pid: int | None) -> bool:
        """End a process left by an earlier server run; True if one was found."""
        ...

    def end_strays(self) -> int:
        """End this installation's instance processes that this backend did not start.

        Such processes belong to a server run that was killed. Returns how many were ended.
        """
        ...

    def set_exit_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener` (from any thread) as soon as an instance process exits."""
        ...

    def shutdown(self, grace_s: float) -> None:
        """End every instance this backend started, giving each `grace_s` to finish."""
        ...
