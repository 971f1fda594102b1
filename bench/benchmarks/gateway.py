"""Gateway overhead: one Echo instance called directly, through Berth and through LiteLLM.

All three paths end at the same instance process (the endpoint's own, found in
Berth's database), so the only difference between them is the hop in front of it.
Echo responds at once, so every figure is the cost of the path, not of a model.
"""

from __future__ import annotations

import functools
import json
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from bench.core import (
    Context,
    Figure,
    alternate_rounds,
    compare,
    median,
    paired_difference,
    ratio_at_least,
    ratio_at_most,
    value_below,
)
from bench.loadgen import Job, LoadGenerator
from bench.servers import (
    LITELLM_MASTER_KEY,
    BerthServer,
    LiteLLMProxy,
    ManagedProcess,
    cpu_seconds,
    create_live_endpoint,
    descendants,
    free_port,
    litellm_installed,
    wait_until,
)

NAME = "gateway"
PROMPT = "hello from the benchmark"
# 64 words: the stream has 66 events, so a hop that buffered it would show in the TTFB.
STREAM_PROMPT = " ".join(f"word{index}" for index in range(64))
CONCURRENCY_LEVELS = (1, 16, 64)


@dataclass
class CallPath:
    """One way to reach the instance: a URL, the headers it needs and the processes on it."""

    label: str
    url: str
    headers: dict[str, str]
    # The process in front of the instance (Berth's server or LiteLLM); None for direct.
    hop_pid: int | None = None
    # The instance process behind the path, for its CPU time per request.
    instance_pid: int | None = None


@dataclass
class PathRound:
    """Figures of one path in one round."""

    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    throughput: dict[int, float] = field(default_factory=dict)
    ttfb_p50_ms: float = 0.0
    # CPU time per request at the highest concurrency, in microseconds.
    hop_cpu_us: float = float("nan")
    instance_cpu_us: float = float("nan")
    generator_cpu_share: float = 0.0


def _chat_body(prompt: str, stream: bool) -> str:
    body: dict[str, Any] = {"model": "echo", "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
    return json.dumps(body)


def measure_path(generator: LoadGenerator, path: CallPath, settings: dict[str, Any]) -> PathRound:
    """Run the sequential, concurrent and streaming jobs against one path."""
    headers = {"Content-Type": "application/json", **path.headers}
    plain = _chat_body(PROMPT, stream=False)
    result = PathRound()

    sequential = generator.run(
        Job(
            url=path.url,
            headers=headers,
            body=plain,
            concurrency=1,
            requests=settings["sequential_requests"],
            max_seconds=settings["seconds"],
            warmup=20,
            expect_text=PROMPT,
        )
    )
    _require_ok(sequential, path)
    result.latency_p50_ms = sequential["latency_ms"]["p50"]
    result.latency_p99_ms = sequential["latency_ms"]["p99"]
    result.throughput[1] = sequential["throughput_rps"]

    for concurrency in CONCURRENCY_LEVELS[1:]:
        hop_before = cpu_seconds(path.hop_pid) if path.hop_pid else 0.0
        instance_before = (
            cpu_seconds(path.instance_pid, children=False) if path.instance_pid else 0.0
        )
        run = generator.run(
            Job(
                url=path.url,
                headers=headers,
                body=plain,
                concurrency=concurrency,
                requests=10**9,
                max_seconds=settings["seconds"],
                warmup=2,
                expect_text=PROMPT,
            )
        )
        _require_ok(run, path)
        result.throughput[concurrency] = run["throughput_rps"]
        if concurrency == CONCURRENCY_LEVELS[-1] and run["ok"]:
            instance_used = 0.0
            if path.instance_pid:
                instance_used = cpu_seconds(path.instance_pid, children=False) - instance_before
                result.instance_cpu_us = instance_used / run["ok"] * 1e6
            if path.hop_pid:
                hop_used = cpu_seconds(path.hop_pid) - hop_before
                if path.instance_pid in descendants(path.hop_pid):
                    # Berth's instances are its server's children: count the server only.
                    hop_used -= instance_used
                result.hop_cpu_us = hop_used / run["ok"] * 1e6
            result.generator_cpu_share = run["generator_cpu_s"] / run["elapsed_s"]

    streaming = generator.run(
        Job(
            url=path.url,
            headers=headers,
            body=_chat_body(STREAM_PROMPT, stream=True),
            concurrency=1,
            requests=settings["stream_requests"],
            max_seconds=settings["seconds"],
            warmup=5,
            expect_text="[DONE]",
        )
    )
    _require_ok(streaming, path)
    result.ttfb_p50_ms = streaming["ttfb_ms"]["p50"]
    return result


def _require_ok(run: dict[str, Any], path: CallPath) -> None:
    failed = {name: count for name, count in run["outcomes"].items() if name != "ok"}
    if failed or not run["ok"]:
        raise RuntimeError(f"requests through {path.label} failed: {failed or 'no response'}")


def measure_generator_ceiling(ctx: Context, generator: LoadGenerator, seconds: float) -> float:
    """Return the generator's throughput at 64 users against a fixed-response server."""
    port = free_port()
    server = ManagedProcess(
        [sys.executable, "-m", "bench.loadgen", "--serve", str(port)],
        ctx.folder(NAME) / "fixed-server.log",
    )
    try:

        def listening() -> bool:
            server.check_alive()
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, 30, "the fixed-response server")
        run = generator.run(
            Job(
                url=f"http://127.0.0.1:{port}/",
                concurrency=64,
                requests=10**9,
                max_seconds=seconds,
                warmup=2,
            )
        )
    finally:
        server.stop()
    return float(run["throughput_rps"])


def run(ctx: Context) -> list[Figure]:
    settings: dict[str, Any] = ctx.pick(
        small={"rounds": 1, "seconds": 0.4, "sequential_requests": 100, "stream_requests": 30},
        full={"rounds": 3, "seconds": 2.5, "sequential_requests": 3000, "stream_requests": 600},
    )
    folder = ctx.folder(NAME)
    servers = [BerthServer(folder / "home")]
    litellm: LiteLLMProxy | None = None
    generator = LoadGenerator()
    try:
        endpoint, key = create_live_endpoint(servers[0], "bench-echo", "echo")
        [address] = servers[0].instance_addresses(endpoint["id"])
        [instance_pid] = servers[0].instance_pids(endpoint["id"])
        paths = {
            "direct": CallPath(
                "the instance directly",
                f"http://{address}/v1/chat/completions",
                {},
                instance_pid=instance_pid,
            ),
            "berth": CallPath(
                "the Berth gateway",
                f"{endpoint['openai_base_url']}/chat/completions",
                {"Authorization": f"Bearer {key}"},
                servers[0].pid,
                instance_pid,
            ),
        }
        for experiment in ctx.experiments_for(NAME):
            # The patched server runs its own Echo instance, which is unpatched.
            patched = BerthServer(
                folder / f"home-{experiment.name}", experiment.patches, **experiment.env
            )
            servers.append(patched)
            patched_endpoint, patched_key = create_live_endpoint(patched, "bench-echo", "echo")
            [patched_instance] = patched.instance_pids(patched_endpoint["id"])
            paths[f"berth+{experiment.name}"] = CallPath(
                f"the Berth gateway with {experiment.name}",
                f"{patched_endpoint['openai_base_url']}/chat/completions",
                {"Authorization": f"Bearer {patched_key}"},
                patched.pid,
                patched_instance,
            )
        if litellm_installed() and not ctx.skip_litellm:
            ctx.log("starting the LiteLLM proxy (takes 10-30 s)")
            litellm = LiteLLMProxy(folder, f"http://{address}/v1", "echo")
            paths["litellm"] = CallPath(
                "the LiteLLM proxy",
                f"{litellm.url}/v1/chat/completions",
                {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"},
                litellm.pid,
                instance_pid,
            )
        elif not litellm_installed():
            ctx.log("LiteLLM is not installed (bench/setup-litellm.sh); skipping that baseline")

        ctx.log(f"{ctx.rounds(settings['rounds'])} rounds over {', '.join(paths)}")
        rounds = alternate_rounds(
            ctx.rounds(settings["rounds"]),
            {
                name: functools.partial(measure_path, generator, path, settings)
                for name, path in paths.items()
            },
        )
        ceiling = measure_generator_ceiling(ctx, generator, settings["seconds"])
    finally:
        generator.close()
        if litellm is not None:
            litellm.stop()
        for server in servers:
            server.stop()

    figures = _variant_figures("Berth", rounds["berth"], rounds["direct"], rounds.get("litellm"))
    for experiment in ctx.experiments_for(NAME):
        label = f"Berth + {experiment.name}"
        patched_rounds = rounds[f"berth+{experiment.name}"]
        figures += _variant_figures(label, patched_rounds, rounds["direct"], rounds.get("litellm"))
        figures += _gain_figures(label, patched_rounds, rounds["berth"])
    figures += _generator_figures(rounds["direct"], ceiling)
    return figures


def _variant_figures(
    label: str,
    berth: list[PathRound],
    direct: list[PathRound],
    litellm: list[PathRound] | None,
) -> list[Figure]:
    """Rows of one Berth variant against the direct path and against LiteLLM."""
    prefix = "" if label == "Berth" else f"{label}: "
    figures = [
        compare(
            NAME,
            f"{prefix}sequential latency p50",
            "ms",
            [r.latency_p50_ms for r in berth],
            [r.latency_p50_ms for r in direct],
            "direct",
        ),
        Figure(
            NAME,
            f"{prefix}added sequential latency p50",
            "ms",
            paired_difference(
                [r.latency_p50_ms for r in berth], [r.latency_p50_ms for r in direct]
            ),
            target=value_below(0.5, "ms"),
            rounds=len(berth),
        ),
        compare(
            NAME,
            f"{prefix}sequential latency p99",
            "ms",
            [r.latency_p99_ms for r in berth],
            [r.latency_p99_ms for r in direct],
            "direct",
        ),
    ]
    for concurrency in CONCURRENCY_LEVELS:
        figures.append(
            compare(
                NAME,
                f"{prefix}throughput, {concurrency} concurrent",
                "req/s",
                [r.throughput[concurrency] for r in berth],
                [r.throughput[concurrency] for r in direct],
                "direct",
                target=ratio_at_least(0.9) if concurrency == CONCURRENCY_LEVELS[-1] else None,
            )
        )
    figures.append(
        compare(
            NAME,
            f"{prefix}streaming TTFB p50 (64-word chat stream)",
            "ms",
            [r.ttfb_p50_ms for r in berth],
            [r.ttfb_p50_ms for r in direct],
            "direct",
            target=ratio_at_most(1.05),
        )
    )
    if litellm:
        for concurrency in CONCURRENCY_LEVELS:
            figures.append(
                compare(
                    NAME,
                    f"{prefix}throughput vs LiteLLM, {concurrency} concurrent",
                    "req/s",
                    [r.throughput[concurrency] for r in berth],
                    [r.throughput[concurrency] for r in litellm],
                    "LiteLLM",
                    target=ratio_at_least(5) if concurrency == CONCURRENCY_LEVELS[-1] else None,
                )
            )
        figures.append(
            compare(
                NAME,
                f"{prefix}sequential latency p50 vs LiteLLM",
                "ms",
                [r.latency_p50_ms for r in berth],
                [r.latency_p50_ms for r in litellm],
                "LiteLLM",
            )
        )
    hop_cpu = [r.hop_cpu_us for r in berth]
    hop_name = f"{prefix}CPU per request of the hop, 64 concurrent"
    if litellm:
        litellm_cpu = [r.hop_cpu_us for r in litellm]
        figures.append(compare(NAME, hop_name, "µs", hop_cpu, litellm_cpu, "LiteLLM process"))
    else:
        figures.append(Figure(NAME, hop_name, "µs", median(hop_cpu), rounds=len(berth)))
    figures.append(
        compare(
            NAME,
            f"{prefix}CPU per request of the instance, 64 concurrent",
            "µs",
            [r.instance_cpu_us for r in berth],
            [r.instance_cpu_us for r in direct],
            "called directly",
        )
    )
    return figures


def _gain_figures(label: str, patched: list[PathRound], berth: list[PathRound]) -> list[Figure]:
    """Rows of a patched Berth against Berth as it is: the gain of the proposed change."""
    figures = [
        compare(
            NAME,
            f"{label} vs Berth: sequential latency p50",
            "ms",
            [r.latency_p50_ms for r in patched],
            [r.latency_p50_ms for r in berth],
            "Berth as it is",
        )
    ]
    for concurrency in CONCURRENCY_LEVELS:
        figures.append(
            compare(
                NAME,
                f"{label} vs Berth: throughput, {concurrency} concurrent",
                "req/s",
                [r.throughput[concurrency] for r in patched],
                [r.throughput[concurrency] for r in berth],
                "Berth as it is",
            )
        )
    figures.append(
        compare(
            NAME,
            f"{label} vs Berth: CPU per request of the gateway, 64 concurrent",
            "µs",
            [r.hop_cpu_us for r in patched],
            [r.hop_cpu_us for r in berth],
            "Berth as it is",
        )
    )
    return figures


def _generator_figures(direct: list[PathRound], ceiling: float) -> list[Figure]:
    share = median([r.generator_cpu_share for r in direct])
    return [
        Figure(
            NAME,
            "load generator ceiling, 64 concurrent",
            "req/s",
            ceiling,
            median([r.throughput[64] for r in direct]),
            "direct instance",
            note="against a fixed-response server; while loading the direct instance at "
            f"64 concurrent the generator used {share:.0%} of one core",
        )
    ]
