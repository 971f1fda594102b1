"""The benchmarks, by name, in the order a full run takes them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.core import Context, Figure


@dataclass(frozen=True)
class Benchmark:
    name: str
    summary: str
    module: str

    def load(self) -> Callable[[Context], list[Figure]]:
        from importlib import import_module

        run: Callable[[Context], list[Figure]] = import_module(self.module).run
        return run


BENCHMARKS = {
    benchmark.name: benchmark
    for benchmark in (
        Benchmark(
            "gateway",
            "Echo instance: direct vs Berth gateway vs LiteLLM proxy",
            "bench.benchmarks.gateway",
        ),
        Benchmark(
            "batching",
            "embedding runtime: dynamic batching on vs off vs one direct encode",
            "bench.benchmarks.batching",
        ),
        Benchmark(
            "time-to-live",
            "create request to first prediction vs starting the runtime by hand",
            "bench.benchmarks.time_to_live",
        ),
        Benchmark(
            "generation",
            "demo-tiny-llama tokens/s through the endpoint vs plain generate()",
            "bench.benchmarks.generation",
        ),
        Benchmark(
            "control-plane",
            "1,000 endpoints and 100,000 keys vs 1 endpoint and 10 keys",
            "bench.benchmarks.control_plane",
        ),
        Benchmark(
            "instances",
            "embedding and single-core Echo endpoint throughput with 1 vs 2 instances",
            "bench.benchmarks.instances",
        ),
    )
}
