"""Instances: throughput of a CPU-bound endpoint with 1 and with 2 instances.

Two all-MiniLM-L6-v2 endpoints run on one Berth server, one with 1 instance and one
with 2; rounds alternate between them. Requests carry one text each and arrive from
CONCURRENCY users through the gateway, so each instance batches what it receives.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from bench.core import Context, Figure, alternate_rounds, compare, ratio_at_least
from bench.loadgen import Job, LoadGenerator
from bench.servers import BerthServer, create_live_endpoint

NAME = "instances"
MODEL = "all-MiniLM-L6-v2"
# The small size checks that the benchmark works; Echo instances start in about a second.
SMALL_MODEL = "echo"
TEXT = "a small boat drifts across the quiet harbor at dawn"
CONCURRENCY = 32


def measure(
    generator: LoadGenerator, endpoint: dict[str, Any], key: str, model: str, seconds: float
) -> float:
    run = generator.run(
        Job(
            url=f"{endpoint['openai_base_url']}/embeddings",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            body=json.dumps({"model": model, "input": TEXT}),
            concurrency=CONCURRENCY,
            requests=10**9,
            max_seconds=seconds,
            warmup=1,
            expect_text='"embedding"',
        )
    )
    failed = {name: count for name, count in run["outcomes"].items() if name != "ok"}
    if failed or not run["ok"]:
        raise RuntimeError(f"embedding requests failed: {failed or 'no response'}")
    return float(run["throughput_rps"])


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
        )
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
