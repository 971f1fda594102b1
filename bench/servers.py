"""The processes that benchmarks start: Berth servers, bare runtimes and the LiteLLM proxy.

Every process listens on 127.0.0.1 only and writes its log into the benchmark's scratch
folder. Each class stops exactly the process (and, for Berth, the instances) it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

from bench.child import REPO_ROOT
from berth.client import Client

T = TypeVar("T")

ADMIN_KEY = "bench-admin-key-0123456789abcdef"
LITELLM_VENV = REPO_ROOT / "bench" / ".venv-litellm"
# LiteLLM refuses to start without a master key; it is the bearer token clients send.
LITELLM_MASTER_KEY = "sk-bench-litellm-master-key"
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(
    condition: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.02
) -> T:
    """Poll `condition` until it returns a truthy value; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as error:  # the condition may fail while a process starts
            last_error = error
        else:
            if result:
                return result
        time.sleep(interval_s)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}{detail}")


def cpu_seconds(pid: int, children: bool = True) -> float:
    """Return user plus system CPU time of `pid` and, optionally, its live descendants."""
    try:
        process = psutil.Process(pid)
        processes = [process, *(process.children(recursive=True) if children else [])]
        total = 0.0
        for member in processes:
            try:
                times = member.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


def descendants(pid: int) -> set[int]:
    """Return the process IDs of the live descendants of `pid`."""
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


class ManagedProcess:
    """A child process with its output in a log file, stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self, command: list[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.command = command
        self.log_path = log_path
        log = open(log_path, "ab")  # noqa: SIM115 - the child keeps writing to it
        try:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        finally:
            log.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(
                f"{self.command[:4]} exited with {code}; last log lines:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def python_module(module: str, experiments: tuple[str, ...] = ()) -> list[str]:
    """Return the command that runs `python -m module`, patched with `experiments`."""
    if experiments:
        return [sys.executable, "-m", "bench.experiments", *experiments, "--", module]
    return [sys.executable, "-m", module]


def _clean_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    # The benchmarks target 127.0.0.1 only; a proxy setting must not redirect them.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    env.update(extra)
    return env


class BerthServer(ManagedProcess):
    """`berth up` with its own home folder, port and admin key.

    `experiments` names patches from bench.experiments to apply to this server only.
    """

    def __init__(self, home: Path, experiments: tuple[str, ...] = (), **settings: str) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home.mkdir(parents=True, exist_ok=True)
        env = _clean_env(
            BERTH_HOME=str(home),
            BERTH_ADMIN_KEY=ADMIN_KEY,
            # `berth up` saves a CLI profile on first start; keep it in the scratch folder.
            XDG_CONFIG_HOME=str(home / "config"),
            **settings,
        )
        super().__init__(
            [*python_module("berth", experiments), "up", "--port", str(self.port)],
            home.parent / f"{home.name}-server.log",
            env,
        )
        wait_until(self._healthy, START_TIMEOUT_S, f"the Berth server on {self.url}")

    def _healthy(self) -> bool:
        self.check_alive()
        try:
            return httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self) -> Client:
        return Client(server=self.url, api_key=ADMIN_KEY, timeout_s=60)

    def instance_addresses(self, endpoint_id: str) -> list[str]:
        """Return "host:port" of the endpoint's ready instances, read from the database."""
        from sqlalchemy import select

        from berth.db.engine import Database
        from berth.db.models import Instance
        from berth.states import InstanceState

        database = Database(f"sqlite:///{self.home / 'berth.db'}")
        try:
            with database.session() as session:
                rows = session.scalars(
                    select(Instance.address).where(
                        Instance.endpoint_id == endpoint_id,
                        Instance.state == InstanceState.READY,
                        Instance.ended_at.is_(None),
                    )
                ).all()
        finally:
            database.dispose()
        return [row for row in rows if row]

    def instance_times(self, endpoint_id: str) -> tuple[float, float]:
        """Return when the endpoint's first open instance was started and seen ready,
        as Unix times, read from the database."""
        from sqlalchemy import select

        from berth.db.engine import Database
        from berth.db.models import Instance

        database = Database(f"sqlite:///{self.home / 'berth.db'}")
        try:
            with database.session() as session:
                row = session.execute(
                    select(Instance.started_at, Instance.ready_at)
                    .where(Instance.endpoint_id == endpoint_id, Instance.ended_at.is_(None))
                    .order_by(Instance.created_at)
                ).first()
        finally:
            database.dispose()
        if row is None or row[0] is None or row[1] is None:
            raise RuntimeError(f"endpoint {endpoint_id} has no instance that was seen ready")
        return row[0].timestamp(), row[1].timestamp()

    def instance_pids(self, endpoint_id: str) -> list[int]:
        with self.client() as client:
            info = client.get_endpoint(endpoint_id)
        return [row["pid"] for row in info["instance_list"] if row.get("pid")]

    def write_endpoint_settings(self, endpoint_id: str, settings: dict[str, Any]) -> None:
        """Replace the endpoint's stored runtime settings in the database.

        This is the way to set runtime options that the API rejects, such as Echo's
        `echo_cpu_rounds`. Running instances keep their options until they are replaced.
        """
        from sqlalchemy import update

        from berth.db.engine import Database
        from berth.db.models import Endpoint

        database = Database(f"sqlite:///{self.home / 'berth.db'}")
        try:
            with database.session() as session:
                session.execute(
                    update(Endpoint).where(Endpoint.id == endpoint_id).values(settings=settings)
                )
        finally:
            database.dispose()


def create_live_endpoint(
    server: BerthServer, name: str, model: str, instances: int = 1, timeout_s: float = 300.0
) -> tuple[dict[str, Any], str]:
    """Create an endpoint in the default project, wait until Live, return it and its key."""
    with server.client() as client:
        created = client.create_endpoint("default", name, model, instances=instances)
        info = client.wait_for_state(created["id"], {"Live"}, timeout_s=timeout_s, poll_s=0.05)
    return info, created["first_key"]


def create_live_endpoint_with_settings(
    server: BerthServer,
    name: str,
    model: str,
    settings: dict[str, Any],
    instances: int = 1,
    timeout_s: float = 300.0,
) -> tuple[dict[str, Any], str]:
    """Create an endpoint whose instances run with stored `settings` that the API rejects.

    The endpoint is created, its settings are written into the database, and a restart
    replaces its instances with ones started with those settings. Returns the endpoint
    once all its instances are ready at the restart's generation, with its key.
    """
    created, key = create_live_endpoint(server, name, model, instances, timeout_s)
    server.write_endpoint_settings(created["id"], settings)
    with server.client() as client:
        generation = client.restart_endpoint(created["id"])["generation"]

        def restarted() -> dict[str, Any] | None:
            info: dict[str, Any] = client.get_endpoint(created["id"])
            rows = info["instance_list"]
            if info["state"] != "Live" or len(rows) != instances:
                return None
            if any(row["state"] != "Ready" or row["generation"] != generation for row in rows):
                return None
            return info

        info = wait_until(
            restarted,
            timeout_s,
            f"endpoint {name} to run {instances} instances with {settings}",
            interval_s=0.05,
        )
    return info, key


class RuntimeProcess(ManagedProcess):
    """`python -m berth.runtime` started by hand on a free port, as a user would."""

    def __init__(
        self,
        log_path: Path,
        ml_app: str,
        model_path: str,
        model_name: str,
        extra_args: list[str] | None = None,
        experiments: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            *python_module("berth.runtime", experiments),
            "--ml-app",
            ml_app,
            "--model-path",
            model_path,
            "--model-name",
            model_name,
            "--port",
            str(self.port),
            *(extra_args or []),
        ]
        super().__init__(command, log_path, _clean_env(**(env or {})))

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        def ready() -> bool:
            self.check_alive()
            try:
                return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout_s, f"the runtime on {self.url} to be ready")


def litellm_installed() -> bool:
    return (LITELLM_VENV / "bin" / "litellm").exists()


class LiteLLMProxy(ManagedProcess):
    """LiteLLM's proxy in front of one OpenAI-compatible upstream, from bench/.venv-litellm.

    It runs with the settings that keep it off the network: the bundled model cost map
    instead of a download at start, telemetry off, and a master key.
    """

    def __init__(self, folder: Path, upstream_base_url: str, model_name: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = folder / "litellm-config.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {model_name}\n"
            "    litellm_params:\n"
            f"      model: openai/{model_name}\n"
            f"      api_base: {upstream_base_url}\n"
            "      api_key: unused\n"
            "general_settings:\n"
            f"  master_key: {LITELLM_MASTER_KEY}\n"
        )
        env = _clean_env(
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_TELEMETRY="False",
            LITELLM_LOG="ERROR",
            # LiteLLM writes caches and its UI build under HOME; keep them in the scratch folder.
            HOME=str(folder),
        )
        super().__init__(
            [
                str(LITELLM_VENV / "bin" / "litellm"),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--num_workers",
                "1",
            ],
            folder / "litellm.log",
            env,
        )
        wait_until(self._alive, START_TIMEOUT_S, f"the LiteLLM proxy on {self.url}", 0.1)

    def _alive(self) -> bool:
        self.check_alive()
        try:
            return httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
