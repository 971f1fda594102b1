"""Scale of the control plane: 1,000 endpoints and 100,000 keys vs 1 endpoint and 10 keys.

The large home folder is prepared before its server starts: the schema and first-start
set-up come from `berth.server.prepare`, then 999 Stopped echo endpoints with 99,990
keys (about 100 each, hashed and encrypted as Berth stores them) are inserted with
SQLAlchemy. On both servers the benchmark then creates one Live echo endpoint through
the API and adds 9 keys to it, so the small server contains 1 endpoint and 10 keys and the
large one 1,000 endpoints and 100,000 keys.

Measured on both, in alternating rounds: the latency of listing endpoints, the latency
and throughput of predictions with a valid key (the gateway's key check), and how long
a revoked key keeps working.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from bench.core import (
    Context,
    Figure,
    Target,
    alternate_rounds,
    compare,
    median,
    ratio_at_most,
)
from bench.loadgen import Job, LoadGenerator
from bench.servers import ADMIN_KEY, BerthServer, cpu_seconds, wait_until

NAME = "control-plane"
LIVE_ENDPOINT = "bench-live"
ADDED_KEYS = 9
PROMPT = "hello from the benchmark"
REVOCATION_POLL_S = 0.005
IDLE_SECONDS = 3.0


@dataclass
class Population:
    endpoints: int
    keys: int


def populate(home: Path, population: Population, log: Any) -> float:
    """Create the home folder's database and insert Stopped endpoints with their keys.

    Returns the seconds the inserts took. Runs in the benchmark process, before the
    server that will use the folder starts.
    """
    from sqlalchemy import insert, select

    from berth.db.engine import next_seq
    from berth.db.models import Endpoint, EndpointKey, Model, Project, User
    from berth.secrets import hash_key, new_endpoint_key
    from berth.server import prepare
    from berth.service.keys import vault
    from berth.settings import Settings
    from berth.states import DesiredState, EndpointState, KeyStatus

    started = time.perf_counter()
    settings = Settings(home=home, admin_key=ADMIN_KEY, database_url=None)
    prepared = prepare(settings)
    encryptor = vault()
    with prepared.database.session() as session:
        project = session.scalars(select(Project).where(Project.name_key == "default")).one()
        admin = session.scalars(select(User).where(User.username_key == "admin")).one()
        echo = session.scalars(
            select(Model).where(Model.name_key == "echo", Model.is_builtin.is_(True))
        ).one()
        seq = next_seq(session)
        endpoints = []
        for index in range(population.endpoints):
            name = f"stopped-{index:04d}"
            endpoints.append(
                {
                    "id": f"00000000-0000-4000-8000-{index:012d}",
                    "tenant_id": project.tenant_id,
                    "project_id": project.id,
                    "name": name,
                    "name_key": name,
                    "owner_id": admin.id,
                    "model_id": echo.id,
                    "desired_state": DesiredState.STOPPED,
                    "instances": 1,
                    "generation": 1,
                    "observed_generation": 1,
                    "state": EndpointState.STOPPED,
                    "state_reason": "stopped by the benchmark's set-up",
                    "settings": {},
                    "seq": seq,
                }
            )
        session.execute(insert(Endpoint), endpoints)

        keys = []
        for index in range(population.keys):
            key = new_endpoint_key()
            keys.append(
                {
                    "id": f"00000000-0000-4000-9000-{index:012d}",
                    "endpoint_id": endpoints[index % population.endpoints]["id"],
                    "key_hash": hash_key(key),
                    "key_encrypted": encryptor.encrypt(key),
                    "description": f"benchmark key {index}",
                    "is_first": index < population.endpoints,
                    "owner_id": admin.id,
                    "status": KeyStatus.ACTIVE,
                    "seq": seq,
                }
            )
            if len(keys) == 10_000:
                session.execute(insert(EndpointKey), keys)
                keys = []
        if keys:
            session.execute(insert(EndpointKey), keys)
    prepared.database.dispose()
    elapsed = time.perf_counter() - started
    log(f"inserted {population.endpoints} endpoints and {population.keys} keys in {elapsed:.1f} s")
    return elapsed


@dataclass
class Deployment:
    """A running server with its Live endpoint, that endpoint's keys and start-up time."""

    server: BerthServer
    endpoint: dict[str, Any]
    first_key: str
    added_keys: list[dict[str, Any]]
    start_s: float


def deploy(home: Path, experiment: Any = None) -> Deployment:
    started = time.perf_counter()
    if experiment is None:
        server = BerthServer(home)
    else:
        server = BerthServer(home, experiment.patches, **experiment.env)
    start_s = time.perf_counter() - started
    with server.client() as client:
        created = client.create_endpoint("default", LIVE_ENDPOINT, "echo")
        endpoint = client.wait_for_state(created["id"], {"Live"}, timeout_s=120, poll_s=0.05)
        added = [client.add_key(created["id"], f"added key {i}") for i in range(ADDED_KEYS)]
    return Deployment(server, endpoint, created["first_key"], added, start_s)


@dataclass
class ScaleRound:
    # CPU time of the server process while no request arrives, in % of one core.
    idle_cpu_percent: float
    list_one_p50_ms: float
    list_page_p50_ms: float
    list_last_p50_ms: float
    predict_p50_ms: float
    predict_throughput: float
    gateway_cpu_us: float


def measure(
    generator: LoadGenerator, deployment: Deployment, settings: dict[str, Any]
) -> ScaleRound:
    api = f"{deployment.server.url}/api/v1/endpoints"
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    total = _total_endpoints(deployment)
    idle_before = cpu_seconds(deployment.server.pid, children=False)
    time.sleep(settings["idle_seconds"])
    idle_cpu = cpu_seconds(deployment.server.pid, children=False) - idle_before

    def listing(query: str) -> float:
        run = generator.run(
            Job(
                url=f"{api}?{query}",
                method="GET",
                headers=admin,
                requests=settings["list_requests"],
                max_seconds=settings["seconds"],
                warmup=3,
                expect_text='"items"',
            )
        )
        _require_ok(run, f"GET {api}?{query}")
        return float(run["latency_ms"]["p50"])

    chat = Job(
        url=f"{deployment.endpoint['openai_base_url']}/chat/completions",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {deployment.first_key}",
        },
        body=json.dumps({"model": "echo", "messages": [{"role": "user", "content": PROMPT}]}),
        requests=settings["predict_requests"],
        max_seconds=settings["seconds"],
        warmup=10,
        expect_text=PROMPT,
    )
    sequential = generator.run(chat)
    _require_ok(sequential, "predictions")
    cpu_before = cpu_seconds(deployment.server.pid, children=False)
    concurrent = generator.run(replace(chat, concurrency=16, requests=10**9, warmup=2))
    cpu_used = cpu_seconds(deployment.server.pid, children=False) - cpu_before
    _require_ok(concurrent, "concurrent predictions")
    return ScaleRound(
        idle_cpu_percent=idle_cpu / settings["idle_seconds"] * 100,
        list_one_p50_ms=listing("limit=1"),
        list_page_p50_ms=listing("limit=100"),
        list_last_p50_ms=listing(f"limit=1&offset={total - 1}"),
        predict_p50_ms=sequential["latency_ms"]["p50"],
        predict_throughput=concurrent["throughput_rps"],
        gateway_cpu_us=cpu_used / concurrent["ok"] * 1e6,
    )


def _total_endpoints(deployment: Deployment) -> int:
    with deployment.server.client() as client:
        return int(client.list_endpoints(limit=1)["total"])


def _require_ok(run: dict[str, Any], what: str) -> None:
    failed = {name: count for name, count in run["outcomes"].items() if name != "ok"}
    if failed or not run["ok"]:
        raise RuntimeError(f"{what} failed: {failed or 'no response'}")


def time_revocation(deployment: Deployment, key: dict[str, Any]) -> tuple[float, float]:
    """Revoke `key`; return seconds until the gateway rejects it, from the revoke
    request's start and from its response."""
    url = f"{deployment.endpoint['openai_base_url']}/chat/completions"
    body = {"model": "echo", "messages": [{"role": "user", "content": PROMPT}]}
    headers = {"Authorization": f"Bearer {key['key']}"}
    with httpx.Client(trust_env=False, timeout=10) as http, deployment.server.client() as api:
        if http.post(url, json=body, headers=headers).status_code != 200:
            raise RuntimeError(f"key {key['id']} did not work before its revocation")
        requested = time.perf_counter()
        api.revoke_key(deployment.endpoint["id"], key["id"])
        answered = time.perf_counter()
        wait_until(
            lambda: http.post(url, json=body, headers=headers).status_code == 401,
            10,
            f"the gateway to reject revoked key {key['id']}",
            REVOCATION_POLL_S,
        )
        rejected = time.perf_counter()
    return rejected - requested, rejected - answered


def run(ctx: Context) -> list[Figure]:
    settings: dict[str, Any] = ctx.pick(
        small={
            "rounds": 1,
            "seconds": 0.5,
            "list_requests": 20,
            "predict_requests": 100,
            "population": Population(endpoints=99, keys=990),
            "revocations": 1,
            "idle_seconds": 0.5,
        },
        full={
            "rounds": 5,
            "seconds": 2.0,
            "list_requests": 300,
            "predict_requests": 2000,
            "population": Population(endpoints=999, keys=99_990),
            "revocations": 3,
            "idle_seconds": IDLE_SECONDS,
        },
    )
    population: Population = settings["population"]
    folder = ctx.folder(NAME)
    insert_s = populate(folder / "large", population, ctx.log)
    experiments = ctx.experiments_for(NAME)
    for experiment in experiments:
        shutil.copytree(folder / "large", folder / f"large-{experiment.name}")
    deployments: dict[str, Deployment] = {}
    generator = LoadGenerator()
    try:
        deployments["small"] = deploy(folder / "small")
        deployments["large"] = deploy(folder / "large")
        for experiment in experiments:
            deployments[f"large+{experiment.name}"] = deploy(
                folder / f"large-{experiment.name}", experiment
            )
        large_total = _total_endpoints(deployments["large"])
        ctx.log(f"{ctx.rounds(settings['rounds'])} rounds: 1 endpoint vs {large_total} endpoints")
        rounds = alternate_rounds(
            ctx.rounds(settings["rounds"]),
            {
                name: functools.partial(measure, generator, deployment, settings)
                for name, deployment in deployments.items()
            },
        )
        revocations = {
            name: [time_revocation(d, key) for key in d.added_keys[: settings["revocations"]]]
            for name, d in deployments.items()
            if name in ("small", "large")
        }
    finally:
        generator.close()
        for deployment in deployments.values():
            deployment.server.stop()

    small: list[ScaleRound] = rounds["small"]
    large: list[ScaleRound] = rounds["large"]
    keys_label = f"{population.keys + ADDED_KEYS + 1:,} keys"
    scale = f"{large_total:,} endpoints, {keys_label}"
    small_label = "1 endpoint, 10 keys"
    figures = [
        compare(
            NAME,
            f"server CPU while idle ({scale})",
            "% of a core",
            [r.idle_cpu_percent for r in large],
            [r.idle_cpu_percent for r in small],
            small_label,
        ),
        compare(
            NAME,
            f"list endpoints, limit=1 ({scale})",
            "ms",
            [r.list_one_p50_ms for r in large],
            [r.list_one_p50_ms for r in small],
            small_label,
            target=ratio_at_most(1.1),
        ),
        compare(
            NAME,
            f"list endpoints, last page of limit=1 (offset {large_total - 1})",
            "ms",
            [r.list_last_p50_ms for r in large],
            [r.list_one_p50_ms for r in small],
            small_label,
        ),
        compare(
            NAME,
            "list endpoints, limit=100 (100 items vs 1)",
            "ms",
            [r.list_page_p50_ms for r in large],
            [r.list_page_p50_ms for r in small],
            small_label,
            note="the large page holds 100 endpoints and the small one 1, so this row "
            "shows the cost per listed endpoint, not the cost of scale",
        ),
        compare(
            NAME,
            f"prediction with key check, sequential p50 ({keys_label})",
            "ms",
            [r.predict_p50_ms for r in large],
            [r.predict_p50_ms for r in small],
            small_label,
            target=ratio_at_most(1.1),
        ),
        compare(
            NAME,
            "prediction throughput, 16 concurrent",
            "req/s",
            [r.predict_throughput for r in large],
            [r.predict_throughput for r in small],
            small_label,
        ),
        compare(
            NAME,
            "server CPU per prediction, 16 concurrent",
            "µs",
            [r.gateway_cpu_us for r in large],
            [r.gateway_cpu_us for r in small],
            small_label,
        ),
        Figure(
            NAME,
            "server start until /health answers",
            "s",
            deployments["large"].start_s,
            deployments["small"].start_s,
            small_label,
            note=f"inserting the large population took {insert_s:.1f} s before that start",
        ),
    ]
    for experiment in experiments:
        patched: list[ScaleRound] = rounds[f"large+{experiment.name}"]
        label = f"Berth + {experiment.name}"
        for field_name, figure_name, unit, target in (
            ("idle_cpu_percent", "server CPU while idle", "% of a core", None),
            ("list_one_p50_ms", "list endpoints, limit=1", "ms", ratio_at_most(1.1)),
            (
                "predict_p50_ms",
                "prediction with key check, sequential p50",
                "ms",
                ratio_at_most(1.1),
            ),
            ("gateway_cpu_us", "server CPU per prediction, 16 concurrent", "µs", None),
        ):
            figures.append(
                compare(
                    NAME,
                    f"{label}: {figure_name} ({scale})",
                    unit,
                    [getattr(r, field_name) for r in patched],
                    [getattr(r, field_name) for r in small],
                    small_label,
                    target=target,
                )
            )
    for name in ("large", "small"):
        after_request = [requested for requested, _ in revocations[name]]
        after_response = [answered for _, answered in revocations[name]]
        label = scale if name == "large" else small_label
        figures.append(
            Figure(
                NAME,
                f"revoked key rejected after, max ({label})",
                "s",
                max(after_request),
                target=Target("< 1 s", lambda f: f.berth < 1.0),
                note=f"from the revoke response: max {max(after_response) * 1000:.0f} ms; "
                f"median from the request: {median(after_request) * 1000:.0f} ms",
                rounds=len(after_request),
            )
        )
    return figures
