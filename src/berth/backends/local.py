"""Instances as child processes of the server, each with its own runtime server.

The parent binds a listening socket on 127.0.0.1 and hands its file descriptor to the
child, so the address is known before the child starts and no port can be taken in
between. Children die with the server (PR_SET_PDEATHSIG) and run in their own session
so a Ctrl-C in the terminal reaches only the server, which then stops them in order.

Each child carries its installation's home folder in `BERTH_INSTANCE_OWNER`, so a server
that starts after a crash can find and end the children of the run before it. A watcher
thread per child reports its exit at once, instead of at the reconciler's next poll.
"""

import contextlib
import ctypes
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from berth.backends.base import InstanceHandle, InstanceSpec, ProcessState, ProcessStatus
from berth.states import MLApp

logger = logging.getLogger(__name__)

LISTEN_BACKLOG = 2048
LOG_TAIL_BYTES = 4096
# Variables that must not reach instance processes: they hold platform secrets.
_SECRET_VARIABLES = ("BERTH_ADMIN_KEY", "BERTH_API_KEY", "BERTH_SECRET_KEY")
_PR_SET_PDEATHSIG = 1
OWNER_VARIABLE = "BERTH_INSTANCE_OWNER"
# Endpoint settings that become runtime command-line options of the same name.
_RUNTIME_SETTINGS = (
    "max_batch_size",
    "max_batch_wait_ms",
    "max_completion_tokens",
    "context_length",
    "echo_delay_ms",
    "echo_cpu_rounds",
    "runtime",
)


# GNU OpenMP spin rounds before an idle thread sleeps. Embedding batches run a few
# large parallel regions, and a short spin served 1.42 times the texts of sleeping at
# once under load. Generation runs many short regions per token, one token after
# another. With the longer spin (GNU OpenMP's own default), one stream through an
# instance went from 0.58 to 0.76 of plain generate(), measured with a runtime started
# by hand (docs/benchmarks.md).
SPIN_COUNT = 10_000
GENERATION_SPIN_COUNT = 300_000


def openmp_spin_count(ml_app: MLApp) -> int:
    """GOMP_SPINCOUNT for instances of `ml_app`, unless the server's environment sets it."""
    return GENERATION_SPIN_COUNT if ml_app is MLApp.TEXT_GENERATION else SPIN_COUNT


def local_socket_name(instance_id: str) -> str:
    """Return the name of an instance's Unix socket in Linux's abstract namespace.

    A leading "@" marks the NUL byte that starts the name. An abstract name needs no
    file, so no folder path can make it too long and nothing is left behind when the
    process ends. The name contains the instance ID. A relaunch whose earlier process
    still has it bound fails to bind it, and `_local_listener` then starts the instance
    without one.
    """
    return f"@berth-instance-{instance_id}"


def _local_listener(instance_id: str) -> socket.socket | None:
    """Bind and listen on the instance's Unix socket; None where that is not possible.

    The gateway reaches a local instance over it with less CPU per request than over
    TCP (docs/benchmarks.md). The parent binds it, as it does the TCP port, so the name
    that it records belongs to the instance before the child starts.
    """
    if not sys.platform.startswith("linux"):
        return None
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind("\0" + local_socket_name(instance_id)[1:])
        listener.listen(LISTEN_BACKLOG)
    except OSError as exc:
        listener.close()
        logger.warning(
            "instance %s gets no Unix socket (%s); the gateway reaches it over TCP",
            instance_id,
            exc,
        )
        return None
    return listener


def die_with_parent() -> None:
    """Ask the kernel to send this process SIGTERM when its parent thread ends (Linux)."""
    # NOTE: the signal fires when the thread that started the child exits, so instances
    # must be started from a thread that lives as long as the server (the reconciler's).
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(frozen=True)
class RuntimeOptions:
    """Server-wide options given to every instance's runtime."""

    # Time that requests in flight get after SIGTERM before the runtime cancels them.
    shutdown_timeout_s: float = 30.0
    # Time without response data, while requests are in flight, after which the runtime
    # reports itself unhealthy; None turns the check off.
    stall_timeout_s: float | None = None


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]


class LocalBackend:
    def __init__(
        self,
        logs_dir: Path,
        python: str = sys.executable,
        options: RuntimeOptions | None = None,
        owner: str | None = None,
    ) -> None:
        self._logs_dir = logs_dir
        self._python = python
        self._options = options or RuntimeOptions()
        # Marks this installation's children; the logs folder is unique to a home folder.
        self._owner = owner or str(logs_dir.resolve())
        self._children: dict[str, _Child] = {}
        self._lock = threading.Lock()
        self._exit_listener: Callable[[], None] | None = None

    def set_exit_listener(self, listener: Callable[[], None]) -> None:
        self._exit_listener = listener

    def start(self, spec: InstanceSpec) -> InstanceHandle:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        local = _local_listener(spec.instance_id)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(LISTEN_BACKLOG)
            port = listener.getsockname()[1]
            child = self._spawn(
                spec, listener.fileno(), local.fileno() if local is not None else None
            )
        finally:
            # The child has its own copies of the descriptors now.
            listener.close()
            if local is not None:
                local.close()

        with self._lock:
            self._children[spec.instance_id] = child
        threading.Thread(
            target=self._watch,
            args=(spec.instance_id, child.process),
            name=f"berth-watch-{spec.instance_id[:8]}",
            daemon=True,
        ).start()
        logger.info(
            "started instance %s of endpoint %s: pid %d on 127.0.0.1:%d",
            spec.instance_id,
            spec.endpoint_id,
            child.process.pid,
            port,
        )
        return InstanceHandle(
            spec.instance_id,
            f"127.0.0.1:{port}",
            child.process.pid,
            local_socket=local_socket_name(spec.instance_id) if local is not None else "",
        )

    def _spawn(self, spec: InstanceSpec, fd: int, local_fd: int | None) -> _Child:
        command = [
            self._python,
            "-m",
            "berth.runtime",
            "--ml-app",
            spec.ml_app.value,
            "--model-path",
            spec.model_path or "",
            "--model-name",
            spec.model_name,
            "--instance-id",
            spec.instance_id,
            "--fd",
            str(fd),
            *(("--local-fd", str(local_fd)) if local_fd is not None else ()),
            "--shutdown-timeout-s",
            str(self._options.shutdown_timeout_s),
            "--stall-timeout-s",
            str(self._options.stall_timeout_s or 0),
        ]
        if spec.checkpoint_format is not None:
            command += ["--checkpoint-format", spec.checkpoint_format.value]
        for option in _RUNTIME_SETTINGS:
            if option in spec.settings:
                command += ["--" + option.replace("_", "-"), str(spec.settings[option])]

        env = {name: value for name, value in os.environ.items() if name not in _SECRET_VARIABLES}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        # Idle OpenMP threads of torch spin by default, so instances sharing cores wait
        # on each other. Passive waiting gave 3 to 5 times the throughput in bench/.
        # A spin (GNU OpenMP's count, which overrides the policy) keeps the threads
        # awake between the back-to-back parallel regions of one batch or token.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env.setdefault("GOMP_SPINCOUNT", str(openmp_spin_count(spec.ml_app)))
        # A thread count set in the server's environment applies to every instance.
        if spec.threads is not None:
            env.setdefault("OMP_NUM_THREADS", str(spec.threads))
        env[OWNER_VARIABLE] = self._owner

        log_dir = self._logs_dir / "instances" / spec.endpoint_id
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{spec.instance_id}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed when the child is forgotten
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            pass_fds=(fd,) if local_fd is None else (fd, local_fd),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        return _Child(process, log_path, log_file)

    def _watch(self, instance_id: str, process: subprocess.Popen[bytes]) -> None:
        process.wait()
        logger.debug("instance %s exited with %s", instance_id, process.returncode)
        listener = self._exit_listener
        if listener is not None:
            try:
                listener()
            except Exception:
                logger.exception("the exit listener failed for instance %s", instance_id)

    def status(self, instance_id: str) -> ProcessStatus:
        with self._lock:
            child = self._children.get(instance_id)
        if child is None:
            return ProcessStatus(ProcessState.UNKNOWN)
        code = child.process.poll()
        if code is None:
            return ProcessStatus(ProcessState.RUNNING)
        return ProcessStatus(ProcessState.EXITED, code, _exit_reason(code, child.log_path))

    def terminate(self, instance_id: str) -> None:
        self._signal(instance_id, signal.SIGTERM)

    def kill(self, instance_id: str) -> None:
        self._signal(instance_id, signal.SIGKILL)

    def _signal(self, instance_id: str, signum: int) -> None:
        with self._lock:
            child = self._children.get(instance_id)
        if child is not None and child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signum)

    def forget(self, instance_id: str) -> None:
        with self._lock:
            child = self._children.pop(instance_id, None)
        if child is not None:
            child.process.poll()
            child.log_file.close()

    def end_orphan(self, instance_id: str, pid: int | None) -> bool:
        if pid is None:
            return False
        try:
            process = psutil.Process(pid)
            if instance_id not in process.cmdline():
                return False
            process.kill()
            process.wait(timeout=10)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.TimeoutExpired):
            return False
        logger.info("ended orphan process %d of instance %s", pid, instance_id)
        return True

    def end_strays(self) -> int:
        with self._lock:
            own = {child.process.pid for child in self._children.values()}
        strays = []
        for process in psutil.process_iter(["pid", "cmdline"]):
            cmdline = process.info.get("cmdline") or []
            if process.pid in own or "berth.runtime" not in cmdline:
                continue
            try:
                if process.environ().get(OWNER_VARIABLE) != self._owner:
                    continue
                process.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            strays.append(process)
        _gone, alive = psutil.wait_procs(strays, timeout=10)
        for process in strays:
            logger.warning("ended instance process %d left by an earlier server run", process.pid)
        for process in alive:
            logger.error("instance process %d did not end after SIGKILL", process.pid)
        return len(strays)

    def shutdown(self, grace_s: float) -> None:
        with self._lock:
            children = dict(self._children)
        for child in children.values():
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.terminate()
        deadline = time.monotonic() + grace_s
        for instance_id, child in children.items():
            remaining = max(0.0, deadline - time.monotonic())
            try:
                child.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "instance %s did not stop in %.0f s; killing it", instance_id, grace_s
                )
                child.process.kill()
                child.process.wait()
            self.forget(instance_id)


def _exit_reason(code: int, log_path: Path) -> str:
    tail = _last_line(log_path)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        summary = f"killed by {name}"
        # A signal comes from outside the process (a person, the kernel's out-of-memory
        # killer), so the last log line is seldom the cause: keep it only for an error.
        if not _ERROR_LINE.search(tail):
            tail = ""
    else:
        summary = f"exited with status {code}"
    return f"{summary}: {tail}" if tail else summary


_ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|FATAL)\b|Traceback|\w+(Error|Exception):")


def _last_line(log_path: Path) -> str:
    try:
        with open(log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""
