"""Figures, alternating rounds, the machine description and the result table."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

T = TypeVar("T")

SIZES = ("small", "full")
OPENMP_VARIABLES = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class Context:
    """The inputs of every benchmark: the size to run at, a scratch folder, a logger and
    the experiments (bench.experiments) to measure next to Berth as it is."""

    size: str
    workdir: Path
    log: Callable[[str], None]
    experiments: tuple[Any, ...] = ()
    # Leave out the LiteLLM baseline, whose proxy takes 10-30 s to start.
    skip_litellm: bool = False
    # Rounds of each benchmark instead of its own number for the size (--rounds).
    rounds_override: int | None = None

    def experiments_for(self, benchmark: str) -> list[Any]:
        """Return the requested experiments that add a variant to `benchmark`."""
        return [e for e in self.experiments if benchmark in e.benchmarks]

    @property
    def full(self) -> bool:
        return self.size == "full"

    def pick(self, small: T, full: T) -> T:
        """Return the value for the current size."""
        return full if self.full else small

    def rounds(self, planned: int) -> int:
        """Return the number of rounds to run: `planned`, unless --rounds set another."""
        return self.rounds_override or planned

    def folder(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Target:
    """A goal that a figure is checked against, with the text shown in the table."""

    text: str
    check: Callable[[Figure], bool]


def ratio_at_least(minimum: float) -> Target:
    return Target(f"ratio ≥ {minimum:g}", lambda f: f.ratio is not None and f.ratio >= minimum)


def ratio_at_most(maximum: float) -> Target:
    return Target(f"ratio ≤ {maximum:g}", lambda f: f.ratio is not None and f.ratio <= maximum)


def value_below(limit: float, unit: str) -> Target:
    return Target(f"< {limit:g} {unit}", lambda f: f.berth < limit)


@dataclass
class Figure:
    """One row of the result table: Berth's value, the baseline's, and their ratio.

    `ratio` is the median of the per-round ratios Berth/baseline, not the ratio of the
    medians, so that a slow round slows both sides of its own ratio.
    """

    benchmark: str
    name: str
    unit: str
    berth: float
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    target: Target | None = None
    met: bool | None = None
    note: str = ""
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.target is not None:
            self.met = bool(self.target.check(self))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = self.target.text if self.target else ""
        return data


def alternate_rounds(rounds: int, variants: dict[str, Callable[[], T]]) -> dict[str, list[T]]:
    """Run each variant once per round, reversing the order every other round.

    Alternating ABC, CBA, ABC, ... spreads slow phases of the machine over all variants
    instead of letting one variant run during all of them.
    """
    names = list(variants)
    results: dict[str, list[T]] = {name: [] for name in names}
    for index in range(rounds):
        order = names if index % 2 == 0 else list(reversed(names))
        for name in order:
            results[name].append(variants[name]())
    return results


def median(values: list[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return statistics.median(finite) if finite else float("nan")


def paired_ratio(berth: list[float], baseline: list[float]) -> float:
    """Return the median over rounds of berth[i] / baseline[i]."""
    ratios = [a / b for a, b in zip(berth, baseline, strict=True) if b and not math.isnan(a)]
    return median(ratios)


def paired_difference(berth: list[float], baseline: list[float]) -> float:
    """Return the median over rounds of berth[i] - baseline[i]."""
    return median([a - b for a, b in zip(berth, baseline, strict=True)])


def compare(
    benchmark: str,
    name: str,
    unit: str,
    berth: list[float],
    baseline: list[float],
    baseline_label: str,
    target: Target | None = None,
    note: str = "",
) -> Figure:
    """Build a figure from per-round values of Berth and of its baseline."""
    return Figure(
        benchmark=benchmark,
        name=name,
        unit=unit,
        berth=median(berth),
        baseline=median(baseline),
        baseline_label=baseline_label,
        ratio=paired_ratio(berth, baseline),
        target=target,
        note=note,
        rounds=len(berth),
    )


# --- the machine -------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f} (1 / 5 / 15 min)"


def describe_machine(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return the facts that a reader needs to compare two result tables."""
    memory_gib = psutil.virtual_memory().total / 2**30
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts = {
        "cpu": cpu_model(),
        "cores": f"{os.cpu_count()} logical ({usable} usable by this process)",
        "memory": f"{memory_gib:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "berth": _package_version("berth"),
        "torch": _package_version("torch"),
        "uvicorn": _package_version("uvicorn"),
        # Other processes compete for the cores, and all ratios of one run share that load.
        "load average at start": load_average(),
    }
    # Settings of the OpenMP runtime in torch change model-bound figures many times over.
    openmp = [f"{name}={os.environ[name]}" for name in OPENMP_VARIABLES if name in os.environ]
    facts["OpenMP environment"] = ", ".join(openmp) or "not set"
    facts.update(extra or {})
    return facts


# --- the table ---------------------------------------------------------------------


def _format_value(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "–"
    magnitude = abs(value)
    if magnitude >= 1000:
        text = f"{value:,.0f}"
    elif magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _format_ratio(ratio: float | None) -> str:
    if ratio is None or math.isnan(ratio):
        return "–"
    return f"{ratio:.2f}"


def _format_met(met: bool | None) -> str:
    if met is None:
        return ""
    return "met" if met else "MISSED"


def table_rows(figures: list[Figure]) -> list[list[str]]:
    rows = []
    for figure in figures:
        baseline = ""
        if figure.baseline is not None:
            baseline = f"{_format_value(figure.baseline, figure.unit)} ({figure.baseline_label})"
        rows.append(
            [
                figure.benchmark,
                figure.name,
                _format_value(figure.berth, figure.unit),
                baseline,
                _format_ratio(figure.ratio),
                figure.target.text if figure.target else "",
                _format_met(figure.met),
            ]
        )
    return rows


HEADER = ["benchmark", "figure", "Berth", "baseline", "ratio", "target", "result"]


def render_markdown(figures: list[Figure]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in table_rows(figures):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def render_text(figures: list[Figure]) -> str:
    rows = [HEADER, *table_rows(figures)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(HEADER))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


@dataclass
class Report:
    command: str
    size: str
    started: str
    machine: dict[str, str]
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def header_lines(self) -> list[str]:
        lines = [
            f"Command: `{self.command}`",
            f"Date: {self.started}; size: {self.size}; duration: {self.duration_s:.0f} s",
        ]
        lines += [f"{name}: {value}" for name, value in self.machine.items()]
        return lines

    def all_notes(self) -> list[str]:
        """Return the figures' notes, then the run's own (such as failed benchmarks)."""
        figure_notes = [
            f"{figure.benchmark} / {figure.name}: {figure.note}"
            for figure in self.figures
            if figure.note
        ]
        return figure_notes + self.notes

    def markdown(self) -> str:
        parts = [
            "\n".join(f"- {line}" for line in self.header_lines()),
            render_markdown(self.figures),
        ]
        notes = self.all_notes()
        if notes:
            parts.append("Notes:\n\n" + "\n".join(f"- {note}" for note in notes))
        return "\n\n".join(parts) + "\n"

    def text(self) -> str:
        parts = ["\n".join(self.header_lines()), render_text(self.figures)]
        notes = self.all_notes()
        if notes:
            parts.append("Notes:\n" + "\n".join(f"* {note}" for note in notes))
        return "\n\n".join(parts) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "size": self.size,
            "started": self.started,
            "duration_s": self.duration_s,
            "machine": self.machine,
            "figures": [figure.to_json() for figure in self.figures],
            "notes": self.notes,
        }

    def save(self, folder: Path) -> Path:
        """Write latest.json and latest.md into `folder`; returns the Markdown path."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "latest.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")
        markdown = folder / "latest.md"
        markdown.write_text(self.markdown())
        return markdown


def now_text() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def command_line() -> str:
    executable = os.path.relpath(sys.executable) if sys.executable else "python"
    return " ".join([executable, "-m", "bench", *sys.argv[1:]])
