"""Several gateway and API worker processes in front of one reconciler.

`berth up --workers N` binds the listening socket and runs `serve_with_workers` in the
supervising process. That runs the reconciler (so it alone starts and ends instances)
and starts N worker processes (`python -m berth.workers`) that accept connections on that socket.
Each worker keeps its own routing table, synced from the database by change number, so
a change made through one worker is in force on every worker within a sync interval.

A worker that records a change sends SIGUSR1 to the supervisor to wake the reconciler.
A worker that dies is started again. On SIGTERM, SIGINT or SIGHUP the supervisor stops
listening, lets every worker finish its requests in flight, then ends the instances.
Workers get SIGTERM if the supervisor dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from types import FrameType

import uvicorn

from berth.backends.local import die_with_parent
from berth.db.engine import Database
from berth.httpserver import protocol_class
from berth.logs import configure_logging
from berth.secrets import KeyVault
from berth.service.keys import set_vault
from berth.settings import Settings

logger = logging.getLogger(__name__)

LISTEN_BACKLOG = 2048
# Minimum time between two starts of the same worker, so a worker that fails at once
# does not spin.
WORKER_RESTART_DELAY_S = 1.0
SUPERVISE_INTERVAL_S = 0.2
# Time beyond the workers' graceful-shutdown timeout before they are killed.
WORKER_EXIT_MARGIN_S = 5.0
WAKE_SIGNAL = signal.SIGUSR1


def bind_listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)


class Supervisor:
    """Starts, watches and stops the worker processes."""

    def __init__(self, settings: Settings, listener: socket.socket) -> None:
        self._settings = settings
        self._listener = listener
        self._workers: dict[int, subprocess.Popen[bytes]] = {}
        self._started_at: dict[int, float] = {}
        self._stopping = threading.Event()

    def request_stop(self) -> None:
        self._stopping.set()

    def start_worker(self, index: int) -> None:
        settings = self._settings
        env = dict(os.environ)
        env.update(
            BERTH_HOME=str(settings.home),
            BERTH_HOST=settings.host,
            BERTH_PORT=str(settings.port),
        )
        fd = self._listener.fileno()
        command = [
            sys.executable,
            "-m",
            "berth.workers",
            "--fd",
            str(fd),
            "--index",
            str(index),
            "--supervisor-pid",
            str(os.getpid()),
        ]
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            pass_fds=(fd,),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self._workers[index] = process
        self._started_at[index] = time.monotonic()
        logger.info("started worker %d: pid %d", index, process.pid)

    def supervise(self) -> None:
        """Restart workers that exit until a stop is requested; runs on the main thread."""
        while not self._stopping.wait(SUPERVISE_INTERVAL_S):
            for index, process in list(self._workers.items()):
                code = process.poll()
                if code is None:
                    continue
                if time.monotonic() - self._started_at[index] < WORKER_RESTART_DELAY_S:
                    continue
                logger.error(
                    "worker %d (pid %d) exited with %s; starting it again", index, process.pid, code
                )
                self.start_worker(index)

    def stop(self) -> None:
        """Stop listening, let each worker drain its requests, and end the workers."""
        self._listener.close()
        for process in self._workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._settings.shutdown_timeout_s + WORKER_EXIT_MARGIN_S
        for index, process in self._workers.items():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error(
                    "worker %d (pid %d) did not stop in time; killing it", index, process.pid
                )
                process.kill()
                process.wait()


def serve_with_workers(settings: Settings, database: Database, listener: socket.socket) -> None:
    """Run the reconciler here and serve the API and gateway on `listener` from
    `settings.workers` worker processes, until SIGTERM, SIGINT or SIGHUP."""
    from berth.server import BACKEND_SHUTDOWN_GRACE_S, create_backend, create_reconciler

    backend = create_backend(settings)
    reconciler_thread = create_reconciler(settings, database, backend, on_change=None)
    supervisor = Supervisor(settings, listener)

    def on_stop_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s; stopping", signal.Signals(signum).name)
        supervisor.request_stop()

    def on_wake_signal(_signum: int, _frame: FrameType | None) -> None:
        reconciler_thread.wake()

    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    # A closed terminal sends SIGHUP, which would otherwise end the supervisor at once.
    signal.signal(signal.SIGHUP, on_stop_signal)
    signal.signal(WAKE_SIGNAL, on_wake_signal)

    reconciler_thread.start()
    for index in range(settings.workers):
        supervisor.start_worker(index)
    logger.info("Berth is serving on %s with %d workers", settings.local_url, settings.workers)
    if settings.public_url:
        logger.info("endpoint URLs start with BERTH_PUBLIC_URL, %s", settings.public_url)
    try:
        supervisor.supervise()
    finally:
        supervisor.stop()
        logger.info("stopping: ending instances")
        reconciler_thread.stop()
        backend.shutdown(BACKEND_SHUTDOWN_GRACE_S)
        database.dispose()


def _wake_supervisor(supervisor_pid: int) -> None:
    # Once the supervisor is gone this process is re-parented; never signal the new parent.
    if os.getppid() == supervisor_pid:
        os.kill(supervisor_pid, WAKE_SIGNAL)


def worker_main(argv: list[str] | None = None) -> None:
    from berth.server import create_app

    parser = argparse.ArgumentParser(prog="python -m berth.workers")
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    parser.add_argument("--index", type=int, required=True, help="worker number, from 0")
    parser.add_argument("--supervisor-pid", type=int, required=True)
    args = parser.parse_args(argv)

    settings = Settings()
    configure_logging(settings.log_json)
    database = Database(settings.resolved_database_url)
    set_vault(KeyVault.from_file(settings.secret_file, settings.secret_key_text))
    app = create_app(
        settings,
        database,
        run_reconciler=False,
        worker_label=str(args.index),
        wake_reconciler=lambda: _wake_supervisor(args.supervisor_pid),
    )
    config = uvicorn.Config(
        app,
        http=protocol_class(
            settings.header_timeout_s,
            settings.max_header_bytes,
            settings.body_timeout_s,
            settings.cors_origins,
        ),
        log_config=None,
        access_log=False,
        # create_app applies it to the API and the UI only (see GatewayFirst).
        proxy_headers=False,
        # uvicorn takes whole seconds.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),
    )
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=args.fd)])


if __name__ == "__main__":
    worker_main()
