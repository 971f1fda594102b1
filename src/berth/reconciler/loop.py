"""The reconcile loop: compares each endpoint's desired state with its instances and
acts through the backend until they match.

One step is idempotent and may be repeated at any time; the loop runs steps on a timer
and whenever a request handler records a change. The loop must never stop while the
server runs, so a failing step is logged with its traceback and the endpoint ID, and
the next step tries again.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from berth.backends.base import Backend, InstanceSpec, ProcessState
from berth.db.engine import Database
from berth.db.models import Endpoint, Instance, utcnow
from berth.hub.builtin import resolve_artifact
from berth.reconciler.probes import Prober
from berth.service.common import mark_changed, new_id
from berth.service.endpoints import slots_in_use
from berth.states import DesiredState, EndpointState, InstanceState

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass
class Timing:
    interval_s: float = 0.5
    health_interval_s: float = 2.0
    unhealthy_after: int = 3
    start_timeout_s: float = 300.0
    # Time between taking an instance out of routing and asking it to exit; longer than
    # a gateway's sync interval, so no gateway still sends it new requests.
    drain_grace_s: float = 1.0
    drain_timeout_s: float = 30.0
    max_start_failures: int = 3
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    slow_step_s: float = 5.0


@dataclass
class Placement:
    capacity: int
    models_dir: object  # pathlib.Path; kept loose to avoid importing settings here


@dataclass
class _Track:
    """What the reconciler remembers of one instance between steps (not persisted)."""

    started: float = 0.0
    last_health_check: float = 0.0
    health_failures: int = 0
    start_failures: int = 0
    crashes: int = 0
    restart_at: float = 0.0
    drain_started: float | None = None
    terminated_at: float | None = None
    ready_probe: bool = field(default=False)


class Reconciler:
    def __init__(
        self,
        database: Database,
        backend: Backend,
        placement: Placement,
        timing: Timing | None = None,
        clock: Clock = time.monotonic,
        on_change: Callable[[], None] | None = None,
        prober: Prober | None = None,
    ) -> None:
        self._database = database
        self._backend = backend
        self._placement = placement
        self._timing = timing or Timing()
        self._clock = clock
        self._on_change = on_change or (lambda: None)
        self._tracks: dict[str, _Track] = {}
        self._prober = prober or Prober()
        self._changed = False

    # -- start-up ---------------------------------------------------------------------

    def recover(self) -> None:
        """End processes left by an earlier server run and mark their instances for restart.

        Instances of that run were children of the old server; they are gone or orphaned,
        so each open instance row is restarted in place by the next steps.
        """
        with self._database.session() as session:
            rows = session.scalars(select(Instance).where(Instance.ended_at.is_(None))).all()
            for row in rows:
                self._backend.end_orphan(row.id, row.pid)
                if row.state == InstanceState.DRAINING:
                    self._end(session, row)
                    continue
                row.state = InstanceState.EXITED
                row.pid = None
                row.address = ""
                row.ready_at = None
                row.last_error = "the server restarted; starting the instance again"
                mark_changed(session, row)
            if rows:
                logger.info("recovering %d instances left by the previous server run", len(rows))

    # -- the loop ---------------------------------------------------------------------

    async def run(self, wake: asyncio.Event, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            started = self._clock()
            try:
                await self.step()
            except Exception:
                logger.exception("reconcile step failed; retrying on the next tick")
            elapsed = self._clock() - started
            if elapsed > self._timing.slow_step_s:
                logger.warning("reconcile step took %.1f s", elapsed)
            try:
                await asyncio.wait_for(wake.wait(), timeout=self._timing.interval_s)
            except TimeoutError:
                pass
            wake.clear()
        await self._prober.close()

    async def step(self) -> None:
        """Reconcile every endpoint that is not deleted or still has instances."""
        with self._database.session() as session:
            open_ids = select(Instance.endpoint_id).where(Instance.ended_at.is_(None))
            endpoint_ids = session.scalars(
                select(Endpoint.id)
                .where(or_(Endpoint.deleted_at.is_(None), Endpoint.id.in_(open_ids)))
                .order_by(Endpoint.created_at, Endpoint.id)
            ).all()

        self._changed = False
        for endpoint_id in endpoint_ids:
            try:
                with self._database.session() as session:
                    endpoint = session.get(Endpoint, endpoint_id)
                    if endpoint is not None:
                        await self._reconcile(session, endpoint)
            except Exception:
                logger.exception("reconciling endpoint %s failed", endpoint_id)
        if self._changed:
            self._on_change()

    async def _reconcile(self, session: Session, endpoint: Endpoint) -> None:
        instances = [row for row in endpoint.instance_rows if row.ended_at is None]
        await self._observe(session, endpoint, instances)
        instances = [row for row in instances if row.ended_at is None]

        if endpoint.deleted_at is not None or endpoint.desired_state != DesiredState.RUNNING:
            self._wind_down(session, endpoint, instances)
        else:
            await self._converge(session, endpoint, instances)

    # -- observing instances ----------------------------------------------------------

    async def _observe(self, session: Session, endpoint: Endpoint, rows: list[Instance]) -> None:
        now = self._clock()
        probes: list[tuple[Instance, str]] = []
        for row in rows:
            track = self._tracks.setdefault(row.id, _Track(started=now))
            status = self._backend.status(row.id)

            if status.state == ProcessState.UNKNOWN:
                if row.state == InstanceState.DRAINING:
                    self._end(session, row)
                elif row.state != InstanceState.EXITED:
                    self._backend.end_orphan(row.id, row.pid)
                    self._mark_exited(session, row, track, "the instance process was lost")
                continue

            if status.state == ProcessState.EXITED:
                self._backend.forget(row.id)
                if row.state == InstanceState.DRAINING:
                    self._end(session, row)
                else:
                    logger.warning(
                        "instance %s of endpoint %s %s", row.id, endpoint.id, status.reason
                    )
                    self._mark_exited(session, row, track, status.reason)
                continue

            if row.state == InstanceState.STARTING:
                if now - track.started > self._timing.start_timeout_s:
                    row.last_error = (
                        f"did not become ready within {self._timing.start_timeout_s:.0f} s"
                    )
                    self._backend.kill(row.id)
                else:
                    probes.append((row, "/ready"))
            elif row.state == InstanceState.READY:
                if now - track.last_health_check >= self._timing.health_interval_s:
                    track.last_health_check = now
                    probes.append((row, "/health"))
            elif row.state == InstanceState.DRAINING:
                self._advance_drain(row, track, now)

        results = await self._prober.check_many([(row.address, path) for row, path in probes])
        for (row, path), ok in zip(probes, results, strict=True):
            self._apply_probe(session, endpoint, row, path, ok)

    def _apply_probe(
        self, session: Session, endpoint: Endpoint, row: Instance, path: str, ok: bool
    ) -> None:
        track = self._tracks[row.id]
        if path == "/ready":
            if ok:
                row.state = InstanceState.READY
                row.ready_at = utcnow()
                row.last_error = ""
                track.start_failures = 0
                track.crashes = 0
                track.health_failures = 0
                track.last_health_check = self._clock()
                mark_changed(session, row)
                self._changed = True
                logger.info("instance %s of endpoint %s is ready", row.id, endpoint.id)
            return

        if ok:
            track.health_failures = 0
            return
        track.health_failures += 1
        if track.health_failures >= self._timing.unhealthy_after:
            row.state = InstanceState.UNHEALTHY
            row.last_error = f"failed {track.health_failures} health checks in a row; restarting it"
            mark_changed(session, row)
            self._changed = True
            logger.warning(
                "instance %s of endpoint %s is unhealthy; killing it", row.id, endpoint.id
            )
            self._backend.kill(row.id)

    def _advance_drain(self, row: Instance, track: _Track, now: float) -> None:
        if track.drain_started is None:
            track.drain_started = now
        if track.terminated_at is None:
            if now - track.drain_started >= self._timing.drain_grace_s:
                self._backend.terminate(row.id)
                track.terminated_at = now
        elif now - track.terminated_at >= self._timing.drain_timeout_s:
            logger.warning("instance %s did not exit after draining; killing it", row.id)
            self._backend.kill(row.id)

    def _mark_exited(self, session: Session, row: Instance, track: _Track, reason: str) -> None:
        if row.state == InstanceState.STARTING:
            track.start_failures += 1
        track.crashes += 1
        delay = min(
            self._timing.backoff_max_s,
            self._timing.backoff_initial_s * 2 ** max(0, track.crashes - 1),
        )
        track.restart_at = self._clock() + delay
        row.state = InstanceState.EXITED
        row.pid = None
        row.ready_at = None
        row.last_error = reason
        mark_changed(session, row)
        self._changed = True

    def _end(self, session: Session, row: Instance) -> None:
        row.state = InstanceState.EXITED
        row.ended_at = utcnow()
        row.pid = None
        mark_changed(session, row)
        self._tracks.pop(row.id, None)
        self._backend.forget(row.id)
        self._changed = True

    def _drain(self, session: Session, row: Instance) -> None:
        """Take an instance out of routing; it is asked to exit after the drain grace."""
        if row.state == InstanceState.DRAINING:
            return
        if self._backend.status(row.id).state != ProcessState.RUNNING:
            self._end(session, row)
            return
        row.state = InstanceState.DRAINING
        track = self._tracks.setdefault(row.id, _Track())
        track.drain_started = self._clock()
        mark_changed(session, row)
        self._changed = True

    # -- stopping and deleting --------------------------------------------------------

    def _wind_down(self, session: Session, endpoint: Endpoint, rows: list[Instance]) -> None:
        for row in rows:
            self._drain(session, row)
        remaining = [row for row in rows if row.ended_at is None]

        if endpoint.deleted_at is not None:
            reason = f"ending {len(remaining)} instances" if remaining else "deleted"
            self._set_state(session, endpoint, EndpointState.DELETING, reason)
        elif remaining:
            self._set_state(
                session, endpoint, EndpointState.STOPPING, f"ending {len(remaining)} instances"
            )
        else:
            self._set_state(session, endpoint, EndpointState.STOPPED, "")

    # -- converging a running endpoint ------------------------------------------------

    async def _converge(self, session: Session, endpoint: Endpoint, rows: list[Instance]) -> None:
        if (
            endpoint.state == EndpointState.FAILED
            and endpoint.observed_generation == endpoint.generation
        ):
            for row in rows:
                self._drain(session, row)
            return

        active = [row for row in rows if row.state != InstanceState.DRAINING]
        if endpoint.state in (EndpointState.PENDING, EndpointState.STOPPED, EndpointState.FAILED):
            if not self._admit(session, endpoint):
                return

        current = [row for row in active if row.generation == endpoint.generation]
        old = [row for row in active if row.generation != endpoint.generation]

        for row in self._surplus(current, endpoint.instances):
            self._drain(session, row)
            current.remove(row)
        while len(current) < endpoint.instances:
            row = await self._start_new(session, endpoint)
            if row is None:
                return
            current.append(row)
        for row in current:
            if (
                row.state == InstanceState.EXITED
                and self._clock() >= self._tracks[row.id].restart_at
            ):
                if not await self._restart(session, endpoint, row):
                    return

        if self._deploy_failed(session, endpoint, current, old):
            return

        all_ready = all(row.state == InstanceState.READY for row in current)
        if all_ready:
            for row in old:
                self._drain(session, row)
        draining = any(row.state == InstanceState.DRAINING for row in rows)
        self._update_running_state(
            session, endpoint, current, all_ready and not old and not draining
        )

    def _admit(self, session: Session, endpoint: Endpoint) -> bool:
        """Move a waiting endpoint to Deploying if its instances fit in the free slots."""
        capacity = self._placement.capacity
        used = slots_in_use(session, excluding=endpoint.id)
        if endpoint.instances > capacity - used:
            self._set_state(
                session,
                endpoint,
                EndpointState.PENDING,
                f"waiting for {endpoint.instances} free instance slots "
                f"({used} of {capacity} in use); stop or delete another endpoint to make room",
            )
            return False
        self._set_state(
            session, endpoint, EndpointState.DEPLOYING, f"starting {endpoint.instances} instances"
        )
        return True

    @staticmethod
    def _surplus(current: list[Instance], wanted: int) -> list[Instance]:
        if len(current) <= wanted:
            return []
        # Remove instances that serve nothing first, then the newest.
        ranked = sorted(
            current,
            key=lambda row: (row.state == InstanceState.READY, -row.created_at.timestamp()),
        )
        return ranked[: len(current) - wanted]

    async def _start_new(self, session: Session, endpoint: Endpoint) -> Instance | None:
        row = Instance(
            id=new_id(),
            endpoint_id=endpoint.id,
            generation=endpoint.generation,
            state=InstanceState.STARTING,
            created_at=utcnow(),
        )
        session.add(row)
        endpoint.instance_rows.append(row)
        if not await self._launch(session, endpoint, row):
            return None
        return row

    async def _restart(self, session: Session, endpoint: Endpoint, row: Instance) -> bool:
        row.restart_count += 1
        logger.info(
            "restarting instance %s of endpoint %s (restart %d)",
            row.id,
            endpoint.id,
            row.restart_count,
        )
        return await self._launch(session, endpoint, row)

    async def _launch(self, session: Session, endpoint: Endpoint, row: Instance) -> bool:
        model = endpoint.model
        try:
            path = await asyncio.to_thread(
                resolve_artifact, model.artifact, self._placement.models_dir
            )
        except Exception as exc:
            logger.exception("model files of endpoint %s are unavailable", endpoint.id)
            self._fail(
                session, endpoint, f"the files of model '{model.name}' are unavailable: {exc}"
            )
            return False

        spec = InstanceSpec(
            instance_id=row.id,
            endpoint_id=endpoint.id,
            ml_app=model.ml_app,
            model_name=model.name,
            model_path=str(path) if path else None,
            settings=dict(endpoint.settings or {}),
        )
        handle = self._backend.start(spec)
        track = self._tracks.setdefault(row.id, _Track())
        track.started = self._clock()
        track.health_failures = 0
        row.state = InstanceState.STARTING
        row.address = handle.address
        row.pid = handle.pid
        row.started_at = utcnow()
        row.ready_at = None
        mark_changed(session, row)
        self._changed = True
        return True

    def _deploy_failed(
        self, session: Session, endpoint: Endpoint, current: list[Instance], old: list[Instance]
    ) -> bool:
        serving = any(row.state == InstanceState.READY for row in current + old)
        failing = [
            row
            for row in current
            if self._tracks.get(row.id, _Track()).start_failures >= self._timing.max_start_failures
        ]
        if serving or not failing:
            return False
        last_error = failing[0].last_error or "no output"
        self._fail(
            session,
            endpoint,
            f"an instance failed to start {self._timing.max_start_failures} times in a row "
            f"({last_error}); fix the cause, then restart the endpoint",
        )
        for row in current + old:
            self._drain(session, row)
        return True

    def _fail(self, session: Session, endpoint: Endpoint, reason: str) -> None:
        endpoint.observed_generation = endpoint.generation
        self._set_state(session, endpoint, EndpointState.FAILED, reason)

    def _update_running_state(
        self, session: Session, endpoint: Endpoint, current: list[Instance], converged: bool
    ) -> None:
        if converged:
            endpoint.observed_generation = endpoint.generation
            endpoint.observed_instances = endpoint.instances
            self._set_state(session, endpoint, EndpointState.LIVE, "")
            return

        ready = sum(1 for row in current if row.state == InstanceState.READY)
        spec_reached = (
            endpoint.observed_generation == endpoint.generation
            and endpoint.observed_instances == endpoint.instances
        )
        if endpoint.state == EndpointState.LIVE and spec_reached:
            return
        progress = f"{ready} of {endpoint.instances} instances ready"
        if endpoint.state in (EndpointState.LIVE, EndpointState.UPDATING):
            self._set_state(session, endpoint, EndpointState.UPDATING, progress)
        else:
            self._set_state(session, endpoint, EndpointState.DEPLOYING, progress)

    def _set_state(
        self, session: Session, endpoint: Endpoint, state: EndpointState, reason: str
    ) -> None:
        if endpoint.state == state and endpoint.state_reason == reason:
            return
        if endpoint.state != state:
            logger.info(
                "endpoint %s (%s): %s -> %s %s",
                endpoint.id,
                endpoint.name,
                endpoint.state,
                state,
                reason,
            )
            endpoint.state_changed_at = utcnow()
        endpoint.state = state
        endpoint.state_reason = reason
        mark_changed(session, endpoint)
        self._changed = True


class ReconcilerThread:
    """Runs the reconciler on its own thread and event loop, apart from request handling.

    Instances are started from this thread, which lives as long as the server, because
    the local backend ties each child's life to the thread that started it.
    """

    def __init__(self, reconciler: Reconciler) -> None:
        self._reconciler = reconciler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="berth-reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=10)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._ready.set()
        try:
            self._reconciler.recover()
        except Exception:
            logger.exception("recovering instances of the previous run failed")
        await self._reconciler.run(self._wake, self._stopping)

    def wake(self) -> None:
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self.wake()
        self._thread.join(timeout=timeout)
