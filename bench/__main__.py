"""Command line: `python -m bench run [NAME ...] [--size small|full]` and `python -m bench list`."""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.benchmarks import BENCHMARKS
from bench.core import (
    SIZES,
    Context,
    Figure,
    Report,
    command_line,
    describe_machine,
    load_average,
    now_text,
)
from bench.experiments import EXPERIMENTS, Experiment
from bench.servers import LITELLM_VENV, REPO_ROOT, litellm_installed

RESULTS_DIR = REPO_ROOT / "bench" / "results"


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _log_for(benchmark: str, message: str) -> None:
    _log(f"{benchmark}: {message}")


def _litellm_version() -> str:
    if not litellm_installed():
        return "not installed"
    metadata = list((LITELLM_VENV / "lib").glob("python*/site-packages/litellm-*.dist-info"))
    return metadata[0].name.removeprefix("litellm-").removesuffix(".dist-info") if metadata else "?"


def run_benchmarks(
    names: list[str],
    size: str,
    workdir: Path,
    experiments: tuple[Experiment, ...] = (),
    skip_litellm: bool = False,
    rounds: int | None = None,
) -> Report:
    """Run the named benchmarks in order and return the report; errors become notes."""
    report = Report(
        command=command_line(),
        size=size,
        started=now_text(),
        machine=describe_machine({"litellm": _litellm_version()}),
    )
    started = time.monotonic()
    for name in names:
        benchmark = BENCHMARKS[name]
        _log(f"{name}: {benchmark.summary}")
        context = Context(
            size=size,
            workdir=workdir / name,
            log=functools.partial(_log_for, name),
            experiments=experiments,
            skip_litellm=skip_litellm,
            rounds_override=rounds,
        )
        context.workdir.mkdir(parents=True, exist_ok=True)
        benchmark_started = time.monotonic()
        try:
            figures: list[Figure] = benchmark.load()(context)
        except Exception as error:
            traceback.print_exc()
            report.notes.append(f"{name} failed: {type(error).__name__}: {error}")
            continue
        report.figures.extend(figures)
        _log(f"{name}: done in {time.monotonic() - benchmark_started:.0f} s")
    report.duration_s = time.monotonic() - started
    report.machine["load average at end"] = load_average()
    return report


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of 1 or more")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmarks of Berth against its baselines."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the benchmarks")
    run_parser = commands.add_parser("run", help="run benchmarks and print the table")
    run_parser.add_argument(
        "names", nargs="*", metavar="NAME", help="benchmarks to run (default: all, in order)"
    )
    run_parser.add_argument(
        "--size",
        choices=SIZES,
        default="full",
        help="small: one short round each, to check that they work; full: the recorded "
        "figures (default: %(default)s)",
    )
    run_parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        choices=sorted(EXPERIMENTS),
        metavar="EXPERIMENT",
        help="also measure Berth with this proposed change (repeatable); "
        "`python -m bench list` describes them",
    )
    run_parser.add_argument(
        "--rounds",
        type=_positive_int,
        metavar="N",
        help="alternating rounds per benchmark instead of its own number for the size; "
        "more rounds steady the medians on a noisy machine",
    )
    run_parser.add_argument(
        "--no-litellm",
        action="store_true",
        help="leave out the LiteLLM baseline of the gateway benchmark",
    )
    run_parser.add_argument(
        "--workdir",
        type=Path,
        help="scratch folder for servers, databases and logs (default: a new temporary "
        "folder, removed afterwards unless --keep)",
    )
    run_parser.add_argument(
        "--keep", action="store_true", help="keep the scratch folder with the logs"
    )
    run_parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR,
        help="folder for latest.md and latest.json (default: bench/results)",
    )
    args = parser.parse_args(argv)

    if args.command == "list":
        print("benchmarks:")
        for benchmark in BENCHMARKS.values():
            print(f"  {benchmark.name:16} {benchmark.summary}")
        print("experiments (--experiment NAME):")
        for experiment in EXPERIMENTS.values():
            print(f"  {experiment.name:16} {experiment.summary}")
            print(f"  {'':16} affects: {', '.join(experiment.benchmarks)}")
        return 0

    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)

    # Child processes import `bench` and `berth` from this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="berth-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        experiments = tuple(EXPERIMENTS[name] for name in args.experiment)
        report = run_benchmarks(
            names, args.size, workdir, experiments, args.no_litellm, args.rounds
        )
    finally:
        if args.keep or args.workdir:
            _log(f"logs and databases are in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print(report.text())
    saved = report.save(args.results)
    _log(f"table saved to {saved}")
    return 1 if any("failed:" in note for note in report.notes) else 0


if __name__ == "__main__":
    sys.exit(main())
