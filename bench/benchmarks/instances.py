"""Instances: throughput of a CPU-bound endpoint with 1 and with 2 instances.

Two all-MiniLM-L6-v2 endpoints run on one Berth server, one with 1 instance and one
with 2. A single instance of this model already computes on every core through torch's
threads. A second Berth server runs two Echo endpoints, again with 1 and 2 instances,
whose instances compute ECHO_CPU_ROUNDS rounds of SHA-256 per text in Python, which
uses one core per instance. Rounds alternate between all four endpoints. Requests carry
one text each and arrive from CONCURRENCY users through the gateway, so each embedding
instance batches what it receives.
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.core import Context, Figure, alternate_rounds, compare, ratio_at_least
from bench.loadgen import Job, LoadGenerator
from bench.servers import (
    BerthServer,
    cpu_seconds,
    create_live_endpoint,
    create_live_endpoint_with_settings,
)
from berth.runtime.echo import hash_repeatedly

NAME = "instances"
MODEL = "all-MiniLM-L6-v2"
# The small size checks that the benchmark works; Echo instances start in about a second.
SMALL_MODEL = "echo"
TEXT = "a small boat drifts across the quiet harbor at dawn"
CONCURRENCY = 32
ECHO_MODEL = "echo"
# SHA-256 rounds per text of the single-core Echo endpoints. They took 3.1 ms of CPU on
# a 2-core AMD EPYC machine. The gateway's hop and an Echo instance's HTTP handling cost
# 70 and 62 µs per request there (gateway benchmark, docs/benchmarks.md), so the rounds
# decide the throughput.
ECHO_CPU_ROUNDS = 10_000
# Each user sends this many requests before the clock starts.
WARMUP_REQUESTS = 1


def run_load(
    generator: LoadGenerator, endpoint: dict[str, Any], key: str, model: str, seconds: float
) -> dict[str, Any]:
    """Send 1-text embedding requests for `seconds` and return the load generator's figures."""
    run = generator.run(
        Job(
            url=f"{endpoint['openai_base_url']}/embeddings",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            body=json.dumps({"model": model, "input": TEXT}),
            concurrency=CONCURRENCY,
            requests=10**9,
            max_seconds=seconds,
            warmup=WARMUP_REQUESTS,
            expect_text='"embedding"',
        )
    )
    failed = {name: count for name, count in run["outcomes"].items() if name != "ok"}
    if failed or not run["ok"]:
        raise RuntimeError(f"embedding requests failed: {failed or 'no response'}")
    return run


def measure(
    generator: LoadGenerator, endpoint: dict[str, Any], key: str, model: str, seconds: float
) -> float:
    return float(run_load(generator, endpoint, key, model, seconds)["throughput_rps"])


class CpuMeasuredEndpoint:
    """An endpoint whose throughput is measured together with its instances' CPU time."""

    def __init__(
        self,
        generator: LoadGenerator,
        server: BerthServer,
        endpoint: dict[str, Any],
        key: str,
        seconds: float,
    ) -> None:
        self._generator = generator
        self._endpoint = endpoint
        self._key = key
        self._seconds = seconds
        self._pids = server.instance_pids(endpoint["id"])
        # CPU time of the instances per request in ms, one value per round.
        self.cpu_ms_per_request: list[float] = []

    def measure(self) -> float:
        before = sum(cpu_seconds(pid, children=False) for pid in self._pids)
        run = run_load(self._generator, self._endpoint, self._key, ECHO_MODEL, self._seconds)
        used = sum(cpu_seconds(pid, children=False) for pid in self._pids) - before
        # The CPU interval also covers the warm-up requests.
        requests = run["ok"] + WARMUP_REQUESTS * CONCURRENCY
        self.cpu_ms_per_request.append(used / requests * 1000)
        return float(run["throughput_rps"])


def hashing_cpu_ms() -> float:
    """Measure the CPU time in ms that ECHO_CPU_ROUNDS rounds on TEXT take in this thread."""
    repeats = 20
    started = time.thread_time()
    for _ in range(repeats):
        hash_repeatedly(TEXT, ECHO_CPU_ROUNDS)
    return (time.thread_time() - started) / repeats * 1000


def run(ctx: Context) -> list[Figure]:
    settings: dict[str, Any] = ctx.pick(
        small={"rounds": 1, "seconds": 0.5, "model": SMALL_MODEL},
        full={"rounds": 4, "seconds": 4.0, "model": MODEL},
    )
    model = settings["model"]
    folder = ctx.folder(NAME)
    experiments = ctx.experiments_for(NAME)
    servers: list[BerthServer] = []
    generator = LoadGenerator()
    try:
        variants: dict[str, Callable[[], float]] = {}
        labels = ["", *(f"+{experiment.name}" for experiment in experiments)]
        for label, experiment in zip(labels, [None, *experiments], strict=True):
            if experiment is None:
                server = BerthServer(folder / "home")
            else:
                server = BerthServer(
                    folder / f"home-{experiment.name}", experiment.patches, **experiment.env
                )
            servers.append(server)
            one = create_live_endpoint(server, "bench-one-instance", model, instances=1)
            two = create_live_endpoint(server, "bench-two-instances", model, instances=2)
            for size, (endpoint, key) in (("two", two), ("one", one)):
                variants[f"{size}{label}"] = functools.partial(
                    measure, generator, endpoint, key, model, settings["seconds"]
                )

        # The Echo endpoints get a server of their own. The embedding server stays as
        # before, and its default capacity (4 instance slots on 2 cores) could not
        # take 3 more instances.
        cpu_server = BerthServer(folder / "home-cpu")
        servers.append(cpu_server)
        cpu_endpoints: dict[str, CpuMeasuredEndpoint] = {}
        for size, count in (("two", 2), ("one", 1)):
            endpoint, key = create_live_endpoint_with_settings(
                cpu_server,
                f"bench-cpu-{size}",
                ECHO_MODEL,
                {"echo_cpu_rounds": ECHO_CPU_ROUNDS},
                instances=count,
            )
            cpu_endpoints[size] = CpuMeasuredEndpoint(
                generator, cpu_server, endpoint, key, settings["seconds"]
            )
            variants[f"cpu-{size}"] = cpu_endpoints[size].measure

        ctx.log(f"{ctx.rounds(settings['rounds'])} rounds over {', '.join(variants)}")
        rounds = alternate_rounds(ctx.rounds(settings["rounds"]), variants)
    finally:
        generator.close()
        for server in servers:
            server.stop()

    figures = [
        compare(
            NAME,
            f"throughput, 2 instances vs 1, {model}, {CONCURRENCY} concurrent 1-text requests",
            "req/s",
            rounds["two"],
            rounds["one"],
            "1 instance",
            target=ratio_at_least(1.7),
        ),
        compare(
            NAME,
            f"throughput, 2 instances vs 1, Echo with {ECHO_CPU_ROUNDS:,} SHA-256 rounds per "
            f"text (one core per instance), {CONCURRENCY} concurrent 1-text requests",
            "req/s",
            rounds["cpu-two"],
            rounds["cpu-one"],
            "1 instance",
            target=ratio_at_least(1.7),
            note=cpu_note(cpu_endpoints),
        ),
    ]
    for experiment in experiments:
        label = f"+{experiment.name}"
        figures += [
            compare(
                NAME,
                f"Berth + {experiment.name}: throughput, 2 instances vs 1",
                "req/s",
                rounds[f"two{label}"],
                rounds[f"one{label}"],
                "1 instance",
                target=ratio_at_least(1.7),
            ),
            compare(
                NAME,
                f"Berth + {experiment.name} vs Berth: throughput, 1 instance",
                "req/s",
                rounds[f"one{label}"],
                rounds["one"],
                "Berth as it is",
            ),
            compare(
                NAME,
                f"Berth + {experiment.name} vs Berth: throughput, 2 instances",
                "req/s",
                rounds[f"two{label}"],
                rounds["two"],
                "Berth as it is",
            ),
        ]
    return figures


def cpu_note(endpoints: dict[str, CpuMeasuredEndpoint]) -> str:
    one_instance_ms = statistics.median(endpoints["one"].cpu_ms_per_request)
    two_instances_ms = statistics.median(endpoints["two"].cpu_ms_per_request)
    return (
        f"CPU time per request in the instances, median of the rounds: {one_instance_ms:.2f} "
        f"ms with 1 instance and {two_instances_ms:.2f} ms with 2; the SHA-256 rounds alone "
        f"took {hashing_cpu_ms():.2f} ms in the benchmark process"
    )
