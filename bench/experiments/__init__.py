"""Proposed changes to Berth, applied at run time to measure what they would gain.

An experiment either patches Berth in memory (a module with an `apply()`) or sets the
environment variables that the changed code would set. No file under src/ changes.
`python -m bench run NAME --experiment EXPERIMENT` adds a "Berth + EXPERIMENT" variant
to the benchmarks that the experiment affects, measured in the same alternating rounds
as Berth as it is.

`python -m bench.experiments NAME [NAME ...] -- MODULE ARGS` applies the named patches
and then runs MODULE (`berth` or `berth.runtime`) as `python -m` would. Instances that a
patched `berth up` starts are not patched. Environment variables do reach them, because
Berth passes its environment on to instances.
"""

from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass, field
from importlib import import_module


@dataclass(frozen=True)
class Experiment:
    name: str
    summary: str
    # Benchmarks that add a variant for this experiment.
    benchmarks: tuple[str, ...]
    # Module with an apply() that patches the Berth server process, if any.
    patch: str | None = None
    # Variables set for the Berth server (and so its instances) and for bare runtimes.
    env: dict[str, str] = field(default_factory=dict)

    @property
    def patches(self) -> tuple[str, ...]:
        return (self.name,) if self.patch else ()


EXPERIMENTS = {
    experiment.name: experiment
    for experiment in (
        Experiment(
            "one-thread",
            "instances (and the bare runtimes and plain baselines of the same variant) run "
            "torch with one intra-op thread (OMP_NUM_THREADS=1), so two instances on two "
            "cores do not compete for the same cores",
            ("batching", "generation", "instances"),
            env={"OMP_NUM_THREADS": "1"},
        ),
        Experiment(
            "two-threads",
            "instances (and the bare runtimes and plain baselines of the same variant) run "
            "torch with two intra-op threads (OMP_NUM_THREADS=2), whatever the number of "
            "instances, as before Berth shared the cores out between instances",
            ("generation", "instances"),
            env={"OMP_NUM_THREADS": "2"},
        ),
        *(
            Experiment(
                f"spin-{label}",
                f"instances (and the bare runtimes and plain baselines of the same variant) "
                f"let idle OpenMP threads spin for {count:,} rounds before they sleep "
                f"(GOMP_SPINCOUNT={count}), instead of sleeping at once",
                ("batching", "generation", "instances"),
                env={"GOMP_SPINCOUNT": str(count)},
            )
            for label, count in (("10k", 10_000), ("100k", 100_000), ("300k", 300_000))
        ),
        Experiment(
            "tcp-hop",
            "instances get no Unix socket, so the gateway reaches them over TCP on "
            "loopback, as before change 14",
            ("gateway",),
            patch="bench.experiments.tcp_hop",
        ),
        Experiment(
            "two-workers",
            "the server runs the gateway and the API in two worker processes "
            "(BERTH_WORKERS=2) instead of one",
            ("gateway",),
            env={"BERTH_WORKERS": "2"},
        ),
        Experiment(
            "nice-instances",
            "instances run at nice 5, a lower CPU priority than the server, so that the "
            "gateway gets a core first when a computing instance wants one too",
            ("gateway", "generation"),
            patch="bench.experiments.nice_instances",
        ),
        Experiment(
            "short-slice",
            "the server's main thread, where the gateway runs, gets a 0.1 ms time slice "
            "(Linux 6.12 or later), so that it may preempt a computing instance sooner",
            ("gateway", "generation"),
            patch="bench.experiments.short_slice",
        ),
        Experiment(
            "reconcile-50ms",
            "the reconciler runs every 50 ms instead of every 500 ms, an upper bound for "
            "probing starting instances sooner",
            ("time-to-live",),
            env={"BERTH_RECONCILE_INTERVAL_S": "0.05"},
        ),
    )
}
MODULES = ("berth", "berth.runtime")


def apply(names: list[str]) -> None:
    for name in names:
        experiment = EXPERIMENTS.get(name)
        if experiment is None or experiment.patch is None:
            raise SystemExit(
                f"unknown patch {name!r}; choose from "
                f"{', '.join(sorted(e.name for e in EXPERIMENTS.values() if e.patch))}"
            )
        import_module(experiment.patch).apply()


def main(argv: list[str]) -> None:
    if "--" not in argv or argv.index("--") + 1 >= len(argv):
        raise SystemExit("usage: python -m bench.experiments NAME [NAME ...] -- MODULE ARGS")
    split = argv.index("--")
    module = argv[split + 1]
    if module not in MODULES:
        raise SystemExit(f"MODULE must be one of {', '.join(MODULES)}, got {module!r}")
    apply(argv[:split])
    sys.argv = [module, *argv[split + 2 :]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
