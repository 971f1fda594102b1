"""Options of `python -m bench run` that need no server."""

from pathlib import Path

import pytest

from bench.__main__ import main
from bench.core import Context


@pytest.mark.parametrize("value", ["0", "-2", "three"])
def test_rounds_rejects_invalid_value(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "gateway", "--rounds", value])

    assert exited.value.code == 2
    assert f"'{value}' is not a whole number of 1 or more" in capsys.readouterr().err


def test_rounds_override_replaces_planned_count(tmp_path: Path) -> None:
    planned = Context(size="full", workdir=tmp_path, log=print)
    overridden = Context(size="full", workdir=tmp_path, log=print, rounds_override=8)

    assert planned.rounds(3) == 3
    assert overridden.rounds(3) == 8
