"""Generation: tokens per second of demo-tiny-llama through the endpoint vs plain generate().

Every request is a greedy completion (temperature 0) of the same prompt, so each path
produces the same tokens. Three paths are timed in alternating rounds: streamed through
the Berth gateway, streamed from the endpoint's instance directly (which separates the
runtime's cost from the gateway's), and the model's generate() in a plain process.
The runtime generates one sequence at a time, so concurrent streams queue. The plain
process shows both that case (one call after another) and one batched generate() call.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

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
from bench.servers import BerthServer, create_live_endpoint

NAME = "generation"
MODEL = "demo-tiny-llama"
PROMPT = "Once upon a time, in a harbor town by the sea,"


@dataclass
class StreamRound:
    # One stream: tokens per second from request to the end of the stream.
    tokens_per_s: float
    ttfb_ms: float
    # Several concurrent streams: all their tokens over the wall time of the batch.
    concurrent_tokens_per_s: float


def _completion_body(max_tokens: int, stream: bool) -> dict[str, Any]:
    return {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }


def measure_stream(
    generator: LoadGenerator,
    url: str,
    headers: dict[str, str],
    settings: dict[str, Any],
    tokens: int,
) -> StreamRound:
    def job(concurrency: int, requests: int) -> dict[str, Any]:
        run = generator.run(
            Job(
                url=url,
                headers={"Content-Type": "application/json", **headers},
                body=json.dumps(_completion_body(settings["max_tokens"], stream=True)),
                concurrency=concurrency,
                requests=requests,
                max_seconds=settings["seconds"],
                warmup=1,
                expect_text="[DONE]",
            )
        )
        failed = {name: count for name, count in run["outcomes"].items() if name != "ok"}
        if failed or not run["ok"]:
            raise RuntimeError(f"streams from {url} failed: {failed or run['outcomes']}")
        return run

    single = job(1, settings["streams_per_round"])
    concurrent = job(settings["concurrent_streams"], settings["concurrent_streams"])
    return StreamRound(
        tokens_per_s=tokens / (single["latency_ms"]["p50"] / 1000),
        ttfb_ms=single["ttfb_ms"]["p50"],
        concurrent_tokens_per_s=tokens * concurrent["ok"] / concurrent["elapsed_s"],
    )


def _count_tokens(url: str, headers: dict[str, str], max_tokens: int) -> int:
    response = httpx.post(
        url, json=_completion_body(max_tokens, stream=False), headers=headers, timeout=120
    )
    response.raise_for_status()
    return int(response.json()["usage"]["completion_tokens"])


def run(ctx: Context) -> list[Figure]:
    settings: dict[str, Any] = ctx.pick(
        small={
            "rounds": 1,
            "max_tokens": 16,
            "streams_per_round": 2,
            "concurrent_streams": 2,
            "seconds": 2.0,
        },
        full={
            # One stream's rate sits close to its target, and a round of 5 streams let the
            # load of other processes move it by several percent either way.
            "rounds": 6,
            "max_tokens": 64,
            "streams_per_round": 8,
            "concurrent_streams": 4,
            "seconds": 5.0,
        },
    )
    folder = ctx.folder(NAME)
    experiments = ctx.experiments_for(NAME)
    servers: list[BerthServer] = []
    baselines: list[BaselineWorker] = []
    generator = LoadGenerator()
    try:
        servers.append(BerthServer(folder / "home"))
        baselines.append(BaselineWorker(folder / "generate.log"))
        for experiment in experiments:
            servers.append(
                BerthServer(
                    folder / f"home-{experiment.name}", experiment.patches, **experiment.env
                )
            )
            baselines.append(
                BaselineWorker(folder / f"generate-{experiment.name}.log", experiment.env)
            )
        gateways = []
        for server in servers:
            endpoint, key = create_live_endpoint(server, "bench-generation", MODEL)
            gateways.append((endpoint, {"Authorization": f"Bearer {key}"}))
        endpoint, auth = gateways[0]
        [address] = servers[0].instance_addresses(endpoint["id"])
        gateway_url = f"{endpoint['openai_base_url']}/completions"
        direct_url = f"http://{address}/v1/completions"
        for baseline in baselines:
            baseline.call("load_generation", path=str(folder / "home" / "models" / MODEL))

        tokens = _count_tokens(gateway_url, auth, settings["max_tokens"])
        plain_check = baselines[0].call(
            "generate", prompt=PROMPT, max_new_tokens=settings["max_tokens"], batch=1, repeat=1
        )
        if plain_check["new_tokens"] != tokens:
            ctx.log(
                f"the endpoint produced {tokens} tokens and generate() "
                f"{plain_check['new_tokens']}; rates are compared per token"
            )

        def plain_single(baseline: BaselineWorker) -> float:
            result = baseline.call(
                "generate",
                prompt=PROMPT,
                max_new_tokens=settings["max_tokens"],
                batch=1,
                repeat=settings["streams_per_round"],
                max_seconds=settings["seconds"],
            )
            return result["new_tokens"] / median(result["durations_s"])

        def plain_batched(baseline: BaselineWorker) -> float:
            streams = settings["concurrent_streams"]
            result = baseline.call(
                "generate",
                prompt=PROMPT,
                max_new_tokens=settings["max_tokens"],
                batch=streams,
                repeat=1,
            )
            return streams * result["new_tokens"] / median(result["durations_s"])

        variants: dict[str, Callable[[], Any]] = {
            "berth": lambda: measure_stream(generator, gateway_url, auth, settings, tokens),
            "direct": lambda: measure_stream(generator, direct_url, {}, settings, tokens),
            "plain": lambda: plain_single(baselines[0]),
            "plain batched": lambda: plain_batched(baselines[0]),
        }
        for index, experiment in enumerate(experiments, start=1):
            patched_endpoint, patched_auth = gateways[index]
            patched_url = f"{patched_endpoint['openai_base_url']}/completions"
            variants[f"berth+{experiment.name}"] = functools.partial(
                measure_stream, generator, patched_url, patched_auth, settings, tokens
            )
            variants[f"plain+{experiment.name}"] = functools.partial(plain_single, baselines[index])
        round_count = ctx.rounds(settings["rounds"])
        ctx.log(f"{round_count} rounds of {tokens}-token completions over {', '.join(variants)}")
        rounds = alternate_rounds(round_count, variants)
    finally:
        generator.close()
        for baseline in baselines:
            baseline.close()
        for server in servers:
            server.stop()

    figures = _figures(rounds, settings["concurrent_streams"])
    for experiment in experiments:
        figures += _experiment_figures(experiment.name, bool(experiment.env), rounds)
    return figures


def _figures(rounds: dict[str, list[Any]], streams: int) -> list[Figure]:
    berth: list[StreamRound] = rounds["berth"]
    direct: list[StreamRound] = rounds["direct"]
    return [
        compare(
            NAME,
            "tokens/s, one stream",
            "tok/s",
            [r.tokens_per_s for r in berth],
            rounds["plain"],
            "generate() in a plain process",
            target=ratio_at_least(0.95),
        ),
        compare(
            NAME,
            "tokens/s, one stream, instance called directly",
            "tok/s",
            [r.tokens_per_s for r in direct],
            rounds["plain"],
            "generate() in a plain process",
        ),
        compare(
            NAME,
            f"tokens/s, {streams} concurrent streams",
            "tok/s",
            [r.concurrent_tokens_per_s for r in berth],
            rounds["plain"],
            "generate() calls one after another",
        ),
        compare(
            NAME,
            f"tokens/s, {streams} concurrent streams vs batched generate()",
            "tok/s",
            [r.concurrent_tokens_per_s for r in berth],
            rounds["plain batched"],
            f"one generate() of {streams} sequences",
        ),
        compare(
            NAME,
            "streaming TTFB p50",
            "ms",
            [r.ttfb_ms for r in berth],
            [r.ttfb_ms for r in direct],
            "instance called directly",
            target=ratio_at_most(1.05),
        ),
    ]


def _experiment_figures(name: str, sets_env: bool, rounds: dict[str, list[Any]]) -> list[Figure]:
    # A patch of the server leaves the plain process as it is; an environment variable
    # is set for the plain process of the variant too.
    plain_label = (
        f"generate() in a plain process with {name}"
        if sets_env
        else "generate() in a plain process"
    )
    patched: list[StreamRound] = rounds[f"berth+{name}"]
    berth: list[StreamRound] = rounds["berth"]
    return [
        compare(
            NAME,
            f"Berth + {name}: tokens/s, one stream",
            "tok/s",
            [r.tokens_per_s for r in patched],
            rounds[f"plain+{name}"],
            plain_label,
            target=ratio_at_least(0.95),
        ),
        compare(
            NAME,
            f"Berth + {name} vs Berth: tokens/s, one stream",
            "tok/s",
            [r.tokens_per_s for r in patched],
            [r.tokens_per_s for r in berth],
            "Berth as it is",
        ),
        compare(
            NAME,
            f"Berth + {name} vs Berth: tokens/s, concurrent streams",
            "tok/s",
            [r.concurrent_tokens_per_s for r in patched],
            [r.concurrent_tokens_per_s for r in berth],
            "Berth as it is",
        ),
        compare(
            NAME,
            f"Berth + {name} vs Berth: streaming TTFB p50",
            "ms",
            [r.ttfb_ms for r in patched],
            [r.ttfb_ms for r in berth],
            "Berth as it is",
        ),
    ]
