"""Time to Live: from the create request to the first successful prediction.

Berth's figure starts before `POST /api/v1/endpoints` and ends when a prediction
through the gateway first returns 200. The baseline starts the same runtime by hand
(`python -m berth.runtime ... --port P`) and ends when a prediction sent straight to it
first returns 200. Both sides poll with the same client every POLL_INTERVAL_S, so the
polling adds the same delay to each.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from bench.benchmarks.batching import embedding_model_path
from bench.core import Context, Figure, Target, alternate_rounds, compare, median
from bench.servers import BerthServer, RuntimeProcess, wait_until

NAME = "time-to-live"
POLL_INTERVAL_S = 0.01
LIVE_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Case:
    model: str
    ml_app: str
    # Route and body of the first prediction.
    route: str
    body: dict[str, object]

    def model_path(self) -> str:
        return embedding_model_path() if self.ml_app == "text-embedding" else ""


CASES = (
    Case(
        "echo",
        "echo",
        "chat/completions",
        {"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
    ),
    Case(
        "all-MiniLM-L6-v2",
        "text-embedding",
        "embeddings",
        {"model": "all-MiniLM-L6-v2", "input": "hello world"},
    ),
)


def _first_success(
    client: httpx.Client, url: str, body: dict[str, object], headers: dict[str, str]
) -> bool:
    try:
        return client.post(url, json=body, headers=headers, timeout=30).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class BerthSample:
    """Seconds from the create request to each step of one deployment."""

    total: float
    # When the reconciler started the instance process (instances.started_at).
    launched: float
    # When the reconciler saw the instance ready (instances.ready_at).
    ready: float


def time_berth(server: BerthServer, case: Case, names: Iterator[int]) -> BerthSample:
    """Create an endpoint, time it to its first successful prediction, then delete it."""
    with server.client() as api, httpx.Client(trust_env=False) as http:
        started_wall = time.time()
        started = time.perf_counter()
        created = api.create_endpoint("default", f"ttl-{case.ml_app}-{next(names)}", case.model)
        url = f"{created['openai_base_url']}/{case.route}"
        headers = {"Authorization": f"Bearer {created['first_key']}"}
        wait_until(
            lambda: _first_success(http, url, case.body, headers),
            LIVE_TIMEOUT_S,
            f"the first prediction of endpoint {created['name']}",
            POLL_INTERVAL_S,
        )
        elapsed = time.perf_counter() - started
        launched_at, ready_at = server.instance_times(created["id"])
        api.delete_endpoint(created["id"])
        # Let the deletion finish, so its instance does not compete with the next round.
        wait_until(
            lambda: _gone(api, created["id"]), LIVE_TIMEOUT_S, "the endpoint's deletion", 0.1
        )
    return BerthSample(elapsed, launched_at - started_wall, ready_at - started_wall)


def _gone(api: object, endpoint_id: str) -> bool:
    from berth.client import ApiError

    try:
        api.get_endpoint(endpoint_id)  # type: ignore[attr-defined]
    except ApiError as error:
        return error.status == 404
    return False


def time_by_hand(ctx: Context, case: Case, names: Iterator[int]) -> float:
    """Start the runtime by hand; return seconds until its first successful prediction."""
    with httpx.Client(trust_env=False) as http:
        started = time.perf_counter()
        runtime = RuntimeProcess(
            ctx.folder(NAME) / f"by-hand-{case.ml_app}-{next(names)}.log",
            case.ml_app,
            case.model_path(),
            case.model,
        )
        try:
            url = f"{runtime.url}/v1/{case.route}"
            wait_until(
                lambda: _first_success(http, url, case.body, {}),
                LIVE_TIMEOUT_S,
                f"the first prediction of the {case.model} runtime",
                POLL_INTERVAL_S,
            )
            elapsed = time.perf_counter() - started
        finally:
            runtime.stop()
    return elapsed


def within_allowance(factor: float, seconds: float) -> Target:
    return Target(
        f"≤ {factor:g} × baseline + {seconds:g} s",
        lambda f: f.baseline is not None and f.berth <= factor * f.baseline + seconds,
    )


def run(ctx: Context) -> list[Figure]:
    rounds = ctx.rounds(ctx.pick(small=1, full=3))
    # The small size checks that the benchmark works; Echo alone starts in about a second.
    cases = ctx.pick(small=CASES[:1], full=CASES)
    folder = ctx.folder(NAME)
    experiments = ctx.experiments_for(NAME)
    servers = {"berth": BerthServer(folder / "home")}
    names = itertools.count(1)
    figures = []
    try:
        for experiment in experiments:
            servers[f"berth+{experiment.name}"] = BerthServer(
                folder / f"home-{experiment.name}", experiment.patches, **experiment.env
            )
        for case in cases:
            ctx.log(f"{case.model}: {rounds} rounds of create-to-first-prediction vs by hand")
            variants: dict[str, Any] = {
                name: (lambda server=server, case=case: time_berth(server, case, names))
                for name, server in servers.items()
            }
            variants["by hand"] = lambda case=case: time_by_hand(ctx, case, names)
            results = alternate_rounds(rounds, variants)
            for name in servers:
                figures.append(_figure(name, case, results[name], results["by hand"]))
    finally:
        for server in servers.values():
            server.stop()
    return figures


def _figure(variant: str, case: Case, berth: list[BerthSample], by_hand: list[float]) -> Figure:
    prefix = "" if variant == "berth" else f"Berth + {variant.removeprefix('berth+')}: "
    launched = median([sample.launched for sample in berth])
    ready = median([sample.ready for sample in berth])
    return compare(
        NAME,
        f"{prefix}create to first prediction, {case.model}",
        "s",
        [sample.total for sample in berth],
        by_hand,
        "runtime started by hand",
        target=within_allowance(1.2, 1.0),
        note=f"medians: instance process started {launched:.2f} s and seen ready "
        f"{ready:.2f} s after the create request",
    )
