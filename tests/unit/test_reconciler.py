"""Reconcile steps driven with a fake clock, a fake backend and a fake prober.

The database is real (SQLite in a temporary folder) and so is the service layer that
records desired state, so these tests check the same transitions the server makes.
"""

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from berth.api.convert import endpoint_out
from berth.auth import authenticate
from berth.backends.base import InstanceHandle, InstanceSpec, ProcessState, ProcessStatus
from berth.db.engine import Database
from berth.db.models import Endpoint, Instance
from berth.errors import Conflict
from berth.reconciler.loop import Placement, Reconciler, Timing
from berth.reconciler.probes import ProbeResult
from berth.service import endpoints as service
from berth.service import models
from berth.states import EndpointState, InstanceState
from tests.unit.conftest import UNIT_ADMIN_KEY as ADMIN_KEY

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeProcess:
    spec: InstanceSpec
    pid: int
    exit_code: int | None = None
    terminated: bool = False


@dataclass
class FakeBackend:
    processes: dict[str, FakeProcess] = field(default_factory=dict)
    started: list[InstanceSpec] = field(default_factory=list)
    next_pid: int = 100
    # Exit code given to every newly started process, to simulate a model that never loads.
    crash_on_start: int | None = None
    # Processes that go on running after SIGTERM, to simulate requests that never finish.
    ignore_terminate: bool = False

    def start(self, spec: InstanceSpec) -> InstanceHandle:
        self.next_pid += 1
        process = FakeProcess(spec, self.next_pid, exit_code=self.crash_on_start)
        self.processes[spec.instance_id] = process
        self.started.append(spec)
        return InstanceHandle(spec.instance_id, f"127.0.0.1:{self.next_pid}", self.next_pid)

    def status(self, instance_id: str) -> ProcessStatus:
        process = self.processes.get(instance_id)
        if process is None:
            return ProcessStatus(ProcessState.UNKNOWN)
        if process.exit_code is None:
            return ProcessStatus(ProcessState.RUNNING)
        return ProcessStatus(ProcessState.EXITED, process.exit_code, "model failed to load")

    def terminate(self, instance_id: str) -> None:
        process = self.processes[instance_id]
        process.terminated = True
        if not self.ignore_terminate:
            process.exit_code = 0

    def kill(self, instance_id: str) -> None:
        self.processes[instance_id].exit_code = -9

    def forget(self, instance_id: str) -> None:
        self.processes.pop(instance_id, None)

    def end_orphan(self, instance_id: str, pid: int | None) -> bool:
        return False

    def end_strays(self) -> int:
        return 0

    def set_exit_listener(self, listener: object) -> None:
        pass

    def shutdown(self, grace_s: float) -> None:
        self.processes.clear()

    def running(self) -> list[FakeProcess]:
        return [p for p in self.processes.values() if p.exit_code is None]


# What a ready runtime sends on /ready; the reconciler stores the runtime fields.
READY_BODY = {"status": "ready", "runtime": "transformers", "runtime_note": "vLLM not used"}


class FakeProber:
    """Returns probe results: every address is ready unless it is in `down`."""

    def __init__(self, backend: FakeBackend, ready_all: bool = True) -> None:
        self.backend = backend
        self.ready_all = ready_all
        self.down: set[str] = set()

    async def check_many(self, targets: list[tuple[str, str]]) -> list[ProbeResult]:
        return [
            ProbeResult(ok=True, body=READY_BODY)
            if self.ready_all and address not in self.down
            else ProbeResult(ok=False)
            for address, _path in targets
        ]

    async def close(self) -> None:
        pass


@dataclass
class World:
    database: Database
    backend: FakeBackend
    prober: FakeProber
    clock: FakeClock
    reconciler: Reconciler
    capacity: int
    models_dir: Path

    async def step(self, times: int = 1) -> None:
        for _ in range(times):
            await self.reconciler.step()

    async def step_past_backoff(self, steps: int = 10, advance_s: float = 5.0) -> None:
        """Run `steps` steps with `advance_s` seconds between them, longer than a backoff."""
        for _ in range(steps):
            await self.reconciler.step()
            self.clock.advance(advance_s)

    def create(self, name: str, instances: int = 1, model: str = "echo") -> str:
        with self.database.session() as session:
            principal = authenticate(session, ADMIN_KEY, None)
            endpoint, _key = service.create_endpoint(
                session,
                principal,
                self.limits(),
                project_ref="default",
                name=name,
                model_ref=model,
                instances=instances,
            )
            return endpoint.id

    def import_linked(self, name: str, folder: Path, checkpoint: str = "main") -> None:
        """Import `folder` as a checkpoint that stays where it is, as `--link` does."""
        with self.database.session() as session:
            principal = authenticate(session, ADMIN_KEY, None)
            request = models.ImportRequest(
                path=str(folder), name=name, link=True, checkpoint=checkpoint
            )
            models.import_model(session, principal, request, self.models_dir)

    def limits(self) -> service.Limits:
        return service.Limits(capacity=self.capacity, max_instances_per_endpoint=16)

    def change(self, endpoint_id: str, action: str, **kwargs: object) -> None:
        with self.database.session() as session:
            principal = authenticate(session, ADMIN_KEY, None)
            endpoint = session.get(Endpoint, endpoint_id)
            assert endpoint is not None
            if action == "update":
                change = service.EndpointChange(**kwargs)  # type: ignore[arg-type]
                service.update_endpoint(session, principal, self.limits(), endpoint, change)
            else:
                getattr(service, f"{action}_endpoint")(session, principal, endpoint)

    def endpoint(self, endpoint_id: str) -> Endpoint:
        with self.database.session() as session:
            endpoint = session.get(Endpoint, endpoint_id)
            assert endpoint is not None
            return endpoint

    def instances(self, endpoint_id: str) -> list[Instance]:
        with self.database.session() as session:
            return list(
                session.scalars(
                    select(Instance).where(
                        Instance.endpoint_id == endpoint_id, Instance.ended_at.is_(None)
                    )
                )
            )


def make_world(database: Database, tmp_path: Path, capacity: int = 8) -> World:
    backend = FakeBackend()
    prober = FakeProber(backend)
    clock = FakeClock()
    timing = Timing(drain_grace_s=1.0, backoff_initial_s=0.5, health_interval_s=2.0)
    reconciler = Reconciler(
        database,
        backend,
        Placement(capacity, tmp_path / "models"),
        timing,
        clock=clock,
        prober=prober,  # type: ignore[arg-type]
    )
    return World(database, backend, prober, clock, reconciler, capacity, tmp_path / "models")


@pytest.fixture
def world(database: Database, tmp_path: Path) -> World:
    return make_world(database, tmp_path)


async def test_new_endpoint_goes_live(world: World) -> None:
    endpoint_id = world.create("two", instances=2)

    await world.step()
    # The first step admits the endpoint and starts both instances.
    assert world.endpoint(endpoint_id).state == EndpointState.DEPLOYING
    assert len(world.backend.running()) == 2

    await world.step()
    assert world.endpoint(endpoint_id).state == EndpointState.LIVE
    assert all(row.state == InstanceState.READY for row in world.instances(endpoint_id))


async def test_deploying_reason_counts_in_the_singular(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="berth.reconciler.loop")
    world.create("one", instances=1)

    await world.step()

    assert "Pending -> Deploying (starting 1 instance)" in caplog.text


async def test_ready_instance_records_runtime(world: World) -> None:
    endpoint_id = world.create("runtime")

    await world.step()
    (starting,) = world.instances(endpoint_id)
    await world.step()
    (ready,) = world.instances(endpoint_id)

    assert starting.runtime == ""
    assert ready.state == InstanceState.READY
    assert ready.runtime == READY_BODY["runtime"]
    assert ready.runtime_note == READY_BODY["runtime_note"]


async def test_crashed_instance_restarts_while_live(world: World) -> None:
    endpoint_id = world.create("crash", instances=2)
    await world.step(2)
    victim = world.instances(endpoint_id)[0]
    world.backend.processes[victim.id].exit_code = -9

    await world.step()
    # The endpoint stays Live on its other instance; the crashed one waits for backoff.
    assert world.endpoint(endpoint_id).state == EndpointState.LIVE
    assert world.endpoint(endpoint_id).state_reason == "1 of 2 instances ready; 1 restarting"
    assert world.backend.status(victim.id).state == ProcessState.UNKNOWN

    world.clock.advance(1.0)
    await world.step(2)
    rows = {row.id: row for row in world.instances(endpoint_id)}
    assert rows[victim.id].restart_count == 1
    assert rows[victim.id].state == InstanceState.READY
    assert world.endpoint(endpoint_id).state == EndpointState.LIVE
    assert world.endpoint(endpoint_id).state_reason == ""


async def test_rollout_counts_new_instances_apart(world: World) -> None:
    endpoint_id = world.create("rolling")
    await world.step(2)
    world.change(endpoint_id, "restart")

    # The new instance starts while the old one serves.
    await world.step()

    endpoint = world.endpoint(endpoint_id)
    assert endpoint.state == EndpointState.UPDATING
    assert (
        endpoint.state_reason
        == "0 of 1 new instances ready; 1 old instance keeps serving meanwhile"
    )


async def test_failing_rollout_names_error(world: World) -> None:
    endpoint_id = world.create("bad-update")
    await world.step(2)
    world.backend.crash_on_start = 3
    world.change(endpoint_id, "restart")

    await world.step_past_backoff()

    endpoint = world.endpoint(endpoint_id)
    # The old instance serves on, so the endpoint does not fail; its reason names the error.
    assert endpoint.state == EndpointState.UPDATING
    assert endpoint.state_reason.startswith(
        "new instances failed to start 3 times in a row (model failed to load)"
    )
    assert "1 old instance keeps serving" in endpoint.state_reason


async def test_instance_that_never_loads_fails_endpoint(world: World) -> None:
    world.backend.crash_on_start = 3
    endpoint_id = world.create("broken")

    await world.step_past_backoff()

    endpoint = world.endpoint(endpoint_id)
    assert endpoint.state == EndpointState.FAILED
    assert "model failed to load" in endpoint.state_reason
    assert world.instances(endpoint_id) == []
    started_before = len(world.backend.started)

    # A failed endpoint is not retried on its own ...
    await world.step(3)
    assert len(world.backend.started) == started_before

    # ... but a restart tries again.
    world.backend.crash_on_start = None
    world.change(endpoint_id, "restart")
    await world.step(2)
    assert world.endpoint(endpoint_id).state == EndpointState.LIVE


async def test_endpoint_waits_pending_for_capacity(database: Database, tmp_path: Path) -> None:
    world = make_world(database, tmp_path, capacity=2)
    first = world.create("first", instances=2)
    await world.step(2)
    second = world.create("second", instances=1)

    await world.step()
    endpoint = world.endpoint(second)
    assert endpoint.state == EndpointState.PENDING
    assert "2 of 2 in use" in endpoint.state_reason

    world.change(first, "stop")
    await world.step(2)
    assert world.endpoint(second).state == EndpointState.LIVE


async def test_stopping_one_instance_reads_singular(world: World) -> None:
    endpoint_id = world.create("single", instances=1)
    await world.step(2)

    world.change(endpoint_id, "stop")
    await world.step()

    assert world.endpoint(endpoint_id).state_reason == "ending 1 instance"


async def test_scale_down_drains_before_ending(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint_id = world.create("shrink", instances=2)
    await world.step(2)

    caplog.set_level(logging.INFO, logger="berth.reconciler.loop")
    world.change(endpoint_id, "update", instances=1)
    await world.step()
    states = sorted(row.state for row in world.instances(endpoint_id))
    assert states == [InstanceState.DRAINING, InstanceState.READY]
    # Still inside the drain grace: the process has not been asked to exit yet.
    assert not any(p.terminated for p in world.backend.processes.values())
    # A draining surplus instance is not a restart.
    assert "restarting" not in world.endpoint(endpoint_id).state_reason
    [surplus] = [row for row in world.instances(endpoint_id) if row.state == InstanceState.DRAINING]

    world.clock.advance(1.5)
    await world.step(2)
    assert len(world.instances(endpoint_id)) == 1
    assert world.endpoint(endpoint_id).state == EndpointState.LIVE
    # The server's log records when the surplus instance left routing and when it ended.
    messages = [record.getMessage() for record in caplog.records]
    assert f"instance {surplus.id} of endpoint {endpoint_id} is draining" in "\n".join(messages)
    assert f"instance {surplus.id} of endpoint {endpoint_id} has ended" in messages


async def test_model_change_keeps_old_until_new_ready(world: World) -> None:
    endpoint_id = world.create("swap", instances=1)
    await world.step(2)
    old = world.instances(endpoint_id)[0]
    world.prober.ready_all = False

    world.change(endpoint_id, "restart")
    await world.step()
    rows = world.instances(endpoint_id)
    assert len(rows) == 2
    assert world.endpoint(endpoint_id).state == EndpointState.UPDATING
    # The old instance keeps serving while the new one is not ready.
    assert next(row for row in rows if row.id == old.id).state == InstanceState.READY

    world.prober.ready_all = True
    await world.step(2)
    world.clock.advance(2.0)
    await world.step(2)
    rows = world.instances(endpoint_id)
    assert [row.id for row in rows] != [old.id]
    assert len(rows) == 1
    assert world.endpoint(endpoint_id).state == EndpointState.LIVE


def write_model_folder(folder: Path) -> Path:
    """Write the smallest Hugging Face folder that the importer accepts."""
    import numpy
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text("{}")
    save_file(
        {"weight": numpy.zeros((2, 2), dtype=numpy.float32)}, str(folder / "model.safetensors")
    )
    return folder


@pytest.mark.parametrize("change", ["restart", "model update", "scale-up"])
async def test_missing_files_keep_old_instances_serving(
    world: World, tmp_path: Path, change: str
) -> None:
    main = write_model_folder(tmp_path / "main")
    world.import_linked("linked-lm", main)
    endpoint_id = world.create("chat", model="linked-lm")
    await world.step(2)
    (old,) = world.instances(endpoint_id)
    assert old.state == InstanceState.READY

    # The linked folder is moved away after the endpoint went Live.
    missing = main
    if change == "model update":
        missing = write_model_folder(tmp_path / "v2")
        world.import_linked("linked-lm", missing, checkpoint="v2")
    moved = missing.rename(tmp_path / "moved")
    if change == "restart":
        world.change(endpoint_id, "restart")
    elif change == "model update":
        world.change(endpoint_id, "update", model="linked-lm:v2")
    else:
        world.change(endpoint_id, "update", instances=2)

    # Many more attempts than the start failures that fail an endpoint with nothing serving.
    await world.step_past_backoff(advance_s=31.0)

    endpoint = world.endpoint(endpoint_id)
    assert endpoint.state == EndpointState.UPDATING
    rows = {row.id: row for row in world.instances(endpoint_id)}
    assert rows[old.id].state == InstanceState.READY
    assert not world.backend.processes[old.id].terminated
    (new,) = [row for row in rows.values() if row.id != old.id]
    assert new.state == InstanceState.EXITED
    assert "the files of model 'linked-lm' are unavailable" in new.last_error
    assert str(missing) in new.last_error
    # A new import gets a new ID, so the fix is to move the endpoint to it.
    assert "re-import" not in new.last_error
    assert (
        "berth endpoint update chat --project default --model-checkpoint MODEL:CHECKPOINT"
        in new.last_error
    )
    if change != "scale-up":
        # The scale-up's new instance has the generation of the old one, so it is not
        # counted apart as a rolling update's new instance is.
        assert "the files of model 'linked-lm' are unavailable" in endpoint.state_reason
        assert "1 old instance keeps serving" in endpoint.state_reason

    # Once the files are back, the next try starts the instance and the change completes.
    moved.rename(missing)
    world.clock.advance(31.0)
    await world.step(2)
    world.clock.advance(2.0)
    await world.step(2)
    endpoint = world.endpoint(endpoint_id)
    assert endpoint.state == EndpointState.LIVE
    assert new.id in {row.id for row in world.instances(endpoint_id)}
    assert all(row.state == InstanceState.READY for row in world.instances(endpoint_id))


async def stuck_model_update(world: World, tmp_path: Path) -> tuple[str, Instance, Path]:
    """Deploy linked-lm:main, then update it to a checkpoint whose files are gone.

    Returns the endpoint ID, its old instance, which keeps serving, and main's folder.
    """
    main = write_model_folder(tmp_path / "main")
    world.import_linked("linked-lm", main)
    endpoint_id = world.create("chat", model="linked-lm")
    await world.step(2)
    (old,) = world.instances(endpoint_id)
    broken = write_model_folder(tmp_path / "v2")
    world.import_linked("linked-lm", broken, checkpoint="v2")
    broken.rename(tmp_path / "moved")
    world.change(endpoint_id, "update", model="linked-lm:v2")
    await world.step_past_backoff()
    assert world.endpoint(endpoint_id).state == EndpointState.UPDATING
    return endpoint_id, old, main


def last_start(world: World, instance_id: str) -> InstanceSpec:
    return [spec for spec in world.backend.started if spec.instance_id == instance_id][-1]


async def test_old_instance_restarts_on_its_model(world: World, tmp_path: Path) -> None:
    endpoint_id, old, main = await stuck_model_update(world, tmp_path)

    # The only serving instance crashes while the update is stuck.
    world.backend.processes[old.id].exit_code = -9
    await world.step_past_backoff()

    rows = {row.id: row for row in world.instances(endpoint_id)}
    assert rows[old.id].state == InstanceState.READY
    assert rows[old.id].restart_count == 1
    assert last_start(world, old.id).model_path == str(main)
    assert world.endpoint(endpoint_id).state == EndpointState.UPDATING


async def test_old_instance_survives_server_restart(
    world: World, database: Database, tmp_path: Path
) -> None:
    endpoint_id, old, main = await stuck_model_update(world, tmp_path)

    restarted = make_world(database, tmp_path)
    restarted.reconciler.recover()
    await restarted.step_past_backoff()

    rows = {row.id: row for row in restarted.instances(endpoint_id)}
    assert rows[old.id].state == InstanceState.READY
    assert last_start(restarted, old.id).model_path == str(main)
    assert restarted.endpoint(endpoint_id).state != EndpointState.FAILED


def delete_checkpoint_error(world: World, tmp_path: Path, reference: str) -> str:
    """Try to delete the checkpoint and return the message of the Conflict it raises."""
    with world.database.session() as session:
        principal = authenticate(session, ADMIN_KEY, None)
        model, checkpoint = models.find_checkpoint(session, principal, reference)
        assert checkpoint is not None
        with pytest.raises(Conflict) as raised:
            models.delete_checkpoint(session, principal, model, checkpoint, tmp_path / "models")
        return raised.value.message


async def test_delete_checkpoint_during_update(world: World, tmp_path: Path) -> None:
    await stuck_model_update(world, tmp_path)

    old_checkpoint = delete_checkpoint_error(world, tmp_path, "linked-lm:main")
    new_checkpoint = delete_checkpoint_error(world, tmp_path, "linked-lm:v2")

    assert "Old instances of endpoints chat still run on" in old_checkpoint
    assert "Wait for their rolling update to finish" in old_checkpoint
    assert "is used by endpoints" not in old_checkpoint
    assert "checkpoint 'linked-lm:v2' is used by endpoints chat" in new_checkpoint
    assert "rolling update" not in new_checkpoint


async def stuck_model_change(world: World, tmp_path: Path) -> None:
    """Move endpoint chat from linked-lm to other-lm, whose files are missing, so the
    update stays stuck and the old instance keeps serving on linked-lm."""
    world.import_linked("linked-lm", write_model_folder(tmp_path / "main"))
    endpoint_id = world.create("chat", model="linked-lm")
    await world.step(2)
    broken = write_model_folder(tmp_path / "other")
    world.import_linked("other-lm", broken)
    broken.rename(tmp_path / "moved")
    # The update to another model stays stuck, so the old instance keeps serving.
    world.change(endpoint_id, "update", model="other-lm")
    await world.step_past_backoff()


async def test_delete_checkpoint_during_model_change(world: World, tmp_path: Path) -> None:
    await stuck_model_change(world, tmp_path)

    message = delete_checkpoint_error(world, tmp_path, "linked-lm:main")

    assert "Old instances of endpoints chat still run on checkpoint 'linked-lm:main'" in message


async def test_delete_model_during_model_change(world: World, tmp_path: Path) -> None:
    await stuck_model_change(world, tmp_path)

    with world.database.session() as session:
        principal = authenticate(session, ADMIN_KEY, None)
        model, _checkpoint = models.find_checkpoint(session, principal, "linked-lm")
        with pytest.raises(Conflict) as raised:
            models.delete_model(session, principal, model, tmp_path / "models")

    assert "old instances of endpoints chat still run on model 'linked-lm'" in (
        raised.value.message
    )
    assert "rolling update" in raised.value.message


def served_models(world: World, endpoint_id: str) -> dict[str, tuple[str, str]]:
    """Return the model and checkpoint names that the API reports for each open instance."""
    with world.database.session() as session:
        endpoint = session.get(Endpoint, endpoint_id)
        assert endpoint is not None
        out = endpoint_out(endpoint, "http://127.0.0.1:19600")
        return {row.id: (row.model_name, row.checkpoint_name) for row in out.instance_list}


def rewrite_launch(world: World, instance_id: str, launch: str) -> None:
    with world.database.session() as session:
        row = session.get(Instance, instance_id)
        assert row is not None
        row.launch = launch


async def test_stuck_update_names_model_per_instance(world: World, tmp_path: Path) -> None:
    endpoint_id, old, _main = await stuck_model_update(world, tmp_path)

    served = served_models(world, endpoint_id)

    assert json.loads(old.launch)["checkpoint_name"] == "main"
    assert served.pop(old.id) == ("linked-lm", "main")
    # The new instance never started, because its files are missing, so it has no plan;
    # it reports the endpoint's model, which it starts on.
    assert list(served.values()) == [("linked-lm", "v2")]


async def test_plan_without_checkpoint_still_read(world: World, tmp_path: Path) -> None:
    endpoint_id, old, main = await stuck_model_update(world, tmp_path)
    # The plan as Berth wrote it before it recorded the checkpoint.
    plan = json.loads(old.launch)
    del plan["checkpoint_id"], plan["checkpoint_name"]
    rewrite_launch(world, old.id, json.dumps(plan))

    # Its files are main's, not those of the endpoint's checkpoint v2, so the checkpoint
    # is unknown.
    assert served_models(world, endpoint_id)[old.id] == ("linked-lm", "")

    # The old instance still restarts on its own files.
    world.backend.processes[old.id].exit_code = -9
    await world.step_past_backoff()
    rows = {row.id: row for row in world.instances(endpoint_id)}
    assert rows[old.id].state == InstanceState.READY
    assert last_start(world, old.id).model_path == str(main)


async def test_plan_without_checkpoint_matches_files(world: World) -> None:
    endpoint_id = world.create("echo-plan")
    await world.step(2)
    (row,) = world.instances(endpoint_id)
    plan = json.loads(row.launch)
    del plan["checkpoint_id"], plan["checkpoint_name"]
    rewrite_launch(world, row.id, json.dumps(plan))

    # The files are those of the endpoint's checkpoint, so that checkpoint is named.
    assert served_models(world, endpoint_id) == {row.id: ("echo", "main")}


async def test_old_instance_without_plan_is_unknown(world: World, tmp_path: Path) -> None:
    endpoint_id, old, _main = await stuck_model_update(world, tmp_path)
    # An instance started before Berth recorded plans.
    rewrite_launch(world, old.id, "")

    assert served_models(world, endpoint_id)[old.id] == ("", "")


async def test_missing_files_fail_new_endpoint(world: World, tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "main")
    world.import_linked("linked-lm", folder)
    folder.rename(tmp_path / "moved")
    endpoint_id = world.create("chat", model="linked-lm")

    await world.step_past_backoff()

    endpoint = world.endpoint(endpoint_id)
    assert endpoint.state == EndpointState.FAILED
    assert "the files of model 'linked-lm' are unavailable" in endpoint.state_reason
    assert world.instances(endpoint_id) == []
    assert world.backend.started == []


async def test_stop_then_delete_ends_instances(world: World) -> None:
    endpoint_id = world.create("gone", instances=2)
    await world.step(2)

    world.change(endpoint_id, "stop")
    await world.step()
    assert world.endpoint(endpoint_id).state == EndpointState.STOPPING
    assert world.endpoint(endpoint_id).state_reason == "ending 2 instances"
    world.clock.advance(1.5)
    await world.step(2)
    assert world.endpoint(endpoint_id).state == EndpointState.STOPPED
    assert world.backend.running() == []

    world.change(endpoint_id, "delete")
    await world.step()
    endpoint = world.endpoint(endpoint_id)
    assert endpoint.state == EndpointState.DELETING
    assert endpoint.deleted_at is not None


async def test_recovery_restarts_instances_of_live_endpoint(
    database: Database, tmp_path: Path
) -> None:
    world = make_world(database, tmp_path)
    endpoint_id = world.create("survivor", instances=2)
    await world.step(2)

    # A new server process: new backend, new reconciler, same database.
    restarted = make_world(database, tmp_path)
    restarted.reconciler.recover()
    await restarted.step(2)

    assert restarted.endpoint(endpoint_id).state == EndpointState.LIVE
    assert len(restarted.backend.running()) == 2
    assert all(row.state == InstanceState.READY for row in restarted.instances(endpoint_id))


async def test_recovery_deploying_until_instance_ready(database: Database, tmp_path: Path) -> None:
    world = make_world(database, tmp_path)
    endpoint_id = world.create("survivor", instances=2)
    await world.step(2)

    restarted = make_world(database, tmp_path)
    restarted.prober.ready_all = False
    restarted.reconciler.recover()
    # No instance of the new server run serves yet, so the endpoint is not Live.
    assert restarted.endpoint(endpoint_id).state == EndpointState.DEPLOYING
    await restarted.step(2)
    endpoint = restarted.endpoint(endpoint_id)
    assert endpoint.state == EndpointState.DEPLOYING
    assert endpoint.state_reason == "the server restarted; 0 of 2 instances ready"
    assert len(restarted.backend.running()) == 2

    first, second = restarted.instances(endpoint_id)
    restarted.prober.ready_all = True
    restarted.prober.down.add(second.address)
    await restarted.step()
    endpoint = restarted.endpoint(endpoint_id)
    assert endpoint.state == EndpointState.LIVE
    assert endpoint.state_reason == "1 of 2 instances ready"

    restarted.prober.down.clear()
    await restarted.step()
    endpoint = restarted.endpoint(endpoint_id)
    assert endpoint.state == EndpointState.LIVE
    assert endpoint.state_reason == ""
    rows = restarted.instances(endpoint_id)
    assert {row.id for row in rows} == {first.id, second.id}
    # Relaunching after the server restart does not count as a restart of the instances.
    assert [row.restart_count for row in rows] == [0, 0]


async def test_recovery_twice_counts_no_restart(database: Database, tmp_path: Path) -> None:
    world = make_world(database, tmp_path)
    endpoint_id = world.create("twice", instances=1)
    await world.step(2)

    # The server restarts, and restarts again before it relaunched anything.
    make_world(database, tmp_path).reconciler.recover()
    restarted = make_world(database, tmp_path)
    restarted.reconciler.recover()
    await restarted.step(2)

    (row,) = restarted.instances(endpoint_id)
    assert row.state == InstanceState.READY
    assert row.restart_count == 0
    assert restarted.endpoint(endpoint_id).state == EndpointState.LIVE


async def test_recovery_counts_restart_of_crashed_instance(
    database: Database, tmp_path: Path
) -> None:
    world = make_world(database, tmp_path)
    endpoint_id = world.create("crashed", instances=2)
    await world.step(2)
    victim, other = world.instances(endpoint_id)
    world.backend.processes[victim.id].exit_code = -9
    # The crash is recorded, and the server restarts while the relaunch waits for the backoff.
    await world.step()

    restarted = make_world(database, tmp_path)
    restarted.reconciler.recover()
    await restarted.step(2)

    rows = {row.id: row for row in restarted.instances(endpoint_id)}
    assert rows[victim.id].restart_count == 1
    assert rows[other.id].restart_count == 0
    assert rows[victim.id].state == InstanceState.READY
    assert restarted.endpoint(endpoint_id).state == EndpointState.LIVE


async def test_unhealthy_instance_is_killed_and_restarted(world: World) -> None:
    endpoint_id = world.create("sick", instances=2)
    await world.step(2)
    victim = world.instances(endpoint_id)[0]
    world.prober.down.add(victim.address)

    # Two failed health checks leave it in routing; the third takes it out and kills it.
    for _ in range(2):
        world.clock.advance(2.0)
        await world.step()
    assert {row.id: row for row in world.instances(endpoint_id)}[victim.id].state == (
        InstanceState.READY
    )
    world.clock.advance(2.0)
    await world.step()
    rows = {row.id: row for row in world.instances(endpoint_id)}
    assert rows[victim.id].state == InstanceState.UNHEALTHY
    assert "health checks" in rows[victim.id].last_error
    assert world.backend.processes[victim.id].exit_code == -9

    await world.step()
    # Restarted after the backoff, at a new address.
    world.clock.advance(1.0)
    await world.step(2)
    rows = {row.id: row for row in world.instances(endpoint_id)}
    assert rows[victim.id].state == InstanceState.READY
    assert rows[victim.id].restart_count == 1
    # The reason for the restart outlasts the kill and the new start.
    assert "health checks" in rows[victim.id].last_error
    assert world.endpoint(endpoint_id).state == EndpointState.LIVE


async def test_start_timeout_is_last_error(world: World) -> None:
    endpoint_id = world.create("slow")
    world.prober.ready_all = False
    await world.step()

    world.clock.advance(301.0)
    await world.step(2)

    [row] = world.instances(endpoint_id)
    assert row.state == InstanceState.EXITED
    assert row.last_error == "did not become ready within 300 s; killed it"


class HangingProber(FakeProber):
    """Never returns from probes of the addresses in `hung`, like a stopped process."""

    def __init__(self, backend: FakeBackend) -> None:
        super().__init__(backend)
        self.hung: set[str] = set()
        self.release = asyncio.Event()

    async def check_many(self, targets: list[tuple[str, str]]) -> list[ProbeResult]:
        if any(address in self.hung for address, _path in targets):
            await self.release.wait()
            return [ProbeResult(ok=False)] * len(targets)
        return await super().check_many(targets)


async def test_hung_probe_does_not_hold_up_steps(database: Database, tmp_path: Path) -> None:
    world = make_world(database, tmp_path)
    prober = HangingProber(world.backend)
    world.reconciler._prober = prober  # type: ignore[assignment]
    endpoint_id = world.create("frozen", instances=2)
    await world.step(2)
    victim, other = world.instances(endpoint_id)
    prober.hung.add(victim.address)

    world.clock.advance(2.0)
    await asyncio.wait_for(world.step(), timeout=5)
    # Meanwhile another change goes through at once.
    world.change(endpoint_id, "update", instances=3)
    await asyncio.wait_for(world.step(2), timeout=5)
    assert len(world.instances(endpoint_id)) == 3

    prober.release.set()
    for _ in range(3):
        world.clock.advance(2.0)
        await world.step()
        prober.release = asyncio.Event()
        prober.release.set()
    states = {row.id: row.state for row in world.instances(endpoint_id)}
    assert states[victim.id] in (InstanceState.UNHEALTHY, InstanceState.EXITED)
    assert states[other.id] == InstanceState.READY


async def test_delete_kills_after_short_drain(world: World) -> None:
    world.backend.ignore_terminate = True
    endpoint_id = world.create("doomed", instances=1)
    await world.step(2)
    (row,) = world.instances(endpoint_id)

    world.change(endpoint_id, "delete")
    await world.step()
    world.clock.advance(1.5)
    await world.step()
    assert world.backend.processes[row.id].terminated
    assert world.backend.processes[row.id].exit_code is None

    # The delete drain (5 s) ends the process long before the 30 s drain of a scale-down.
    world.clock.advance(5.5)
    await world.step()
    assert world.backend.status(row.id).state == ProcessState.EXITED
    await world.step()
    assert world.instances(endpoint_id) == []


async def test_scale_down_waits_for_drain_timeout(world: World) -> None:
    world.backend.ignore_terminate = True
    endpoint_id = world.create("slow-drain", instances=2)
    await world.step(2)

    world.change(endpoint_id, "update", instances=1)
    await world.step()
    (draining,) = [r for r in world.instances(endpoint_id) if r.state == InstanceState.DRAINING]
    world.clock.advance(1.5)
    await world.step()
    world.clock.advance(10.0)
    await world.step()
    # Requests in flight on it may go on for the whole drain timeout.
    assert world.backend.processes[draining.id].exit_code is None

    world.clock.advance(25.0)
    await world.step(2)
    assert [r.id for r in world.instances(endpoint_id) if r.id == draining.id] == []


class ProcessPeak:
    """Reconcile steps that record the maximum number of instance processes running after
    any of them."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.peak = len(world.backend.running())

    async def step(self, times: int = 1, advance_s: float = 0.0) -> None:
        for _ in range(times):
            await self.world.step()
            self.peak = max(self.peak, len(self.world.backend.running()))
            self.world.clock.advance(advance_s)


def generations(world: World, endpoint_id: str) -> list[tuple[int, InstanceState]]:
    return sorted((row.generation, row.state) for row in world.instances(endpoint_id))


async def test_quick_changes_stop_superseded_instances(world: World) -> None:
    # Processes go on running after SIGTERM until the drain timeout kills them, the worst
    # case for the instance count.
    world.backend.ignore_terminate = True
    endpoint_id = world.create("hurried", instances=2)
    await world.step(2)
    world.prober.ready_all = False
    peak = ProcessPeak(world)

    for _ in range(8):
        world.change(endpoint_id, "restart")
        await peak.step()
    world.prober.ready_all = True
    await peak.step(20, advance_s=5.0)

    assert peak.peak == 4
    assert world.endpoint(endpoint_id).state == EndpointState.LIVE
    assert generations(world, endpoint_id) == [(9, InstanceState.READY)] * 2
    assert len(world.backend.running()) == 2


async def test_spaced_changes_keep_one_new_instance(world: World) -> None:
    world.backend.ignore_terminate = True
    endpoint_id = world.create("spaced", instances=1)
    await world.step(2)
    world.prober.ready_all = False
    peak = ProcessPeak(world)

    for _ in range(5):
        world.change(endpoint_id, "restart")
        await peak.step(3, advance_s=0.5)
    world.prober.ready_all = True
    await peak.step(20, advance_s=5.0)

    assert peak.peak == 2
    assert world.endpoint(endpoint_id).state == EndpointState.LIVE
    assert generations(world, endpoint_id) == [(6, InstanceState.READY)]


async def test_superseded_ready_instance_drains_early(world: World) -> None:
    endpoint_id = world.create("half-new", instances=2)
    await world.step(2)
    old_ids = {row.id for row in world.instances(endpoint_id)}
    world.prober.ready_all = False
    world.change(endpoint_id, "restart")
    await world.step()
    first_new, second_new = [row for row in world.instances(endpoint_id) if row.id not in old_ids]
    # One instance of the superseded generation becomes ready, the other does not.
    world.prober.down = {second_new.address}
    world.prober.ready_all = True
    await world.step()
    peak = ProcessPeak(world)

    world.change(endpoint_id, "restart")
    await peak.step()
    states = {row.id: row.state for row in world.instances(endpoint_id)}

    # The 2 old instances serve until the newest generation is ready. The superseded Ready
    # instance would exceed that old instance count, so it leaves routing.
    assert peak.peak == 4
    assert all(states[old_id] == InstanceState.READY for old_id in old_ids)
    assert states[first_new.id] == InstanceState.DRAINING
    assert second_new.id not in states or states[second_new.id] == InstanceState.DRAINING


async def test_change_after_takeover_keeps_new_serving(world: World) -> None:
    world.backend.ignore_terminate = True
    endpoint_id = world.create("taken-over", instances=2)
    await world.step(2)
    world.change(endpoint_id, "restart")
    await world.step(2)
    # The second generation is ready, and the first drains until its processes exit.
    assert (
        generations(world, endpoint_id)
        == [(1, InstanceState.DRAINING)] * 2 + [(2, InstanceState.READY)] * 2
    )
    peak = ProcessPeak(world)

    world.change(endpoint_id, "restart")
    await peak.step()
    # The third generation waits for the draining processes, while the second serves.
    assert (
        generations(world, endpoint_id)
        == [(1, InstanceState.DRAINING)] * 2 + [(2, InstanceState.READY)] * 2
    )
    assert world.endpoint(endpoint_id).state == EndpointState.UPDATING

    await peak.step(20, advance_s=5.0)
    assert peak.peak == 4
    assert world.endpoint(endpoint_id).state == EndpointState.LIVE
    assert generations(world, endpoint_id) == [(3, InstanceState.READY)] * 2
