"""Each benchmark runs once at its smallest size, to show that it still works.

These are not timed tests: the figures of a small run are too short to mean anything,
so only their presence is checked. The LiteLLM baseline is left out, because its proxy
takes 10-30 s to start and lives outside .venv (bench/setup-litellm.sh).
Deselect this file with `-m "not bench"`.
"""

import math
import os
from pathlib import Path

import pytest

from bench.__main__ import run_benchmarks
from bench.benchmarks import BENCHMARKS
from bench.servers import REPO_ROOT

pytestmark = [pytest.mark.bench, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_runs_small(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Child processes import `bench` from the checkout, as under `python -m bench`, and
    # `berth` from the checkout's src/, because the editable install in the virtual
    # environment may point at another checkout, such as the main one of a git worktree.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "src")]))
    # Idle OpenMP threads of the model processes sleep instead of spinning. On a busy
    # 2-core machine spinning threads slow each model call down many times over, and
    # this test checks only that the benchmarks work (see docs/benchmarks.md).
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")

    report = run_benchmarks([name], "small", tmp_path, skip_litellm=True)

    assert report.notes == []
    assert report.figures, f"{name} produced no figures"
    for figure in report.figures:
        assert figure.benchmark == name
        assert math.isfinite(figure.berth), f"{figure.name}: Berth value is {figure.berth}"
        if figure.baseline is not None:
            assert math.isfinite(figure.baseline), f"{figure.name}: baseline is {figure.baseline}"
