"""The reconcile loop: compares each endpoint's desired state with its instances and
acts through the backend until they match.

One step is idempotent and may be repeated at any time. The loop runs steps on a timer,
whenever a request handler records a change, and whenever an instance process exits. The
loop must never stop while the server runs, so a failing step is logged with its
traceback and the endpoint ID, and the next step tries again.

A step does its slow work (health probes, locating model files) before it opens the
write transactions, so that a hung instance or a model being built never holds the
database's write lock while API requests wait for it.
"""

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_, not_, or_, select
from sqlalchemy.orm import Session, selectinload

from berth.backends.base import Backend, InstanceSpec, ProcessState
from berth.db.engine import Database
from berth.db.models import Checkpoint, Endpoint, Instance, utcnow
from berth.hub.builtin import ModelFilesMissing, resolve_artifact
from berth.hub.importer import find_changed_file
from berth.reconciler.plans import LaunchPlan
from berth.reconciler.probes import Prober, ProbeResult
from berth.service.common import mark_changed, new_id
from berth.service.endpoints import slots_in_use
from berth.states import (
    DesiredState,
    EndpointState,
    InstanceState,
    capacity_wait_reason,
    changed_files_error,
    failed_start_reason,
    unavailable_files_error,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
# The last error of an instance that the server's restart ended. Its relaunch does not
# count as a restart of the instance, because the instance itself did not fail.
SERVER_RESTART_REASON = "the server restarted; starting the instance again"


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
    # Time between SIGTERM and SIGKILL for the instances of a deleted endpoint.
    delete_drain_timeout_s: float = 5.0
    # How long a step waits for the probes it started; slower ones are read next step.
    probe_wait_s: float = 0.2


@dataclass
class Placement:
    capacity: int
    models_dir: Path


@dataclass
class _Track:
    """In-memory record of one instance between reconcile steps; it is not persisted."""

    started: float = 0.0
    last_health_check: float = 0.0
    health_failures: int = 0
    start_failures: int = 0
    crashes: int = 0
    restart_at: float = 0.0
    drain_started: float | None = None
    terminated_at: float | None = None
    drain_timeout_s: float | None = None
    ready_probe: bool = field(default=False)
    # Why the reconciler killed the process, kept as its last error in place of the
    # "killed by SIGKILL" that the process's exit reports.
    kill_reason: str | None = None


@dataclass(frozen=True)
class _ProbeTarget:
    instance_id: str
    address: str
    path: str


@dataclass(frozen=True)
class _Snapshot:
    """The endpoints and open instances that a step reads before it acts."""

    endpoint_ids: list[str]
    # (instance ID, state, address) of every open instance.
    instances: list[tuple[str, InstanceState, str]]
    # Model artifacts of endpoints that may start an instance in this step.
    artifacts: set[str]


def _ending(count: int) -> str:
    return f"ending {count} instance" if count == 1 else f"ending {count} instances"


def _starting(count: int) -> str:
    return f"starting {count} instance" if count == 1 else f"starting {count} instances"


def _missing_files_fix(endpoint: Endpoint) -> str:
    """Return the next step for an endpoint whose model files are gone.

    A new import of the files gets a new model or checkpoint ID, so the endpoint must be
    moved to it.
    """
    return (
        "import the files again with `berth model import`, then move the endpoint to them "
        f"with `berth endpoint update {endpoint.name} --project {endpoint.project.name} "
        "--model-checkpoint MODEL:CHECKPOINT`"
    )


def threads_per_instance(instances: int) -> int:
    """Return the compute threads for each of an endpoint's `instances` on this machine.

    The usable cores are shared out, so the instances of one endpoint do not compete for
    the same cores. On 2 cores, 2 instances of an embedding model with 1 thread each
    served 1.14 times the requests of the same 2 instances with 2 threads each
    (docs/benchmarks.md).
    """
    # NOTE: the count is taken when an instance starts, so after a scale-up the older
    # instances keep their larger share until they restart, and endpoints that share
    # the machine are not counted.
    cores = len(os.sched_getaffinity(0))
    return max(1, cores // max(1, instances))


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
        # Probes still running, by instance ID, and results that no step has applied yet.
        self._probing: dict[str, asyncio.Task[ProbeResult]] = {}
        self._probe_results: dict[str, tuple[_ProbeTarget, ProbeResult]] = {}
        # Model folders located in this step, or the error that locating one raised.
        self._artifacts: dict[str, Path | None | Exception] = {}

    # -- start-up ---------------------------------------------------------------------

    def recover(self) -> None:
        """End processes left by an earlier server run and mark their instances for restart.

        Instances of that run were children of the old server, so they are gone or
        orphaned, and the next steps restart each open instance row in place. The backend
        also finds and ends processes that no row names, because the old server died
        between starting one and recording it, so that no instance runs twice.

        Endpoints that were Live or Updating have no ready instance now, so they go back
        to Deploying until one of their relaunched instances is ready.
        """
        with self._database.session() as session:
            rows = session.scalars(select(Instance).where(Instance.ended_at.is_(None))).all()
            # Lock the endpoint rows before the first write, which locks the change counter,
            # in the order that steps and API handlers use, so on PostgreSQL none deadlock.
            endpoints = session.scalars(
                select(Endpoint)
                .where(Endpoint.id.in_(sorted({row.endpoint_id for row in rows})))
                .order_by(Endpoint.id)
                .with_for_update()
            ).all()
            for row in rows:
                self._backend.end_orphan(row.id, row.pid)
                if row.state == InstanceState.DRAINING:
                    self._end(session, row)
                    continue
                if row.state in (InstanceState.STARTING, InstanceState.READY):
                    row.last_error = SERVER_RESTART_REASON
                # An instance that had exited or failed its health checks keeps its error,
                # and its relaunch counts as a restart.
                row.state = InstanceState.EXITED
                row.pid = None
                row.address = ""
                row.local_socket = ""
                row.ready_at = None
                mark_changed(session, row)
            relaunched = {row.endpoint_id for row in rows if row.ended_at is None}
            for endpoint in endpoints:
                if endpoint.id in relaunched and endpoint.state in (
                    EndpointState.LIVE,
                    EndpointState.UPDATING,
                ):
                    self._set_state(
                        session,
                        endpoint,
                        EndpointState.DEPLOYING,
                        f"the server restarted; 0 of {endpoint.instances} instances ready",
                    )
            if rows:
                logger.info("recovering %d instances left by the previous server run", len(rows))
        strays = self._backend.end_strays()
        if strays:
            logger.warning("ended %d instance processes that no instance record named", strays)

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
        for task in self._probing.values():
            task.cancel()
        await self._prober.close()

    async def step(self) -> None:
        """Reconcile every endpoint that is not deleted or still has instances."""
        snapshot = self._read_snapshot()
        await self._probe(snapshot)
        await self._locate_artifacts(snapshot.artifacts)

        self._changed = False
        for endpoint_id in snapshot.endpoint_ids:
            try:
                with self._database.session() as session:
                    # Lock the endpoint row before any other write, because every write
                    # also locks the change counter's row. API handlers lock in the same
                    # order, so on PostgreSQL the two cannot deadlock.
                    endpoint = session.get(Endpoint, endpoint_id, with_for_update=True)
                    if endpoint is not None:
                        self._reconcile(session, endpoint)
            except Exception:
                logger.exception("reconciling endpoint %s failed", endpoint_id)
        if self._changed:
            self._on_change()

    def _read_snapshot(self) -> _Snapshot:
        with self._database.session() as session:
            open_ids = select(Instance.endpoint_id).where(Instance.ended_at.is_(None))
            # A Stopped endpoint meant to stay stopped has nothing to do until a start,
            # update or delete changes one of these columns. Leaving such endpoints out
            # keeps a step's cost in proportion to the endpoints that run.
            settled = and_(
                Endpoint.desired_state == DesiredState.STOPPED,
                Endpoint.state == EndpointState.STOPPED,
            )
            endpoints = session.scalars(
                select(Endpoint)
                .where(
                    or_(
                        Endpoint.id.in_(open_ids),
                        and_(Endpoint.deleted_at.is_(None), not_(settled)),
                    )
                )
                .order_by(Endpoint.created_at, Endpoint.id)
                .options(selectinload(Endpoint.open_instances), selectinload(Endpoint.checkpoint))
            ).all()
            instances = session.execute(
                select(Instance.id, Instance.state, Instance.address).where(
                    Instance.ended_at.is_(None)
                )
            ).all()
            artifacts = {endpoint.artifact for endpoint in endpoints if self._may_launch(endpoint)}
            return _Snapshot(
                endpoint_ids=[endpoint.id for endpoint in endpoints],
                instances=[(row[0], InstanceState(row[1]), row[2]) for row in instances],
                artifacts=artifacts,
            )

    @staticmethod
    def _may_launch(endpoint: Endpoint) -> bool:
        if endpoint.deleted_at is not None or endpoint.desired_state != DesiredState.RUNNING:
            return False
        serving = [
            row
            for row in endpoint.open_instances
            if row.generation == endpoint.generation
            and row.state not in (InstanceState.DRAINING, InstanceState.EXITED)
        ]
        return len(serving) < endpoint.instances

    # -- probing, outside any transaction ---------------------------------------------

    async def _probe(self, snapshot: _Snapshot) -> None:
        """Start the readiness and health probes that are due, and wait briefly for them.

        A probe of a hung instance runs into its timeout; the step does not wait for it,
        and a later step applies its result.
        """
        now = self._clock()
        for instance_id, state, address in snapshot.instances:
            if instance_id in self._probing or not address:
                continue
            if state == InstanceState.STARTING:
                path = "/ready"
            elif state == InstanceState.READY:
                track = self._tracks.setdefault(instance_id, _Track(started=now))
                if now - track.last_health_check < self._timing.health_interval_s:
                    continue
                track.last_health_check = now
                path = "/health"
            else:
                continue
            target = _ProbeTarget(instance_id, address, path)
            task = asyncio.ensure_future(self._run_probe(target))
            self._probing[instance_id] = task

        if self._probing:
            await asyncio.wait(set(self._probing.values()), timeout=self._timing.probe_wait_s)
        for instance_id, task in list(self._probing.items()):
            if task.done():
                del self._probing[instance_id]
        # Results for instances that ended meanwhile would never be read.
        open_ids = {instance_id for instance_id, _state, _address in snapshot.instances}
        for instance_id in set(self._probe_results) - open_ids:
            del self._probe_results[instance_id]

    async def _run_probe(self, target: _ProbeTarget) -> ProbeResult:
        try:
            (result,) = await self._prober.check_many([(target.address, target.path)])
        except Exception:
            logger.exception("probing instance %s failed", target.instance_id)
            result = ProbeResult(ok=False)
        self._probe_results[target.instance_id] = (target, result)
        return result

    async def _locate_artifacts(self, artifacts: set[str]) -> None:
        """Find (or build) the model folders that instances of this step may need."""
        self._artifacts = {}
        for artifact in artifacts:
            try:
                self._artifacts[artifact] = await asyncio.to_thread(
                    resolve_artifact, artifact, self._placement.models_dir
                )
            except Exception as exc:
                self._artifacts[artifact] = exc

    # -- reconciling one endpoint, inside its transaction -----------------------------

    def _reconcile(self, session: Session, endpoint: Endpoint) -> None:
        instances = [row for row in endpoint.instance_rows if row.ended_at is None]
        self._observe(session, endpoint, instances)
        instances = [row for row in instances if row.ended_at is None]

        if endpoint.deleted_at is not None or endpoint.desired_state != DesiredState.RUNNING:
            self._wind_down(session, endpoint, instances)
        else:
            self._converge(session, endpoint, instances)

    # -- observing instances ----------------------------------------------------------

    def _observe(self, session: Session, endpoint: Endpoint, rows: list[Instance]) -> None:
        now = self._clock()
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
                        f"did not become ready within {self._timing.start_timeout_s:.0f} s; "
                        "killed it"
                    )
                    track.kill_reason = row.last_error
                    self._backend.kill(row.id)
            elif row.state == InstanceState.UNHEALTHY:
                # Killed already; repeat it until the process is gone.
                self._backend.kill(row.id)
            elif row.state == InstanceState.DRAINING:
                self._advance_drain(row, track, now)

            result = self._probe_results.pop(row.id, None)
            if result is not None:
                target, probe = result
                if target.address == row.address:
                    self._apply_probe(session, endpoint, row, target.path, probe)

    def _apply_probe(
        self, session: Session, endpoint: Endpoint, row: Instance, path: str, probe: ProbeResult
    ) -> None:
        track = self._tracks[row.id]
        ok = probe.ok
        if path == "/ready":
            if ok and row.state == InstanceState.STARTING:
                row.state = InstanceState.READY
                row.ready_at = utcnow()
                # last_error stays, so that a restarted instance still shows why it restarted.
                # The column is 32 characters wide, and runtime names are much shorter.
                row.runtime = str(probe.body.get("runtime", ""))[:32]
                row.runtime_note = str(probe.body.get("runtime_note", ""))
                track.start_failures = 0
                track.crashes = 0
                track.health_failures = 0
                track.last_health_check = self._clock()
                mark_changed(session, row)
                self._changed = True
                logger.info("instance %s of endpoint %s is ready", row.id, endpoint.id)
            return

        if row.state != InstanceState.READY:
            return
        if ok:
            track.health_failures = 0
            return
        track.health_failures += 1
        logger.info(
            "instance %s of endpoint %s failed health check %d of %d",
            row.id,
            endpoint.id,
            track.health_failures,
            self._timing.unhealthy_after,
        )
        if track.health_failures >= self._timing.unhealthy_after:
            row.state = InstanceState.UNHEALTHY
            row.last_error = (
                f"failed {track.health_failures} health checks in a row; killed it to restart it"
            )
            track.kill_reason = row.last_error
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
            return
        timeout = track.drain_timeout_s or self._timing.drain_timeout_s
        if now - track.terminated_at >= timeout:
            logger.warning(
                "instance %s did not exit within %.0f s of draining; killing it", row.id, timeout
            )
            self._backend.kill(row.id)

    def _mark_exited(
        self,
        session: Session,
        row: Instance,
        track: _Track,
        reason: str,
        *,
        failed_start: bool = False,
    ) -> None:
        if failed_start or row.state == InstanceState.STARTING:
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
        row.last_error = track.kill_reason or reason
        track.kill_reason = None
        mark_changed(session, row)
        self._changed = True

    def _end(self, session: Session, row: Instance) -> None:
        logger.info("instance %s of endpoint %s has ended", row.id, row.endpoint_id)
        row.state = InstanceState.EXITED
        row.ended_at = utcnow()
        row.pid = None
        mark_changed(session, row)
        self._tracks.pop(row.id, None)
        self._backend.forget(row.id)
        self._changed = True

    def _drain(self, session: Session, row: Instance, timeout_s: float | None = None) -> None:
        """Take an instance out of routing and schedule its end.

        SIGTERM follows after the drain grace, and SIGKILL `timeout_s` (default: the drain
        timeout) after that if the process is still running.
        """
        if row.state == InstanceState.DRAINING:
            return
        if self._backend.status(row.id).state != ProcessState.RUNNING:
            self._end(session, row)
            return
        logger.info(
            "instance %s of endpoint %s is draining: it takes no new requests and ends once "
            "those in flight finish",
            row.id,
            row.endpoint_id,
        )
        row.state = InstanceState.DRAINING
        track = self._tracks.setdefault(row.id, _Track())
        track.drain_started = self._clock()
        track.drain_timeout_s = timeout_s
        mark_changed(session, row)
        self._changed = True

    # -- stopping and deleting --------------------------------------------------------

    def _wind_down(self, session: Session, endpoint: Endpoint, rows: list[Instance]) -> None:
        deleted = endpoint.deleted_at is not None
        timeout = self._timing.delete_drain_timeout_s if deleted else None
        for row in rows:
            self._drain(session, row, timeout)
            if deleted and row.state == InstanceState.DRAINING:
                # A delete shortens the drain of instances that were already draining.
                track = self._tracks.setdefault(row.id, _Track())
                track.drain_timeout_s = min(
                    track.drain_timeout_s or self._timing.drain_timeout_s,
                    self._timing.delete_drain_timeout_s,
                )
        remaining = [row for row in rows if row.ended_at is None]

        if deleted:
            reason = _ending(len(remaining)) if remaining else "deleted"
            if not remaining and endpoint.state_reason != reason:
                # _set_state logs changes of state only, and this one keeps Deleting.
                logger.info(
                    "endpoint %s (%s) is deleted: its instances have ended",
                    endpoint.id,
                    endpoint.name,
                )
            self._set_state(session, endpoint, EndpointState.DELETING, reason)
        elif remaining:
            self._set_state(session, endpoint, EndpointState.STOPPING, _ending(len(remaining)))
        else:
            self._set_state(session, endpoint, EndpointState.STOPPED, "")

    # -- converging a running endpoint ------------------------------------------------

    def _converge(self, session: Session, endpoint: Endpoint, rows: list[Instance]) -> None:
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
        old = self._stop_superseded(
            session, endpoint, [row for row in active if row.generation != endpoint.generation]
        )

        for row in self._surplus(current, endpoint.instances):
            self._drain(session, row)
            current.remove(row)
        # The old instances that serve, those still draining and the new generation's
        # together stay within the old instance count plus the new one. So the instances
        # that a newer change stopped must exit before their replacements start.
        still_draining = [
            row for row in rows if row.ended_at is None and row.state == InstanceState.DRAINING
        ]
        limit = max(endpoint.observed_instances, len(old)) + endpoint.instances
        while len(current) < endpoint.instances and (
            len(old) + len(still_draining) + len(current) < limit
        ):
            current.append(self._start_new(session, endpoint))
        for row in current:
            if (
                row.state == InstanceState.EXITED
                and self._clock() >= self._tracks[row.id].restart_at
            ):
                self._restart(session, endpoint, row)

        all_ready = len(current) == endpoint.instances and all(
            row.state == InstanceState.READY for row in current
        )
        if not all_ready:
            # Until the new instances serve, an old one that crashed, or that the server's
            # restart ended, starts again on the model it served before.
            for row in old:
                if (
                    row.state != InstanceState.EXITED
                    or self._clock() < self._tracks.setdefault(row.id, _Track()).restart_at
                ):
                    continue
                # Parsed only for an instance due to start, not for every old one each step.
                plan = LaunchPlan.saved(row)
                if plan is not None:
                    self._restart(session, endpoint, row, plan)

        if self._deploy_failed(session, endpoint, current, old):
            return

        if all_ready:
            for row in old:
                self._drain(session, row)
        draining = any(row.state == InstanceState.DRAINING for row in rows)
        self._update_running_state(
            session, endpoint, current, old, all_ready and not old and not draining
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
                capacity_wait_reason(endpoint.instances, used, capacity),
            )
            return False
        self._set_state(session, endpoint, EndpointState.DEPLOYING, _starting(endpoint.instances))
        return True

    def _stop_superseded(
        self, session: Session, endpoint: Endpoint, old: list[Instance]
    ) -> list[Instance]:
        """Stop the old instances that a newer change superseded, and return the others.

        `old` contains the open instances of earlier generations that are not draining.
        Those of the generation that the endpoint last reached keep serving, and start
        again after a crash, until the current generation is ready. An instance of a later
        generation was new in a rolling update that a newer change replaced. It keeps
        serving only while it is Ready and fewer than `observed_instances` old instances
        serve, the newest generation first. All others are stopped and never started again.
        """
        reached = [row for row in old if row.generation <= endpoint.observed_generation]
        superseded = sorted(
            (row for row in old if row.generation > endpoint.observed_generation),
            key=lambda row: (row.state != InstanceState.READY, -row.generation),
        )
        serving = list(reached)
        for row in superseded:
            if row.state == InstanceState.READY and len(serving) < endpoint.observed_instances:
                serving.append(row)
                continue
            logger.info(
                "stopping instance %s of endpoint %s (generation %d) because generation %d "
                "supersedes it",
                row.id,
                endpoint.id,
                row.generation,
                endpoint.generation,
            )
            ready = row.state == InstanceState.READY
            self._drain(session, row)
            if row.state == InstanceState.DRAINING and not ready:
                # An instance that is not Ready is out of routing already, so it gets
                # SIGTERM at once, without the drain's grace.
                self._backend.terminate(row.id)
                self._tracks[row.id].terminated_at = self._clock()
        return serving

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

    def _start_new(self, session: Session, endpoint: Endpoint) -> Instance:
        row = Instance(
            id=new_id(),
            endpoint_id=endpoint.id,
            generation=endpoint.generation,
            state=InstanceState.STARTING,
            created_at=utcnow(),
        )
        session.add(row)
        endpoint.instance_rows.append(row)
        self._launch(session, endpoint, row)
        return row

    def _restart(
        self,
        session: Session,
        endpoint: Endpoint,
        row: Instance,
        plan: LaunchPlan | None = None,
    ) -> None:
        if row.last_error == SERVER_RESTART_REASON:
            logger.info(
                "starting instance %s of endpoint %s again after the server restart",
                row.id,
                endpoint.id,
            )
        else:
            row.restart_count += 1
            logger.info(
                "restarting instance %s of endpoint %s (restart %d)",
                row.id,
                endpoint.id,
                row.restart_count,
            )
        self._launch(session, endpoint, row, plan)

    def _launch(
        self,
        session: Session,
        endpoint: Endpoint,
        row: Instance,
        plan: LaunchPlan | None = None,
    ) -> None:
        """Start the instance's process, or record a failed start if its files are missing
        or changed after import.

        `plan` gives what to start; by default, the endpoint's current model and settings.
        """
        plan = plan or LaunchPlan.current(endpoint)
        # The endpoint's checkpoint decides the files; the model only names them.
        artifact = plan.artifact
        located = self._artifacts.get(artifact)
        if artifact not in self._artifacts:
            # Not located before the transaction (the endpoint changed since the step's
            # snapshot); locate it now rather than wait a step.
            try:
                located = resolve_artifact(artifact, self._placement.models_dir)
            except Exception as exc:
                located = exc
            self._artifacts[artifact] = located
        reason = None
        if isinstance(located, Exception):
            reason = unavailable_files_error(plan.model_name, located)
            if isinstance(located, ModelFilesMissing):
                reason += "; " + _missing_files_fix(endpoint)
        elif located is not None:
            reason = self._changed_files_reason(session, plan, located)
        if reason is not None:
            logger.error("instance %s of endpoint %s cannot start: %s", row.id, endpoint.id, reason)
            # This counts as a failed start, like a process that exits while loading, so it
            # is retried with backoff and _deploy_failed fails the endpoint only if no
            # instance is ready. A restart or update thus leaves the old instances serving.
            track = self._tracks.setdefault(row.id, _Track(started=self._clock()))
            self._mark_exited(session, row, track, reason, failed_start=True)
            return
        path = located

        spec = InstanceSpec(
            instance_id=row.id,
            endpoint_id=endpoint.id,
            # An update keeps the ML App, so every generation of the endpoint shares it.
            ml_app=endpoint.model.ml_app,
            model_name=plan.model_name,
            model_path=str(path) if path else None,
            settings=dict(plan.settings),
            checkpoint_format=plan.checkpoint_format,
            threads=threads_per_instance(endpoint.instances),
        )
        handle = self._backend.start(spec)
        track = self._tracks.setdefault(row.id, _Track())
        track.started = self._clock()
        track.health_failures = 0
        row.state = InstanceState.STARTING
        row.launch = plan.to_json()
        row.address = handle.address
        row.local_socket = handle.local_socket
        row.pid = handle.pid
        row.started_at = utcnow()
        row.ready_at = None
        # The relaunched process reports its runtime again once it is ready.
        row.runtime = ""
        row.runtime_note = ""
        mark_changed(session, row)
        self._changed = True

    @staticmethod
    def _changed_files_reason(session: Session, plan: LaunchPlan, path: Path) -> str | None:
        """Return why the checkpoint's files at `path` may not be served, or None.

        The sizes and modification times that import recorded are compared, which catches
        a linked file that was overwritten without reading its content again. Files that
        import copied into Berth's storage are compared by size only, because copying or
        restoring the Berth home folder gives them new modification times."""
        if plan.checkpoint_id is None:
            return None
        checkpoint = session.get(Checkpoint, plan.checkpoint_id)
        if checkpoint is None or not checkpoint.file_stats:
            return None
        root = path if path.is_dir() else path.parent
        changed = find_changed_file(root, checkpoint.file_stats, compare_mtime=checkpoint.linked)
        if changed is None:
            return None
        return changed_files_error(plan.model_name, checkpoint.name, changed)

    def _deploy_failed(
        self, session: Session, endpoint: Endpoint, current: list[Instance], old: list[Instance]
    ) -> bool:
        serving = any(row.state == InstanceState.READY for row in current + old)
        # An old instance being started again may serve soon, unless it keeps failing too.
        old_restarting = any(row.launch and not self._keeps_failing(row) for row in old)
        failing = self._failing_starts(current)
        if serving or old_restarting or not failing:
            return False
        last_error = failing[0].last_error or "no output"
        self._fail(
            session, endpoint, failed_start_reason(self._timing.max_start_failures, last_error)
        )
        for row in current + old:
            self._drain(session, row)
        return True

    def _failing_starts(self, rows: list[Instance]) -> list[Instance]:
        """Return the instances that failed to start `max_start_failures` times in a row."""
        return [row for row in rows if self._keeps_failing(row)]

    def _keeps_failing(self, row: Instance) -> bool:
        """Tell whether the instance failed to start `max_start_failures` times in a row."""
        track = self._tracks.get(row.id, _Track())
        return track.start_failures >= self._timing.max_start_failures

    def _fail(self, session: Session, endpoint: Endpoint, reason: str) -> None:
        endpoint.observed_generation = endpoint.generation
        self._set_state(session, endpoint, EndpointState.FAILED, reason)

    def _update_running_state(
        self,
        session: Session,
        endpoint: Endpoint,
        current: list[Instance],
        old: list[Instance],
        converged: bool,
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
        progress = f"{ready} of {endpoint.instances} instances ready"
        if endpoint.state == EndpointState.LIVE and spec_reached:
            # It stays Live while an instance restarts. The reason lets dashboards and
            # scripts see that it serves with fewer instances meanwhile.
            # Not converged with every instance ready means that surplus or old instances
            # still drain, which needs no reason.
            restarting = endpoint.instances - ready
            reason = f"{progress}; {restarting} restarting" if restarting > 0 else ""
            self._set_state(session, endpoint, EndpointState.LIVE, reason)
            return
        if endpoint.state == EndpointState.DEPLOYING and spec_reached:
            # Only `recover` moves an endpoint that had reached its spec back to Deploying.
            # It serves again as soon as one instance is ready, like a Live endpoint does
            # while one of its instances restarts.
            if ready:
                self._set_state(session, endpoint, EndpointState.LIVE, progress)
            else:
                self._set_state(
                    session, endpoint, EndpointState.DEPLOYING, f"the server restarted; {progress}"
                )
            return
        if endpoint.state in (EndpointState.LIVE, EndpointState.UPDATING):
            old_serving = sum(1 for row in old if row.state == InstanceState.READY)
            if old_serving:
                progress = self._rollout_progress(current, ready, endpoint.instances, old_serving)
            self._set_state(session, endpoint, EndpointState.UPDATING, progress)
        else:
            self._set_state(session, endpoint, EndpointState.DEPLOYING, progress)

    def _rollout_progress(
        self, current: list[Instance], ready: int, wanted: int, old_serving: int
    ) -> str:
        """Describe a rolling update while `old_serving` old instances still serve.

        New instances are counted apart from the old ones. When they keep failing to start,
        the reason names their error, because the endpoint stays Updating, not Failed.
        """
        if old_serving == 1:
            old_text, verb = "1 old instance", "keeps"
        else:
            old_text, verb = f"{old_serving} old instances", "keep"
        failing = self._failing_starts(current)
        if failing:
            return (
                f"new instances failed to start {self._timing.max_start_failures} times in a "
                f"row ({failing[0].last_error or 'no output'}) and are still being retried; "
                f"{old_text} {verb} serving; fix the cause, or change the endpoint back"
            )
        return f"{ready} of {wanted} new instances ready; {old_text} {verb} serving meanwhile"

    def _set_state(
        self, session: Session, endpoint: Endpoint, state: EndpointState, reason: str
    ) -> None:
        if endpoint.state == state and endpoint.state_reason == reason:
            return
        if endpoint.state != state:
            logger.info(
                "endpoint %s (%s): %s -> %s%s",
                endpoint.id,
                endpoint.name,
                endpoint.state,
                state,
                f" ({reason})" if reason else "",
            )
            endpoint.state_changed_at = utcnow()
        endpoint.state = state
        endpoint.state_reason = reason
        mark_changed(session, endpoint)
        self._changed = True


class ReconcilerThread:
    """Runs the reconciler on its own thread and event loop, apart from request handling.

    Instances are started from this thread, which lives as long as the server, because
    the local backend ties each child's life to the thread that started it. `start`
    returns once the previous run's instances are recovered, so that a gateway loading
    its routes afterwards does not see their stale addresses as ready.
    """

    def __init__(self, reconciler: Reconciler) -> None:
        self._reconciler = reconciler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="berth-reconciler", daemon=True)

    def start(self, recover_timeout_s: float = 60.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout=recover_timeout_s):
            logger.warning(
                "recovering the previous run's instances takes longer than %.0f s; "
                "serving meanwhile",
                recover_timeout_s,
            )

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        try:
            self._reconciler.recover()
        except Exception:
            logger.exception("recovering instances of the previous run failed")
        finally:
            self._ready.set()
        await self._reconciler.run(self._wake, self._stopping)

    def wake(self) -> None:
        """Run a step soon. Any thread may call this; it does nothing once the loop ended."""
        if self._loop is not None and self._wake is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:
                # The loop has closed: the server is stopping and no step will run again.
                pass

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self.wake()
        self._thread.join(timeout=timeout)
